"""Slow, obviously correct per-step references of the fast-weight ops.

These loops follow DESIGN.md section 4 line by line; the Triton kernels in this
package are tested against them (outputs, final states and every gradient).

Conventions (per head, rows of a weight matrix are its outputs):

* ``reset[t, b]`` true: before step ``t`` row ``b`` of the state goes back to its
  episode-start value (zeros; for SRWM a zero difference from the slow weights).
* ``detach_each_step=True`` cuts the gradient through the state after every step,
  as the original IDSIA learner did; the default backpropagates through the
  whole unroll.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

SRWM_KEYS = ("y", "q", "k", "b")


def _check_reset(reset: torch.Tensor, T: int, B: int) -> torch.Tensor:
    if reset.shape != (T, B):
        raise ValueError(f"reset must be [T, B] = [{T}, {B}], got {list(reset.shape)}")
    return reset.to(torch.bool)


def delta_rule_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                         state: torch.Tensor, reset: torch.Tensor, *,
                         detach_each_step: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Delta rule, read after write (Schlag et al. 2021).

    q, k: [T, B, H, Dk] (feature-mapped and normalised); v: [T, B, H, Dv];
    beta: [T, B, H] in (0, 1); state S: [B, H, Dk, Dv]; reset: bool [T, B].
    Per step: ``S <- 0 if reset``; ``v_old = S^T k``; ``S <- S + k (beta (v - v_old))^T``;
    ``out = S^T q``. Returns out [T, B, H, Dv] and the final state [B, H, Dk, Dv].
    """
    T, B, H, Dk = q.shape
    reset = _check_reset(reset, T, B)
    S = state
    outs = []
    for t in range(T):
        S = torch.where(reset[t].view(B, 1, 1, 1), torch.zeros_like(S), S)   # [B, H, Dk, Dv]
        k_t, q_t = k[t], q[t]                                                  # [B, H, Dk]
        v_old = torch.einsum("bhkv,bhk->bhv", S, k_t)                          # [B, H, Dv]
        delta = beta[t].unsqueeze(-1) * (v[t] - v_old)                          # [B, H, Dv]
        S = S + k_t.unsqueeze(-1) * delta.unsqueeze(-2)                        # [B, H, Dk, Dv]
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q_t))                     # read after write
        if detach_each_step:
            S = S.detach()
    return torch.stack(outs), S


def linear_attention_reference(q, k, v, state, reset, *, detach_each_step: bool = False):
    """Purely additive fast weights (Linear Transformer): ``S <- S + k v^T``; ``out = S^T q``.

    Shapes as :func:`delta_rule_reference` (no beta).
    """
    T, B, H, Dk = q.shape
    reset = _check_reset(reset, T, B)
    S = state
    outs = []
    for t in range(T):
        S = torch.where(reset[t].view(B, 1, 1, 1), torch.zeros_like(S), S)
        S = S + k[t].unsqueeze(-1) * v[t].unsqueeze(-2)
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q[t]))
        if detach_each_step:
            S = S.detach()
    return torch.stack(outs), S


def srwm_reference(x: torch.Tensor, W_slow: Dict[str, torch.Tensor], delta: Dict[str, torch.Tensor],
                   reset: torch.Tensor, *, detach_each_step: bool = False
                   ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Self-referential weight matrix (Irie et al., ICML 2022), read before write.

    x: [T, B, H, D] (already softmaxed per head). ``W_slow`` has keys ``y, q, k, b`` of
    shapes [H, Dy, D], [H, D, D], [H, D, D], [H, 4, D]; ``delta`` the same keys with a
    leading batch dimension. The effective weights are ``W = W_slow + delta``. Per step::

        y = W^y x;  q = softmax(W^q x);  k = softmax(W^k x);  b = sigmoid(W^b x)
        M_j <- M_j + b[j] (M_j q - M_j k) k^T   for M_j in (W^y, W^q, W^k, W^b)

    with every read done before any write. Returns y [T, B, H, Dy] and the final delta.
    """
    T, B, H, D = x.shape
    reset = _check_reset(reset, T, B)
    dW = dict(delta)
    ys = []
    for t in range(T):
        r = reset[t].view(B, 1, 1, 1)
        dW = {n: torch.where(r, torch.zeros_like(dW[n]), dW[n]) for n in SRWM_KEYS}
        W = {n: W_slow[n].unsqueeze(0) + dW[n] for n in SRWM_KEYS}           # [B, H, out, D]
        x_t = x[t]                                                            # [B, H, D]
        y = torch.einsum("bhod,bhd->bho", W["y"], x_t)                        # [B, H, Dy]
        q = torch.softmax(torch.einsum("bhod,bhd->bho", W["q"], x_t), -1)     # [B, H, D]
        k = torch.softmax(torch.einsum("bhod,bhd->bho", W["k"], x_t), -1)     # [B, H, D]
        b = torch.sigmoid(torch.einsum("bhod,bhd->bho", W["b"], x_t))         # [B, H, 4]
        new = {}
        for j, n in enumerate(SRWM_KEYS):
            diff = torch.einsum("bhod,bhd->bho", W[n], q - k)                 # M q - M k
            new[n] = dW[n] + b[..., j, None, None] * diff.unsqueeze(-1) * k.unsqueeze(-2)
        dW = {n: v.detach() for n, v in new.items()} if detach_each_step else new
        ys.append(y)
    return torch.stack(ys), dW
