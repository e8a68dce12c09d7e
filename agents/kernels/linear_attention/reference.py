"""Per-step reference of linear attention (the Linear Transformer's additive fast weights).

Conventions as :mod:`agents.kernels.delta_rule.reference`.
"""

from __future__ import annotations

import torch

from ..common import check_reset


def linear_attention_reference(q, k, v, state, reset, *, detach_each_step: bool = False):
    """Purely additive fast weights (Linear Transformer): ``S <- S + k v^T``; ``out = S^T q``.

    Shapes as :func:`delta_rule_reference` (no beta).
    """
    T, B, H, Dk = q.shape
    reset = check_reset(reset, T, B)
    S = state
    outs = []
    for t in range(T):
        S = torch.where(reset[t].view(B, 1, 1, 1), torch.zeros_like(S), S)
        S = S + k[t].unsqueeze(-1) * v[t].unsqueeze(-2)
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q[t]))
        if detach_each_step:
            S = S.detach()
    return torch.stack(outs), S

