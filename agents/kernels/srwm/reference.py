"""Per-step reference of the self-referential weight matrix (SRWM).

Conventions as :mod:`agents.kernels.delta_rule.reference`.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

from ..common import check_reset
from . import SRWM_KEYS


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
    reset = check_reset(reset, T, B)
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

