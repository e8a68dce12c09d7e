"""The inference server's shared-memory slots and its wire protocol.

Per acting step only one-byte wake-ups travel over the actor's Unix socket; the data
sits in shared memory (:class:`InferenceSlots`): the actor writes its inputs into its
request slot, the server its outputs into the same actor's response slot.

Messages (``multiprocessing.connection`` byte messages), actor -> server:

* ``HELLO_TAG + HELLO.pack(actor index, number of envs, pid)``: the first message of
  a connection; answered ``OK`` or ``ERROR + reason``;
* ``ACT``: run one step on the inputs in the request slot; the outputs are in the
  response slot when ``OK`` comes back;
* ``ACT_UNROLL_START``: the same, but the inputs are entry 0 of the actor's next unroll:
  the server first keeps the actor's resident core state (the state before this step)
  as that unroll's initial core state;
* ``WRITE_INITIAL + INITIAL.pack(group)``: copy the kept state into the
  ``initial_core_state`` rows of ``group`` in the rollout buffers the server was given;
* ``RESET``: reset the actor's resident core state (and the kept one) to the
  episode-start state.

Server -> actor: ``OK`` (empty) or ``ERROR`` followed by a UTF-8 reason.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Dict

import torch

from actors.buffers import rollout_specs

HELLO_TAG = b"h"
HELLO = struct.Struct("<qqq")      # actor index, number of envs, pid
ACT = b"a"
ACT_UNROLL_START = b"A"
RESET = b"r"
REQUESTS = (ACT, ACT_UNROLL_START, RESET)
WRITE_INITIAL = b"w"
INITIAL = struct.Struct("<q")      # the rollout-buffer group an unroll's initial core state goes to
OK = b""
ERROR = b"!"

INPUT_KEYS = ("obs", "reward", "done", "task")
OUTPUT_KEYS = ("action", "policy_logits", "baseline")


class InferenceServerError(RuntimeError):
    """The inference server answered a request with an error."""


@dataclass
class InferenceSlots:
    """The shared-memory request/response slots of every actor (picklable to spawned actors).

    ``io[key]``: ``[num_actors, E, ...]`` for the four inputs and three outputs (dtypes of
    :func:`actors.buffers.rollout_specs`; image observations laid out channels-last in
    memory); ``version``: int64 [1], the parameter version the server acts with. No core
    state passes through them: the server writes it straight into the rollout buffers.
    """

    io: Dict[str, torch.Tensor]
    version: torch.Tensor

    @classmethod
    def allocate(cls, num_actors: int, envs_per_actor: int, obs_shape, obs_dtype: str,
                 num_actions: int, action_dims=None) -> "InferenceSlots":
        io = {}
        for key, (shape, dtype) in rollout_specs(obs_shape, obs_dtype, num_actions, action_dims).items():
            if key == "obs" and len(shape) == 3:
                # images [C, H, W] are stored channels-last (as simulators produce them): the
                # actor's copy is a memcpy and the convolutions take the channels-last path
                C, H, W = shape
                t = torch.zeros(num_actors, envs_per_actor, H, W, C, dtype=dtype).share_memory_()
                io[key] = t.permute(0, 1, 4, 2, 3)                          # [A, E, C, H, W] view
            else:
                io[key] = torch.zeros(num_actors, envs_per_actor, *shape, dtype=dtype).share_memory_()
        version = torch.zeros(1, dtype=torch.int64).share_memory_()
        return cls(io, version)


def flat_rows(t: torch.Tensor) -> torch.Tensor:
    """[A, E, ...] -> [A * E, ...] (a view)."""
    return t.view(t.shape[0] * t.shape[1], *t.shape[2:])
