"""SRWM without carry-over (ablation of Irie et al., ICML 2022, DESIGN.md section 4).

The SRWM core of :mod:`agents.cores.srwm`, except that its fast-weight differences
are reset at the start of every unroll instead of being carried across unrolls:
every ``forward()`` call starts from a zero difference (the slow weights) whatever
state is passed in, and still returns its final state (right spec) so that the
rest of the system treats it like any other core. Within one call the
self-modifications accumulate and episode resets apply as usual.

Note: called one step at a time (T = 1, as when acting) this core has no memory at
all; its memory spans exactly the steps given to one call.
"""

from __future__ import annotations

from typing import Tuple

import torch

from agents.core import State, register_core

from .srwm import SRWMCore


@register_core("srwm_no_carry")
class SRWMNoCarryCore(SRWMCore):
    """SRWM whose every forward() call starts from the slow weights (zero difference)."""

    carries_state = False  # forward() ignores the incoming state

    def forward(self, x: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        # x: [T, B, input_size]; the incoming state is replaced by the episode-start state.
        fresh = self.initial_state(x.shape[1], device=x.device)
        return super().forward(x, fresh, reset)
