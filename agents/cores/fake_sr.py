"""'Fake SR' core: the SRWM ablation without self-reference (docs/design.md#fake-sr).

Irie et al., "A Modern Self-Referential Weight Matrix That Learns to Modify Itself",
ICML 2022, ablation: each head applies its own learned d x d matrix to the layer
input, ``y = W^y h`` (no softmax on the input, no state, no self-modification), then
the same residual, output projection and feed-forward block as the SRWM layer.
W^y is initialised N(0, 1/d) like the SRWM's slow weights. The core has no state.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn

from agents.core import State, StateSpec, register_core

from .layers import FastWeightLayer, FastWeightStack, split_heads


class FakeSRLayer(FastWeightLayer):
    """Per-head static linear map ``y = W^y h``."""

    def __init__(self, d_model: int, num_heads: int, head_size: int, d_ff: int, dropout: float):
        super().__init__(d_model, num_heads, head_size, d_ff, dropout)
        self.W_y = nn.Parameter(torch.empty(num_heads, head_size, head_size))   # [H, d, d]
        nn.init.normal_(self.W_y, mean=0.0, std=1.0 / math.sqrt(head_size))

    def local_state_spec(self, dtype: torch.dtype) -> StateSpec:
        return StateSpec()

    def mix(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        x = split_heads(h, self.num_heads)                              # [T, B, H, d]
        return torch.einsum("hod,tbhd->tbho", self.W_y, x), {}          # [T, B, H, d]


@register_core("fake_sr")
class FakeSRCore(FastWeightStack):
    """Stack of Fake-SR layers (stateless)."""

    def __init__(self, input_size: int, *, hidden_size: int = 128, num_layers: int = 2,
                 num_heads: int = 8, head_size: int = 16, d_ff: int = 512, dropout: float = 0.0):
        super().__init__(input_size, hidden_size=hidden_size, num_layers=num_layers,
                         num_heads=num_heads, head_size=head_size, d_ff=d_ff, dropout=dropout)

    def make_layer(self, d_model, num_heads, head_size, d_ff, dropout, detach_each_step):
        return FakeSRLayer(d_model, num_heads, head_size, d_ff, dropout)
