"""A fast-weight stack with a per-step slow reference (the conformance suite's maths check).

:class:`SteppedStack` is a :class:`~agents.cores.layers.FastWeightStack` whose layers also
implement ``reference_step(h_t, state, reset_t)``: the layer's fast-weight equations for
one time step (``h_t`` [B, d_model], ``reset_t`` bool [B], the layer's local state) written
directly from the paper, without the ops of :mod:`agents.kernels`, returning the heads'
output [B, H, d] and the new local state. :meth:`SteppedStack.reference_forward` runs
the stack one step at a time on them; the conformance suite compares it with
:meth:`forward` (the whole-unroll ops), outputs, states and gradients, with resets.
"""

from __future__ import annotations

from typing import Tuple

import torch

from agents.core import State

from .layers import FastWeightStack, merge_heads


class SteppedStack(FastWeightStack):
    """FastWeightStack whose layers define ``reference_step``."""

    def reference_forward(self, x: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        # x: [T, B, input_size]; reset: bool [T, B]
        reset = reset.to(torch.bool)
        h_all = self.input_proj(x)                                      # [T, B, d_model]
        states = [self._layer_state(i, state) for i in range(len(self.layers))]
        outs = []
        for t in range(x.shape[0]):
            h = h_all[t]                                                # [B, d_model]
            for i, layer in enumerate(self.layers):
                y, states[i] = layer.reference_step(h, states[i], reset[t])        # [B, H, d]
                h = layer.ff(h + layer.drop(layer.out_proj(merge_heads(y))))
            outs.append(h)
        new_state = {f"layer{i}.{n}": t for i, s in enumerate(states) for n, t in s.items()}
        return torch.stack(outs), new_state


def zero_rows(t: torch.Tensor, reset_t: torch.Tensor) -> torch.Tensor:
    """Rows b of ``t`` [B, ...] with ``reset_t[b]`` set to zero (a new episode)."""
    return torch.where(reset_t.view(-1, *([1] * (t.dim() - 1))), torch.zeros_like(t), t)
