"""Recurrent Delta Net (RDN) core: a delta-rule memory whose slow net is recurrent.

Irie, Schlag, Csordás and Schmidhuber, "Going Beyond Linear Transformers with Recurrent
Fast Weight Programmers", NeurIPS 2021 (arXiv 2106.06295), section 3; the RL flag
``--use_rec_delta`` of IDSIA/recurrent-fwp (``RecUpdateTanhFastFFlayer`` and its CUDA
kernel ``rec_update_fwm_tanh``). Per head, from the layer input h_t::

    [q~, k~, v~, b~] = W_slow LN(h_t)                          (no bias)
    f = tanh(y_{t-1})                                          (the layer's previous output)
    q = softmax(q~ + R_q f);  k = softmax(k~ + R_k f);  v = v~ + R_v f
    beta = sigmoid(b~ + r_b . f)
    S = S + k (beta (v - S^T k))^T;   y_t = S^T q              (read after write)

``R_q, R_k, R_v`` [H, d, d] and ``r_b`` [H, d] are slow weights initialised N(0, 1/d)
(std 1/sqrt(d)), as in the RL code. Activations, as the RL code uses them (the paper
writes a generic activation f for the recurrent input): f = tanh, applied to the stored
raw output at the start of the next step; softmax on q and k (not DeltaNet's elu + 1
sum-normalised map, which the same code uses for ``--use_delta``); no activation on v.
The memory is :func:`agents.kernels.rec_delta`: a fused Triton kernel on the GPU, a
whole-unroll PyTorch form with a hand-written backward on the CPU.

State: ``"layer{i}.S"`` [B, H, d, d] (fast weights) and ``"layer{i}.y"`` [B, H, d] (the
previous output before its tanh); both zero at episode start.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from agents.core import State, StateSpec, TensorSpec, register_core
from agents.kernels import rec_delta

from .layers import FastWeightLayer, split_heads
from .stepwise import SteppedStack, zero_rows


class RecDeltaLayer(FastWeightLayer):
    """One RDN layer: LN, slow projection plus recurrent slow weights, delta-rule memory."""

    def __init__(self, d_model: int, num_heads: int, head_size: int, d_ff: int, dropout: float,
                 detach_each_step: bool = False):
        super().__init__(d_model, num_heads, head_size, d_ff, dropout, detach_each_step)
        H, d = num_heads, head_size
        self.norm = nn.LayerNorm(d_model)
        self.slow = nn.Linear(d_model, H * (3 * d + 1), bias=False)     # q~, k~, v~, b~
        std = 1.0 / math.sqrt(d)
        self.R_q = nn.Parameter(torch.randn(H, d, d) * std)             # [H, d_in, d_out]
        self.R_k = nn.Parameter(torch.randn(H, d, d) * std)
        self.R_v = nn.Parameter(torch.randn(H, d, d) * std)
        self.r_b = nn.Parameter(torch.randn(H, d) * std)

    def local_state_spec(self, dtype: torch.dtype) -> StateSpec:
        H, d = self.num_heads, self.head_size
        return StateSpec(S=TensorSpec((H, d, d), dtype), y=TensorSpec((H, d), dtype))

    def mix(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        d = self.head_size
        z = split_heads(self.slow(self.norm(h)), self.num_heads)       # [T, B, H, 3d+1]
        q, k, v, b = torch.split(z, [d, d, d, 1], dim=-1)
        R = {"q": self.R_q, "k": self.R_k, "v": self.R_v, "b": self.r_b}
        return rec_delta(q.contiguous(), k.contiguous(), v.contiguous(), b.squeeze(-1).contiguous(), R,
                         {"S": state["S"], "y": state["y"]}, reset,
                         detach_each_step=self.detach_each_step, backend=self.kernel_backend)

    def reference_step(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        """One step from the equations above (h [B, d_model], reset [B]); no kernel op."""
        d, H = self.head_size, self.num_heads
        hn = F.layer_norm(h, h.shape[-1:], self.norm.weight, self.norm.bias, self.norm.eps)
        z = (hn @ self.slow.weight.t()).view(-1, H, 3 * d + 1)
        S, y = zero_rows(state["S"], reset), zero_rows(state["y"], reset)
        f = torch.tanh(y).unsqueeze(-2)                                         # [B, H, 1, d]
        q = torch.softmax(z[..., :d] + (f @ self.R_q).squeeze(-2), -1)
        k = torch.softmax(z[..., d:2 * d] + (f @ self.R_k).squeeze(-2), -1)
        v = z[..., 2 * d:3 * d] + (f @ self.R_v).squeeze(-2)
        beta = torch.sigmoid(z[..., 3 * d] + (f.squeeze(-2) * self.r_b).sum(-1))          # [B, H]
        v_old = (S.transpose(-1, -2) @ k.unsqueeze(-1)).squeeze(-1)
        S = S + beta[..., None, None] * k.unsqueeze(-1) * (v - v_old).unsqueeze(-2)
        y = (S.transpose(-1, -2) @ q.unsqueeze(-1)).squeeze(-1)
        if self.detach_each_step:
            return y, {"S": S.detach(), "y": y.detach()}
        return y, {"S": S, "y": y}


@register_core("rec_delta")
class RecDeltaCore(SteppedStack):
    """Stack of RDN layers (input projection, then ``num_layers`` layers)."""

    layer_class = RecDeltaLayer
