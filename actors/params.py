"""Parameters published by the learner and read by actor processes.

The learner copies its parameters into one flat shared-memory float32 tensor after
every update; actors copy them into their own CPU model at the start of every
unroll. A sequence lock (an int64 counter in shared memory, odd while a write is in
progress) keeps an actor from loading a half-written set: it retries until it reads
the same even counter before and after copying. The counter divided by two is the
policy version (number of publishes), which actors record per unroll so the learner
can measure policy lag.
"""

from __future__ import annotations

import time
from typing import List, Tuple

import torch
from torch import nn


def named_tensors(model: nn.Module) -> List[Tuple[str, torch.Tensor]]:
    """Parameters and floating buffers (e.g. running statistics), in the fixed order of the flat layout."""
    out = [(n, p) for n, p in model.named_parameters()]
    out += [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
    return out


def num_flat(model: nn.Module) -> int:
    """The length ``P`` of ``model``'s flat layout."""
    return sum(t.numel() for _, t in named_tensors(model))


@torch.no_grad()
def flatten_params(model: nn.Module) -> torch.Tensor:
    """``model``'s parameters and floating buffers as one float32 vector [P] (on the model's device)."""
    return torch.cat([t.detach().reshape(-1).float() for _, t in named_tensors(model)])


@torch.no_grad()
def load_flat(model: nn.Module, flat: torch.Tensor) -> None:
    """Copy a flat vector [P] (the layout of :func:`flatten_params`) into ``model``."""
    offset = 0
    for _, t in named_tensors(model):
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n
    if offset != flat.numel():
        raise ValueError(f"a flat parameter vector of {flat.numel()} values for a model of {offset}")


class SharedParams:
    """A flat shared-memory copy of a model's parameters with a seqlock."""

    def __init__(self, model: nn.Module):
        self.flat = torch.zeros(num_flat(model), dtype=torch.float32).share_memory_()
        self.seq = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.publish(model)

    @property
    def version(self) -> int:
        return int(self.seq.item()) // 2

    def publish(self, model: nn.Module) -> int:
        """Copy ``model``'s parameters in (learner side). Returns the new version."""
        flat = flatten_params(model)
        if flat.numel() != self.flat.numel():
            raise ValueError("model does not match the shared parameter layout")
        self.seq += 1                      # odd: write in progress
        self.flat.copy_(flat)              # from the learner's device when it is not the CPU
        self.seq += 1                      # even: consistent
        return self.version

    def load_into(self, model: nn.Module, *, last_version: int = -1, timeout_s: float = 10.0) -> int:
        """Copy the latest consistent parameters into ``model`` (actor side).

        Skips the copy when the version equals ``last_version``. Returns the version loaded.
        """
        deadline = time.monotonic() + timeout_s
        if num_flat(model) != self.flat.numel():
            raise ValueError("model does not match the shared parameter layout")
        while True:
            s0 = int(self.seq.item())
            if s0 // 2 == last_version and s0 % 2 == 0:
                return last_version
            if s0 % 2 == 0:
                # copy straight into the model; a publish that overlapped shows as a changed
                # counter, and the copy is simply done again
                load_flat(model, self.flat)
                if int(self.seq.item()) == s0:
                    return s0 // 2
            if time.monotonic() > deadline:
                raise TimeoutError("could not read a consistent parameter set from the learner")
            time.sleep(0.0005)
