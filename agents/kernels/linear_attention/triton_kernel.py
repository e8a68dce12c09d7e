"""Triton path of linear attention: the delta rule's fused kernels with ``DELTA=False``
(no ``S^T k`` term in the residual) and beta = 1, so ``S <- S + k v^T; o = S^T q``
(:mod:`agents.kernels.delta_rule.triton_kernel`)."""

from __future__ import annotations

from typing import Tuple

import torch

from ..delta_rule.triton_kernel import delta_rule_triton

__all__ = ["linear_attention_triton"]


def linear_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: torch.Tensor,
                            reset: torch.Tensor, *, detach_each_step: bool = False
                            ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Same contract as :func:`agents.kernels.linear_attention.reference.linear_attention_reference`."""
    beta = torch.ones(q.shape[:3], dtype=q.dtype, device=q.device)      # [T, B, H], no gradient
    return delta_rule_triton(q, k, v, beta, state, reset, detach_each_step=detach_each_step, delta=False)
