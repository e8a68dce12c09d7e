"""Gated DeltaNet core: the delta rule with a per-step decay gate.

Yang, Kautz and Hatamizadeh, "Gated Delta Networks: Improving Mamba2 with Delta
Rule", ICLR 2025. Per head, from the layer input h_t (a pre-LN layer of the shared
stack, :mod:`agents.cores.layers`)::

    [q~, k~, v~, b~, a~] = W_slow LN(h_t)                      (no bias)
    q = L2norm(SiLU(q~)),  k = L2norm(SiLU(k~)),  v = SiLU(v~),  beta = sigmoid(b~)
    alpha = exp(-exp(A_log) softplus(a~ + dt_bias))            in (0, 1), per head and step
    S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T
    o_t = S_t^T q_t                                            (read after write)
    y_t = RMSNorm(o_t) * SiLU(W_g LN(h_t))                     (per head, then W_out)

The decay follows the paper's Mamba-2 parameterisation: ``A_log`` per head initialised
to log U(1, 16), ``dt_bias`` to softplus^-1 of dt ~ logU(1e-3, 0.1). The memory is the
``delta_rule`` op with ``alpha`` (DeltaNet is alpha = 1), so it runs on the fused Triton
kernel on the GPU. Where this differs from the paper's language-model block: no short
causal convolutions before the q, k, v activations (the RL stack has none), and no 1/sqrt(d)
query scale (the per-head RMSNorm of the output makes a constant query scale irrelevant);
L2norm is ``x / sqrt(sum x^2 + 1e-6)``, RMSNorm eps 1e-5.

State ``"layer{i}.S"``: [B, H, d_k, d_v], zero at episode start.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from agents.core import State, StateSpec, TensorSpec, register_core
from agents.kernels import delta_rule

from .layers import FastWeightLayer, split_heads
from .stepwise import SteppedStack, zero_rows

L2_EPS = 1e-6
RMS_EPS = 1e-5


def l2norm(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.square().sum(-1, keepdim=True) + L2_EPS)


class GatedDeltaNetLayer(FastWeightLayer):
    """One Gated DeltaNet layer: LN, slow projection to q, k, v, beta, alpha; gated delta rule;
    per-head RMSNorm and SiLU output gate."""

    def __init__(self, d_model: int, num_heads: int, head_size: int, d_ff: int, dropout: float,
                 detach_each_step: bool = False):
        super().__init__(d_model, num_heads, head_size, d_ff, dropout, detach_each_step)
        H, d = num_heads, head_size
        self.norm = nn.LayerNorm(d_model)
        self.slow = nn.Linear(d_model, H * (3 * d + 2), bias=False)     # q~, k~, v~, b~, a~
        self.gate = nn.Linear(d_model, H * d, bias=False)               # output gate
        self.A_log = nn.Parameter(torch.empty(H).uniform_(1.0, 16.0).log())
        dt = torch.exp(torch.empty(H).uniform_(math.log(1e-3), math.log(0.1))).clamp_min(1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.out_norm = nn.Parameter(torch.ones(d))                     # RMSNorm weight

    def local_state_spec(self, dtype: torch.dtype) -> StateSpec:
        d = self.head_size
        return StateSpec(S=TensorSpec((self.num_heads, d, d), dtype))

    def project(self, h: torch.Tensor):
        """h [..., d_model] -> q, k, v [..., H, d], beta, alpha [..., H], gate [..., H, d]."""
        d = self.head_size
        hn = self.norm(h)
        z = split_heads(self.slow(hn), self.num_heads)                  # [..., H, 3d+2]
        q, k, v, b, a = torch.split(z, [d, d, d, 1, 1], dim=-1)
        q = l2norm(F.silu(q))
        k = l2norm(F.silu(k))
        v = F.silu(v)
        beta = torch.sigmoid(b.squeeze(-1))
        alpha = torch.exp(-self.A_log.exp() * F.softplus(a.squeeze(-1) + self.dt_bias))
        gate = split_heads(self.gate(hn), self.num_heads)               # [..., H, d]
        return q, k, v, beta, alpha, gate

    def output(self, o: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        o = o * torch.rsqrt(o.square().mean(-1, keepdim=True) + RMS_EPS) * self.out_norm
        return o * F.silu(gate)

    def mix(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        q, k, v, beta, alpha, gate = self.project(h)                    # [T, B, H, d], [T, B, H]
        o, S = delta_rule(q.contiguous(), k.contiguous(), v.contiguous(), beta.contiguous(), state["S"],
                          reset, alpha=alpha.contiguous(), detach_each_step=self.detach_each_step,
                          backend=self.kernel_backend)                  # o: [T, B, H, d]
        return self.output(o, gate), {"S": S}

    def reference_step(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        """One step from the paper's equations (h [B, d_model], reset [B]); no kernel op."""
        d, H = self.head_size, self.num_heads
        hn = F.layer_norm(h, h.shape[-1:], self.norm.weight, self.norm.bias, self.norm.eps)
        z = (hn @ self.slow.weight.t()).view(-1, H, 3 * d + 2)
        q = l2norm(F.silu(z[..., :d]))
        k = l2norm(F.silu(z[..., d:2 * d]))
        v = F.silu(z[..., 2 * d:3 * d])
        beta = torch.sigmoid(z[..., 3 * d])                                     # [B, H]
        dt = F.softplus(z[..., 3 * d + 1] + self.dt_bias)
        alpha = torch.exp(-torch.exp(self.A_log) * dt)                          # [B, H], in (0, 1)
        S = zero_rows(state["S"], reset)                                        # [B, H, d, d]
        eye = torch.eye(d, dtype=S.dtype, device=S.device)
        kkT = k.unsqueeze(-1) * k.unsqueeze(-2)                                 # [B, H, d, d]
        S = alpha[..., None, None] * ((eye - beta[..., None, None] * kkT) @ S) \
            + beta[..., None, None] * k.unsqueeze(-1) * v.unsqueeze(-2)
        o = (S.transpose(-1, -2) @ q.unsqueeze(-1)).squeeze(-1)                 # S^T q, after the write
        g = (hn @ self.gate.weight.t()).view(-1, H, d)
        y = o / torch.sqrt(o.pow(2).mean(-1, keepdim=True) + RMS_EPS) * self.out_norm * F.silu(g)
        if self.detach_each_step:
            S = S.detach()
        return y, {"S": S}


@register_core("gated_deltanet")
class GatedDeltaNetCore(SteppedStack):
    """Stack of Gated DeltaNet layers (input projection, then ``num_layers`` layers)."""

    layer_class = GatedDeltaNetLayer
