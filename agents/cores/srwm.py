"""SRWM core: the modern self-referential weight matrix (DESIGN.md section 4).

Irie, Schlag, Csordas and Schmidhuber, "A Modern Self-Referential Weight Matrix That
Learns to Modify Itself", ICML 2022. Per head (head size d), from the layer input h_t::

    x_t = softmax(h_t)                                  (per head, no LayerNorm)
    y_t = W^y x_t;  q_t = softmax(W^q x_t);  k_t = softmax(W^k x_t);  b_t = sigmoid(W^b x_t)
    M_j = M_j + b_t[j] (M_j q_t - M_j k_t) k_t^T        for M_j in (W^y, W^q, W^k, W^b)

with the output read from the weights BEFORE the update. The slow weights W^y, W^q,
W^k (d x d) and W^b (4 x d) are parameters initialised N(0, 1/d). The carried state
is the DIFFERENCE from the slow weights (``W_{t-1} = W_slow + DW_{t-1}``, ``DW = 0`` at
episode start), so a learner update of the slow weights shows at once in episodes
that are already running. State entries per layer: ``"layer{i}.W_y"`` [B, H, d_y, d],
``"layer{i}.W_q"``, ``"layer{i}.W_k"`` [B, H, d, d], ``"layer{i}.W_b"`` [B, H, 4, d].
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from agents.core import State, StateSpec, TensorSpec, register_core
from agents.kernels import SRWM_KEYS, srwm

from .layers import FastWeightLayer, FastWeightStack, split_heads


class SRWMLayer(FastWeightLayer):
    """One SRWM layer; ``y_size`` is the number of output rows of W^y per head (d by default)."""

    def __init__(self, d_model: int, num_heads: int, head_size: int, d_ff: int, dropout: float,
                 detach_each_step: bool = False, y_size: Optional[int] = None):
        super().__init__(d_model, num_heads, head_size, d_ff, dropout, detach_each_step)
        H, d = num_heads, head_size
        self.y_size = d if y_size is None else int(y_size)
        self.W_y = nn.Parameter(torch.empty(H, self.y_size, d))    # [H, d_y, d]
        self.W_q = nn.Parameter(torch.empty(H, d, d))              # [H, d, d]
        self.W_k = nn.Parameter(torch.empty(H, d, d))              # [H, d, d]
        self.W_b = nn.Parameter(torch.empty(H, 4, d))              # [H, 4, d]
        self.reset_slow_weights()

    def reset_slow_weights(self) -> None:
        std = 1.0 / math.sqrt(self.head_size)                       # N(0, 1/d)
        for w in (self.W_y, self.W_q, self.W_k, self.W_b):
            nn.init.normal_(w, mean=0.0, std=std)

    def slow_weights(self) -> Dict[str, torch.Tensor]:
        return {"y": self.W_y, "q": self.W_q, "k": self.W_k, "b": self.W_b}

    def local_state_spec(self, dtype: torch.dtype) -> StateSpec:
        H, d = self.num_heads, self.head_size
        return StateSpec({"W_y": TensorSpec((H, self.y_size, d), dtype),
                          "W_q": TensorSpec((H, d, d), dtype),
                          "W_k": TensorSpec((H, d, d), dtype),
                          "W_b": TensorSpec((H, 4, d), dtype)})

    def srwm_read(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        """h [T, B, d_model] -> (y [T, B, H, d_y], new SRWM differences)."""
        x = torch.softmax(split_heads(h, self.num_heads), dim=-1).contiguous()   # [T, B, H, d]
        delta = {n: state["W_" + n] for n in SRWM_KEYS}                        # [B, H, *, d]
        y, new = srwm(x, self.slow_weights(), delta, reset,
                      detach_each_step=self.detach_each_step, backend=self.kernel_backend)
        return y, {"W_" + n: new[n] for n in SRWM_KEYS}

    def mix(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        return self.srwm_read(h, state, reset)


@register_core("srwm")
class SRWMCore(FastWeightStack):
    """Stack of SRWM layers."""

    layer_class = SRWMLayer
