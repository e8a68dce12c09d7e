"""Feed-forward core: no memory (docs/design.md#feed-forward).

The "feed-forward" baseline of Irie et al., ICML 2022 and NeurIPS 2021: the core is a
single ``ReLU(Linear(input_size, hidden_size))``; each step sees only its own input.
Its state spec has no entries, so its state is the empty dict.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from agents.core import MemoryCore, State, StateSpec, register_core

from .layers import check_positive


@register_core("ff")
class FeedForwardCore(MemoryCore):
    """``y_t = ReLU(W x_t + b)``; no state."""

    def __init__(self, input_size: int, *, hidden_size: int = 128):
        super().__init__()
        check_positive("ff", input_size=input_size, hidden_size=hidden_size)
        self.input_size = input_size
        self.output_size = hidden_size
        self.fc = nn.Linear(input_size, hidden_size)

    def state_spec(self) -> StateSpec:
        return StateSpec()

    def forward(self, x: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        # x: [T, B, input_size] -> [T, B, hidden_size]
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"core input must be [T, B, {self.input_size}], got {list(x.shape)}")
        return F.relu(self.fc(x)), {}
