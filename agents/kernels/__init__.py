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
from typing import Dict, Optional, Tuple

import torch

from .reference import (SRWM_KEYS, delta_rnn_reference, delta_rule_reference, linear_attention_reference,
                        rec_delta_reference, srwm_reference)
from .torch_fused import delta_rnn_torch, delta_rule_torch, rec_delta_torch, srwm_torch

BACKENDS = ("auto", "reference", "torch", "triton")

__all__ = ["delta_rule", "srwm", "linear_attention", "rec_delta", "delta_rnn", "triton_available",
           "BACKENDS", "SRWM_KEYS", "REC_DELTA_KEYS"]

REC_DELTA_KEYS = ("q", "k", "v", "b")        # the recurrent slow weights of rec_delta


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """True when triton imports and the project's Triton kernels load."""
    try:
        import triton  # noqa: F401
        from . import triton_delta, triton_delta_rnn, triton_rec_delta, triton_srwm  # noqa: F401
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
               backend: str = "auto", alpha: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Delta rule over a whole unroll, read after write; with ``alpha`` the gated delta rule.

    q, k: [T, B, H, Dk]; v: [T, B, H, Dv]; beta: [T, B, H]; state: [B, H, Dk, Dv];
    reset: bool [T, B]; alpha: optional [T, B, H] per-step decay in (0, 1] applied to the
    state before the step's read and write (``S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1}
    + beta_t k_t v_t^T``; None is alpha = 1, DeltaNet). Returns (out [T, B, H, Dv],
    final_state [B, H, Dk, Dv]).
    """
    if _use_triton(backend, q):
        from .triton_delta import delta_rule_triton
        return delta_rule_triton(q, k, v, beta, state, reset, detach_each_step=detach_each_step, alpha=alpha)
    if backend != "reference":
        return delta_rule_torch(q, k, v, beta, state, reset, detach_each_step=detach_each_step, alpha=alpha)
    return delta_rule_reference(q, k, v, beta, state, reset, detach_each_step=detach_each_step, alpha=alpha)


def rec_delta(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
              R: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor], reset: torch.Tensor, *,
              detach_each_step: bool = False, backend: str = "auto") -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Recurrent Delta Net memory over a whole unroll (see
    :func:`agents.kernels.reference.rec_delta_reference` for the maths).

    q, k, v: [T, B, H, d] and beta: [T, B, H] pre-activations; R: {q, k, v: [H, d, d],
    b: [H, d]}; state: {S: [B, H, d, d], y: [B, H, d]}; reset: bool [T, B].
    Returns (y [T, B, H, d], final state). Backends: reference, torch, triton (auto:
    Triton on CUDA tensors).
    """
    _check_rec_delta(q, k, v, beta, R, state)
    if _use_triton(backend, q):
        from .triton_rec_delta import rec_delta_triton
        return rec_delta_triton(q, k, v, beta, R, state, reset, detach_each_step=detach_each_step)
    fn = rec_delta_reference if backend == "reference" else rec_delta_torch
    return fn(q, k, v, beta, R, state, reset, detach_each_step=detach_each_step)


def delta_rnn(z: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
              state: Dict[str, torch.Tensor], reset: torch.Tensor, *, detach_each_step: bool = False,
              backend: str = "auto") -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Recurrent fast net of the Delta RNN over a whole unroll (see
    :func:`agents.kernels.reference.delta_rnn_reference` for the maths).

    z, k, v: [T, B, H, d]; beta: [T, B, H]; state: {R: [B, H, d, d], y: [B, H, d]};
    reset: bool [T, B]. Returns (y [T, B, H, d], final state). Backends: reference,
    torch, triton (auto: Triton on CUDA tensors).
    """
    _check_delta_rnn(z, k, v, beta, state)
    if _use_triton(backend, z):
        from .triton_delta_rnn import delta_rnn_triton
        return delta_rnn_triton(z, k, v, beta, state, reset, detach_each_step=detach_each_step)
    fn = delta_rnn_reference if backend == "reference" else delta_rnn_torch
    return fn(z, k, v, beta, state, reset, detach_each_step=detach_each_step)


def _check_shape(name: str, t: torch.Tensor, want: tuple) -> None:
    if tuple(t.shape) != tuple(want):
        raise ValueError(f"{name} must be [{', '.join(map(str, want))}], got {list(t.shape)}")


def _check_rec_delta(q, k, v, beta, R, state) -> None:
    if q.dim() != 4:
        raise ValueError(f"q must be [T, B, H, d], got {list(q.shape)}")
    T, B, H, d = q.shape
    for n, t in (("k", k), ("v", v)):
        _check_shape(n, t, (T, B, H, d))
    _check_shape("beta", beta, (T, B, H))
    if set(R) != set(REC_DELTA_KEYS):
        raise ValueError(f"R must have keys {list(REC_DELTA_KEYS)}, got {sorted(R)}")
    for n in ("q", "k", "v"):
        _check_shape(f"R[{n!r}]", R[n], (H, d, d))
    _check_shape("R['b']", R["b"], (H, d))
    _check_shape("state['S']", state["S"], (B, H, d, d))
    _check_shape("state['y']", state["y"], (B, H, d))


def _check_delta_rnn(z, k, v, beta, state) -> None:
    if z.dim() != 4:
        raise ValueError(f"z must be [T, B, H, d], got {list(z.shape)}")
    T, B, H, d = z.shape
    for n, t in (("k", k), ("v", v)):
        _check_shape(n, t, (T, B, H, d))
    _check_shape("beta", beta, (T, B, H))
    _check_shape("state['R']", state["R"], (B, H, d, d))
    _check_shape("state['y']", state["y"], (B, H, d))


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
