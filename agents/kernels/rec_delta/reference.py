"""Per-step reference of the Recurrent Delta Net memory (RDN, ``rec_delta``).

Conventions as :mod:`agents.kernels.delta_rule.reference`.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

from ..common import check_reset


def rec_delta_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                        R: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor], reset: torch.Tensor, *,
                        detach_each_step: bool = False) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Recurrent Delta Net memory (Irie et al., NeurIPS 2021, "RDN"), read after write.

    q, k, v: [T, B, H, d] and beta: [T, B, H] are the slow net's *pre-activations* from
    the layer input; ``R`` holds the recurrent slow weights ``q, k, v``: [H, d, d] and
    ``b``: [H, d]; ``state`` holds ``S`` [B, H, d, d] (fast weights) and ``y`` [B, H, d]
    (the previous output, before its tanh). Per step (row vectors, ``x R`` = sum over
    the first index of R)::

        S, y <- 0 if reset
        h = tanh(y)
        q = softmax(q~ + h R_q);  k = softmax(k~ + h R_k);  v = v~ + h R_v
        beta = sigmoid(b~ + h . r_b)
        S <- S + k (beta (v - S^T k))^T;   y = S^T q

    Returns y [T, B, H, d] and the final state ``{"S", "y"}``.
    """
    T, B, H, d = q.shape
    reset = check_reset(reset, T, B)
    S, y = state["S"], state["y"]
    outs = []
    for t in range(T):
        r = reset[t]
        S = torch.where(r.view(B, 1, 1, 1), torch.zeros_like(S), S)            # [B, H, d, d]
        y = torch.where(r.view(B, 1, 1), torch.zeros_like(y), y)               # [B, H, d]
        h = torch.tanh(y)
        q_t = torch.softmax(q[t] + torch.einsum("bhe,hed->bhd", h, R["q"]), -1)
        k_t = torch.softmax(k[t] + torch.einsum("bhe,hed->bhd", h, R["k"]), -1)
        v_t = v[t] + torch.einsum("bhe,hed->bhd", h, R["v"])
        b_t = torch.sigmoid(beta[t] + (h * R["b"]).sum(-1))                    # [B, H]
        v_old = torch.einsum("bhkv,bhk->bhv", S, k_t)
        S = S + k_t.unsqueeze(-1) * (b_t.unsqueeze(-1) * (v_t - v_old)).unsqueeze(-2)
        y = torch.einsum("bhkv,bhk->bhv", S, q_t)                              # read after write
        outs.append(y)
        if detach_each_step:
            S, y = S.detach(), y.detach()
    return torch.stack(outs), {"S": S, "y": y}

