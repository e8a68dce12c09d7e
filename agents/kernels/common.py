"""Helpers shared by the PyTorch forms of the fast-weight ops (references and whole-unroll forms).

``check_reset`` validates the reset mask every op takes; ``mv``, ``vm``, ``outer`` and
``add_outer_`` are the tiny batched matrix products of the whole-unroll forms;
``softmax_backward`` is the softmax's vector-Jacobian product.
"""

from __future__ import annotations

import torch


def check_reset(reset: torch.Tensor, T: int, B: int) -> torch.Tensor:
    """The reset mask as bool [T, B]; raises if its shape is not [T, B]."""
    if reset.shape != (T, B):
        raise ValueError(f"reset must be [T, B] = [{T}, {B}], got {list(reset.shape)}")
    return reset.to(torch.bool)



# Tiny batched matrix products as broadcast-multiply-and-sum: for d <= 64 heads this is
# several times faster on the CPU than bmm, which dispatches one small GEMM per head.
def mv(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """M x for M [N, R, C], x [N, C] -> [N, R]."""
    return (M * x.unsqueeze(-2)).sum(-1)


def vm(x: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """M^T x for M [N, R, C], x [N, R] -> [N, C]."""
    return (M * x.unsqueeze(-1)).sum(-2)


def add_outer_(M: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """M += a b^T in place for M [N, R, C], a [N, R], b [N, C]."""
    return M.addcmul_(a.unsqueeze(-1), b.unsqueeze(-2))


def outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.unsqueeze(-1) * b.unsqueeze(-2)




def softmax_backward(p: torch.Tensor, dp: torch.Tensor) -> torch.Tensor:
    """dL/dz for p = softmax(z) over the last axis, given dL/dp."""
    return p * (dp - (p * dp).sum(-1, keepdim=True))
