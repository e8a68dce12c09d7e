"""Delta RNN core: a recurrent fast net whose two weight matrices are written by delta rules.

Irie, Schlag, Csordás and Schmidhuber, "Going Beyond Linear Transformers with Recurrent
Fast Weight Programmers", NeurIPS 2021 (arXiv 2106.06295), section 3; the RL flag
``--use_delta_rnn`` of IDSIA/recurrent-fwp (``FastRNNlayer``: ``fast_weight_delta``
followed by the ``fast_rnn_v2`` CUDA kernel). Per head, from the layer input h_t::

    [q~, k~, v, k_r~, v_r, b~, b_r~] = W_slow LN(h_t)          (no bias)
    q = softmax(q~);  k = softmax(k~);  k_r = softmax(k_r~);  beta = sigmoid(b~);  beta_r = sigmoid(b_r~)
    W = W + k (beta (v - W^T k))^T;          z_t = W^T q                   (feed-forward fast weights)
    R = R + k_r (beta_r (v_r - R^T k_r))^T
    y_t = z_t + R^T softmax(y_{t-1})                                       (recurrent fast weights)

both memories read after their write. Activations, as the RL code uses them (the paper
writes y_t = W_t q_t + R_t f(y_{t-1}) with a generic f): f = softmax, applied to the
stored raw output just before the recurrent product ("V2" of the code); softmax on q, k
and k_r; none on v, v_r. Differences from the code: its softmax adds 1e-6 to the
denominator (after subtracting the maximum, so a relative change below 1e-6); here f
is the exact softmax. At an episode start y = 0, so f(y) is uniform (as in the code),
while R = 0 until its first write.

The feed-forward memory is :func:`agents.kernels.delta_rule`, the recurrent one
:func:`agents.kernels.delta_rnn`; both run fused Triton kernels on the GPU and
whole-unroll PyTorch forms with hand-written backward passes on the CPU.

State: ``"layer{i}.W"``, ``"layer{i}.R"`` [B, H, d, d] and ``"layer{i}.y"`` [B, H, d],
all zero at episode start.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from agents.core import State, StateSpec, TensorSpec, register_core
from agents.kernels import delta_rnn, delta_rule

from .layers import FastWeightLayer, split_heads
from .stepwise import SteppedStack, zero_rows


def _delta_write(M: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """M [B, H, d, d] + k (beta (v - M^T k))^T."""
    v_old = (M.transpose(-1, -2) @ k.unsqueeze(-1)).squeeze(-1)
    return M + beta[..., None, None] * k.unsqueeze(-1) * (v - v_old).unsqueeze(-2)


class DeltaRNNLayer(FastWeightLayer):
    """One Delta RNN layer: LN, slow projection, delta-rule feed-forward and recurrent fast weights."""

    def __init__(self, d_model: int, num_heads: int, head_size: int, d_ff: int, dropout: float,
                 detach_each_step: bool = False):
        super().__init__(d_model, num_heads, head_size, d_ff, dropout, detach_each_step)
        self.norm = nn.LayerNorm(d_model)
        self.slow = nn.Linear(d_model, num_heads * (5 * head_size + 2), bias=False)

    def local_state_spec(self, dtype: torch.dtype) -> StateSpec:
        H, d = self.num_heads, self.head_size
        return StateSpec(W=TensorSpec((H, d, d), dtype), R=TensorSpec((H, d, d), dtype),
                         y=TensorSpec((H, d), dtype))

    def _split(self, h: torch.Tensor):
        d = self.head_size
        z = split_heads(self.slow(self.norm(h)), self.num_heads)       # [..., H, 5d+2]
        q, k, v, kr, vr, b, br = torch.split(z, [d] * 5 + [1, 1], dim=-1)
        return (torch.softmax(q, -1), torch.softmax(k, -1), v, torch.softmax(kr, -1), vr,
                torch.sigmoid(b.squeeze(-1)), torch.sigmoid(br.squeeze(-1)))

    def mix(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        q, k, v, kr, vr, b, br = (t.contiguous() for t in self._split(h))
        z, W = delta_rule(q, k, v, b, state["W"], reset, detach_each_step=self.detach_each_step,
                          backend=self.kernel_backend)                  # [T, B, H, d]
        y, rec = delta_rnn(z, kr, vr, br, {"R": state["R"], "y": state["y"]}, reset,
                           detach_each_step=self.detach_each_step, backend=self.kernel_backend)
        return y, {"W": W, "R": rec["R"], "y": rec["y"]}

    def reference_step(self, h: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        """One step from the equations above (h [B, d_model], reset [B]); no kernel op."""
        d, H = self.head_size, self.num_heads
        hn = F.layer_norm(h, h.shape[-1:], self.norm.weight, self.norm.bias, self.norm.eps)
        z = (hn @ self.slow.weight.t()).view(-1, H, 5 * d + 2)
        sm = lambda i: torch.softmax(z[..., i * d:(i + 1) * d], -1)   # noqa: E731
        q, k, v, kr, vr = sm(0), sm(1), z[..., 2 * d:3 * d], sm(3), z[..., 4 * d:5 * d]
        b, br = torch.sigmoid(z[..., 5 * d]), torch.sigmoid(z[..., 5 * d + 1])
        W, R, y = (zero_rows(state[n], reset) for n in ("W", "R", "y"))
        W = _delta_write(W, k, v, b)
        R = _delta_write(R, kr, vr, br)
        y = (W.transpose(-1, -2) @ q.unsqueeze(-1) + R.transpose(-1, -2) @ torch.softmax(y, -1).unsqueeze(-1)).squeeze(-1)
        if self.detach_each_step:
            return y, {"W": W.detach(), "R": R.detach(), "y": y.detach()}
        return y, {"W": W, "R": R, "y": y}


@register_core("delta_rnn")
class DeltaRNNCore(SteppedStack):
    """Stack of Delta RNN layers (input projection, then ``num_layers`` layers)."""

    layer_class = DeltaRNNLayer
