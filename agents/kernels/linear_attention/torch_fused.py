"""Whole-unroll PyTorch form of linear attention: the delta rule's Function without the
``v_old`` term (:func:`agents.kernels.delta_rule.torch_fused.delta_rule_torch` with
``delta=False`` and beta = 1)."""

from __future__ import annotations

import torch

from ..delta_rule.torch_fused import delta_rule_torch


def linear_attention_torch(q, k, v, state, reset, *, detach_each_step: bool = False):
    """Same contract as :func:`agents.kernels.linear_attention.reference.linear_attention_reference`."""
    beta = torch.ones(q.shape[:3], dtype=q.dtype, device=q.device)      # [T, B, H]
    return delta_rule_torch(q, k, v, beta, state, reset, detach_each_step=detach_each_step, delta=False)
