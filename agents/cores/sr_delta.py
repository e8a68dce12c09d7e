"""SR-Delta core: an SRWM that programs a DeltaNet fast memory (docs/design.md#sr-delta).

Used in the memory-mode ProcGen experiments of Irie et al., "A Modern
Self-Referential Weight Matrix That Learns to Modify Itself", ICML 2022. Per head,
the SRWM's W^y has 3d+1 output rows; its output (read before the SRWM update) is
split into the query, key, value and learning rate of a delta-rule memory S::

    [q~, k~, v, b~] = y_t = W^y_{t-1} softmax(h_t)    (the SRWM of agents.cores.srwm)
    q = softmax(q~);  k = softmax(k~);  beta = sigmoid(b~)
    S = S + k (beta (v - S^T k))^T;   out = S^T q     (DeltaNet, read after write)

State per layer: the SRWM differences ``"layer{i}.W_y"`` [B, H, 3d+1, d], ``W_q``,
``W_k`` [B, H, d, d], ``W_b`` [B, H, 4, d] plus the DeltaNet matrix ``"layer{i}.S"``
[B, H, d, d]; all zero at episode start.
"""

from __future__ import annotations

from typing import Tuple

import torch

from agents.core import State, StateSpec, TensorSpec, register_core
from agents.kernels import delta_rule

from .diagnostics import DELTA_DIAGNOSTICS, delta_diagnostics
from .srwm import SRWMCore, SRWMLayer


class SRDeltaLayer(SRWMLayer):
    """SRWM producing q, k, v, beta of a delta-rule fast memory."""

    def __init__(self, d_model: int, num_heads: int, head_size: int, d_ff: int, dropout: float,
                 detach_each_step: bool = False, **srwm_options):
        super().__init__(d_model, num_heads, head_size, d_ff, dropout, detach_each_step,
                         y_size=3 * head_size + 1, **srwm_options)

    def diagnostic_names(self):
        return super().diagnostic_names() + [f"delta_{n}" for n in DELTA_DIAGNOSTICS]

    def local_state_spec(self, dtype: torch.dtype) -> StateSpec:
        spec = super().local_state_spec(dtype)
        d = self.head_size
        spec["S"] = TensorSpec((self.num_heads, d, d), dtype)
        return spec

    def mix(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        d = self.head_size
        z, new_state = self.srwm_read(h, state, reset)                  # [T, B, H, 3d+1]
        q, k, v, b = torch.split(z, [d, d, d, 1], dim=-1)
        q = torch.softmax(q, dim=-1).contiguous()                        # [T, B, H, d]
        k = torch.softmax(k, dim=-1).contiguous()                        # [T, B, H, d]
        beta = torch.sigmoid(b).squeeze(-1).contiguous()                 # [T, B, H]
        y, S = delta_rule(q, k, v.contiguous(), beta, state["S"], reset,  # y: [T, B, H, d]
                          detach_each_step=self.detach_each_step, backend=self.kernel_backend)
        if self.recording is not None:
            scalars = delta_diagnostics(q, k, v, beta, state["S"], reset)
            self.recording.update({f"delta_{n}": value for n, value in scalars.items()})
        new_state["S"] = S
        return y, new_state


@register_core("sr_delta")
class SRDeltaCore(SRWMCore):
    """Stack of SR-Delta layers (the ``srwm_*`` options act on its SRWM)."""

    layer_class = SRDeltaLayer
