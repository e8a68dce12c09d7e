"""Per-step reference of the Delta RNN's recurrent fast net (``delta_rnn``).

Conventions as :mod:`agents.kernels.delta_rule.reference`.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

from ..common import check_reset


def delta_rnn_reference(z: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                        state: Dict[str, torch.Tensor], reset: torch.Tensor, *,
                        detach_each_step: bool = False) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Recurrent part of the Delta RNN (Irie et al., NeurIPS 2021), read after write.

    z: [T, B, H, d] is the feed-forward fast net's output ``W_t q_t`` (a :func:`delta_rule`
    output); k: [T, B, H, d] (softmaxed), v: [T, B, H, d], beta: [T, B, H] in (0, 1) are the
    slow net's recurrent key, value and learning rate; ``state`` holds ``R`` [B, H, d, d]
    (the recurrent fast weights) and ``y`` [B, H, d] (the previous output). Per step::

        R, y <- 0 if reset
        R <- R + k (beta (v - R^T k))^T
        y = z + R^T softmax(y)

    Returns y [T, B, H, d] and the final state ``{"R", "y"}``.
    """
    T, B, H, d = z.shape
    reset = check_reset(reset, T, B)
    R, y = state["R"], state["y"]
    outs = []
    for t in range(T):
        r = reset[t]
        R = torch.where(r.view(B, 1, 1, 1), torch.zeros_like(R), R)            # [B, H, d, d]
        y = torch.where(r.view(B, 1, 1), torch.zeros_like(y), y)               # [B, H, d]
        s = torch.softmax(y, -1)
        v_old = torch.einsum("bhkv,bhk->bhv", R, k[t])
        R = R + k[t].unsqueeze(-1) * (beta[t].unsqueeze(-1) * (v[t] - v_old)).unsqueeze(-2)
        y = z[t] + torch.einsum("bhkv,bhk->bhv", R, s)                         # read after write
        outs.append(y)
        if detach_each_step:
            R, y = R.detach(), y.detach()
    return torch.stack(outs), {"R": R, "y": y}
