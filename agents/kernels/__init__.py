"""Fast-weight ops with backend dispatch.

``delta_rule(q, k, v, beta, state, reset)`` and ``srwm(x, W_slow, delta, reset)`` take a
whole time-major unroll. ``backend="reference"`` runs the per-step PyTorch loops of
:mod:`agents.kernels.reference` (autograd records every op: slow, obviously correct);
``backend="torch"`` the whole-unroll PyTorch forms of :mod:`agents.kernels.torch_fused`
(the same recurrences with hand-written backward passes, tested against the
reference); ``backend="triton"`` the fused Triton kernels (one launch per unroll, CUDA
tensors, or CPU tensors under ``TRITON_INTERPRET=1``). ``backend="auto"`` picks Triton
for CUDA tensors when triton imports and the whole-unroll PyTorch form everywhere
else (2-3x faster forward+backward than the reference on the CPU learner; see
``python -m launch.bench_kernels --device cpu``). See README.md in this folder for the maths.
"""

from __future__ import annotations

import functools
import os
from typing import Dict, Tuple

import torch

from .reference import (SRWM_KEYS, delta_rule_reference, linear_attention_reference,
                        srwm_reference)
from .torch_fused import delta_rule_torch, srwm_torch

BACKENDS = ("auto", "reference", "torch", "triton")

__all__ = ["delta_rule", "srwm", "linear_attention", "triton_available", "BACKENDS", "SRWM_KEYS"]


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """True when triton imports and the project's Triton kernels load."""
    try:
        import triton  # noqa: F401
        from . import triton_delta, triton_srwm  # noqa: F401
    except Exception:  # pragma: no cover - depends on the machine
        return False
    return True


def _use_triton(backend: str, t: torch.Tensor) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend in ("reference", "torch"):
        return False
    if backend == "triton":
        if not triton_available():
            raise RuntimeError("backend='triton' requested but triton (or the kernels) cannot be imported")
        if not t.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError("backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU interpreter)")
        return True
    return t.is_cuda and triton_available()


def delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
               state: torch.Tensor, reset: torch.Tensor, *, detach_each_step: bool = False,
               backend: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """Delta rule over a whole unroll, read after write.

    q, k: [T, B, H, Dk]; v: [T, B, H, Dv]; beta: [T, B, H]; state: [B, H, Dk, Dv];
    reset: bool [T, B]. Returns (out [T, B, H, Dv], final_state [B, H, Dk, Dv]).
    """
    if _use_triton(backend, q):
        from .triton_delta import delta_rule_triton
        return delta_rule_triton(q, k, v, beta, state, reset, detach_each_step=detach_each_step)
    if backend != "reference":
        return delta_rule_torch(q, k, v, beta, state, reset, detach_each_step=detach_each_step)
    return delta_rule_reference(q, k, v, beta, state, reset, detach_each_step=detach_each_step)


def linear_attention(q, k, v, state, reset, *, detach_each_step: bool = False, backend: str = "auto"):
    """Additive fast weights ``S <- S + k v^T`` (Linear Transformer). Same shapes as
    :func:`delta_rule` without beta. It is the delta rule's update without the
    ``v_old`` term, so it has only the reference implementation."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    return linear_attention_reference(q, k, v, state, reset, detach_each_step=detach_each_step)


def srwm(x: torch.Tensor, W_slow: Dict[str, torch.Tensor], delta: Dict[str, torch.Tensor],
         reset: torch.Tensor, *, detach_each_step: bool = False,
         backend: str = "auto") -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Self-referential weight matrix over a whole unroll, read before write.

    x: [T, B, H, D]; W_slow: {y: [H, Dy, D], q: [H, D, D], k: [H, D, D], b: [H, 4, D]};
    delta: the same keys with a leading batch dimension; reset: bool [T, B].
    Returns (y [T, B, H, Dy], final_delta).
    """
    if _use_triton(backend, x):
        from .triton_srwm import srwm_triton
        return srwm_triton(x, W_slow, delta, reset, detach_each_step=detach_each_step)
    if backend != "reference":
        return srwm_torch(x, W_slow, delta, reset, detach_each_step=detach_each_step)
    return srwm_reference(x, W_slow, delta, reset, detach_each_step=detach_each_step)
