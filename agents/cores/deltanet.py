"""DeltaNet core: fast weights updated by the delta rule (docs/design.md#deltanet).

Schlag, Irie and Schmidhuber, "Linear Transformers Are Secretly Fast Weight
Programmers", ICML 2021; used as an RL memory in Irie et al., "Going Beyond Linear
Transformers with Recurrent Fast Weight Programmers", NeurIPS 2021. Per head, from
the layer input h_t::

    [q~, k~, v, b~] = W_slow LN(h_t)                  (no bias)
    q = phi(q~) / (sum phi(q~) + 1e-5),  phi = elu + 1;  same for k;  beta = sigmoid(b~)
    S = S + k (beta (v - S^T k))^T;   y = S^T q       (read AFTER the write)

State ``"layer{i}.S"``: [B, H, d_k, d_v], zero at episode start.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from agents.core import State, StateSpec, TensorSpec, register_core
from agents.kernels import delta_rule

from .diagnostics import DELTA_DIAGNOSTICS, delta_diagnostics
from .layers import FastWeightLayer, FastWeightStack, elu_plus_one_normalised, split_heads


class DeltaNetLayer(FastWeightLayer):
    """One DeltaNet layer: LN, slow projection to q, k, v, beta, delta-rule memory."""

    def __init__(self, d_model: int, num_heads: int, head_size: int, d_ff: int, dropout: float,
                 detach_each_step: bool = False):
        super().__init__(d_model, num_heads, head_size, d_ff, dropout, detach_each_step)
        self.norm = nn.LayerNorm(d_model)
        self.slow = nn.Linear(d_model, num_heads * self.slow_size_per_head(), bias=False)

    def slow_size_per_head(self) -> int:
        return 3 * self.head_size + 1          # q~, k~, v, b~

    def local_state_spec(self, dtype: torch.dtype) -> StateSpec:
        d = self.head_size
        return StateSpec(S=TensorSpec((self.num_heads, d, d), dtype))

    def diagnostic_names(self):
        extra = list(DELTA_DIAGNOSTICS) if self.slow_size_per_head() > 3 * self.head_size else []
        return extra + super().diagnostic_names()

    def project(self, h: torch.Tensor):
        """h [T, B, d_model] -> q, k, v [T, B, H, d] and beta [T, B, H] (None without beta)."""
        d = self.head_size
        z = split_heads(self.slow(self.norm(h)), self.num_heads)     # [T, B, H, 3d+1]
        q, k, v, b = torch.split(z, [d, d, d, z.shape[-1] - 3 * d], dim=-1)
        q = elu_plus_one_normalised(q).contiguous()                  # [T, B, H, d]
        k = elu_plus_one_normalised(k).contiguous()                  # [T, B, H, d]
        beta = torch.sigmoid(b).squeeze(-1).contiguous() if b.shape[-1] else None   # [T, B, H]
        return q, k, v.contiguous(), beta

    def mix(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        q, k, v, beta = self.project(h)
        y, S = delta_rule(q, k, v, beta, state["S"], reset,                 # y: [T, B, H, d]
                          detach_each_step=self.detach_each_step, backend=self.kernel_backend)
        if self.recording is not None and beta is not None:
            self.recording.update(delta_diagnostics(q, k, v, beta, state["S"], reset))
        return y, {"S": S}


@register_core("deltanet")
class DeltaNetCore(FastWeightStack):
    """Stack of DeltaNet layers (input projection, then ``num_layers`` layers)."""

    layer_class = DeltaNetLayer
