"""Slow, obviously correct per-step references of the fast-weight ops.

These loops follow docs/design.md#core-equations line by line; the Triton kernels in this
package are tested against them (outputs, final states and every gradient).

Conventions (per head, rows of a weight matrix are its outputs):

* ``reset[t, b]`` true: before step ``t`` row ``b`` of the state goes back to its
  episode-start value (zeros; for SRWM a zero difference from the slow weights).
* ``detach_each_step=True`` cuts the gradient through the state after every step,
  as the original IDSIA learner did; the default backpropagates through the
  whole unroll.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..common import check_reset


def delta_rule_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                         state: torch.Tensor, reset: torch.Tensor, *,
                         detach_each_step: bool = False,
                         alpha: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Delta rule, read after write (Schlag et al. 2021); with ``alpha`` the gated delta
    rule (Yang, Kautz, Hatamizadeh, "Gated Delta Networks", ICLR 2025).

    q, k: [T, B, H, Dk] (feature-mapped and normalised); v: [T, B, H, Dv];
    beta: [T, B, H] in (0, 1); state S: [B, H, Dk, Dv]; reset: bool [T, B];
    alpha: optional [T, B, H] decay in (0, 1] (None: alpha = 1, plain DeltaNet).
    Per step: ``S <- 0 if reset``; ``S <- alpha S``; ``v_old = S^T k``;
    ``S <- S + k (beta (v - v_old))^T``; ``out = S^T q``, i.e.
    ``S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T``.
    Returns out [T, B, H, Dv] and the final state [B, H, Dk, Dv].
    """
    T, B, H, Dk = q.shape
    reset = check_reset(reset, T, B)
    if alpha is not None and alpha.shape != (T, B, H):
        raise ValueError(f"alpha must be [T, B, H] = [{T}, {B}, {H}], got {list(alpha.shape)}")
    S = state
    outs = []
    for t in range(T):
        S = torch.where(reset[t].view(B, 1, 1, 1), torch.zeros_like(S), S)   # [B, H, Dk, Dv]
        if alpha is not None:
            S = alpha[t].view(B, H, 1, 1) * S                                  # decay first
        k_t, q_t = k[t], q[t]                                                  # [B, H, Dk]
        v_old = torch.einsum("bhkv,bhk->bhv", S, k_t)                          # [B, H, Dv]
        delta = beta[t].unsqueeze(-1) * (v[t] - v_old)                          # [B, H, Dv]
        S = S + k_t.unsqueeze(-1) * delta.unsqueeze(-2)                        # [B, H, Dk, Dv]
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q_t))                     # read after write
        if detach_each_step:
            S = S.detach()
    return torch.stack(outs), S

