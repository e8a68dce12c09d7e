"""Fast-weight ops with backend dispatch.

``delta_rule(q, k, v, beta, state, reset)``, ``srwm(x, W_slow, delta, reset)``,
``linear_attention``, ``rec_delta`` and ``delta_rnn`` take a whole time-major unroll.
Each op has a folder here holding its three forms: ``reference.py`` (per-step PyTorch
loops; autograd records every op: slow, obviously correct), ``torch_fused.py`` (the
same recurrence over the whole unroll with a hand-written backward, tested against the
reference) and ``triton_kernel.py`` (fused Triton kernels, one launch per unroll).
``backend="reference"``, ``"torch"`` and ``"triton"`` force one form (Triton needs CUDA
tensors, or CPU tensors under ``TRITON_INTERPRET=1``); ``backend="auto"`` picks Triton
for CUDA tensors and the whole-unroll PyTorch form everywhere else (2-3x faster
forward+backward than the reference on the CPU learner; see ``python -m
launch.bench_kernels --device cpu``). If a Triton kernel module fails to import, ``auto``
on CUDA tensors runs the PyTorch form and says so once, as a warning naming the module
and the error. See README.md in this folder for the maths.

The op functions share their names with their folders: ``from agents.kernels import
srwm`` is the function; import a form as ``from agents.kernels.srwm.reference import
srwm_reference`` (``import agents.kernels.srwm.reference`` would reach the function
through the attribute). Every op package is imported below, before the functions are
defined, so the function names are the ones that stay bound.
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from typing import Dict, Optional, Tuple

import torch

from .delta_rnn.reference import delta_rnn_reference
from .delta_rnn.torch_fused import delta_rnn_torch
from .delta_rule.reference import delta_rule_reference
from .delta_rule.torch_fused import delta_rule_torch
from .linear_attention.reference import linear_attention_reference
from .linear_attention.torch_fused import linear_attention_torch
from .rec_delta import REC_DELTA_KEYS
from .rec_delta.reference import rec_delta_reference
from .rec_delta.torch_fused import rec_delta_torch
from .srwm import SRWM_KEYS
from .srwm.reference import srwm_reference
from .srwm.torch_fused import srwm_torch

BACKENDS = ("auto", "reference", "torch", "triton")

__all__ = ["delta_rule", "srwm", "linear_attention", "rec_delta", "delta_rnn", "triton_available",
           "triton_unavailable_reason", "BACKENDS", "SRWM_KEYS", "REC_DELTA_KEYS"]

# The Triton kernel modules, imported on first use (triton may be absent on a CPU machine).
TRITON_MODULES = tuple(f"{__name__}.{op}.triton_kernel"
                       for op in ("delta_rule", "linear_attention", "srwm", "rec_delta", "delta_rnn"))

_warned_fallback = False


@functools.lru_cache(maxsize=None)
def triton_unavailable_reason() -> Optional[str]:
    """None when triton and every Triton kernel module import; otherwise which one failed and why."""
    try:
        import triton  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the machine
        return f"triton does not import ({type(e).__name__}: {e})"
    for name in TRITON_MODULES:
        try:
            importlib.import_module(name)
        except Exception as e:
            return f"{name} does not import ({type(e).__name__}: {e})"
    return None


def triton_available() -> bool:
    """True when triton imports and the project's Triton kernels load."""
    return triton_unavailable_reason() is None


def _warn_fallback(reason: str) -> None:
    """Say once per process that ``auto`` runs the PyTorch forms on CUDA tensors."""
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(f"agents.kernels: backend='auto' runs the PyTorch forms on CUDA tensors, "
                      f"not the fused Triton kernels: {reason}", RuntimeWarning, stacklevel=3)


def _use_triton(backend: str, t: torch.Tensor) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend in ("reference", "torch"):
        return False
    if backend == "triton":
        reason = triton_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"backend='triton' requested but {reason}")
        if not t.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError("backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU interpreter)")
        return True
    if not t.is_cuda:
        return False
    reason = triton_unavailable_reason()
    if reason is not None:
        _warn_fallback(reason)
        return False
    return True


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
        from .delta_rule.triton_kernel import delta_rule_triton
        return delta_rule_triton(q, k, v, beta, state, reset, detach_each_step=detach_each_step, alpha=alpha)
    if backend != "reference":
        return delta_rule_torch(q, k, v, beta, state, reset, detach_each_step=detach_each_step, alpha=alpha)
    return delta_rule_reference(q, k, v, beta, state, reset, detach_each_step=detach_each_step, alpha=alpha)


def rec_delta(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
              R: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor], reset: torch.Tensor, *,
              detach_each_step: bool = False, backend: str = "auto") -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Recurrent Delta Net memory over a whole unroll (see
    :func:`agents.kernels.rec_delta.reference.rec_delta_reference` for the maths).

    q, k, v: [T, B, H, d] and beta: [T, B, H] pre-activations; R: {q, k, v: [H, d, d],
    b: [H, d]}; state: {S: [B, H, d, d], y: [B, H, d]}; reset: bool [T, B].
    Returns (y [T, B, H, d], final state). Backends: reference, torch, triton (auto:
    Triton on CUDA tensors).
    """
    _check_rec_delta(q, k, v, beta, R, state)
    if _use_triton(backend, q):
        from .rec_delta.triton_kernel import rec_delta_triton
        return rec_delta_triton(q, k, v, beta, R, state, reset, detach_each_step=detach_each_step)
    fn = rec_delta_reference if backend == "reference" else rec_delta_torch
    return fn(q, k, v, beta, R, state, reset, detach_each_step=detach_each_step)


def delta_rnn(z: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
              state: Dict[str, torch.Tensor], reset: torch.Tensor, *, detach_each_step: bool = False,
              backend: str = "auto") -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Recurrent fast net of the Delta RNN over a whole unroll (see
    :func:`agents.kernels.delta_rnn.reference.delta_rnn_reference` for the maths).

    z, k, v: [T, B, H, d]; beta: [T, B, H]; state: {R: [B, H, d, d], y: [B, H, d]};
    reset: bool [T, B]. Returns (y [T, B, H, d], final state). Backends: reference,
    torch, triton (auto: Triton on CUDA tensors).
    """
    _check_delta_rnn(z, k, v, beta, state)
    if _use_triton(backend, z):
        from .delta_rnn.triton_kernel import delta_rnn_triton
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


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: torch.Tensor,
                     reset: torch.Tensor, *, detach_each_step: bool = False,
                     backend: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """Additive fast weights ``S <- S + k v^T; o = S^T q`` (Linear Transformer), read after
    write. Same shapes as :func:`delta_rule` without beta. Its torch and Triton forms are
    the delta rule's with the ``v_old`` term switched off (beta = 1)."""
    if _use_triton(backend, q):
        from .linear_attention.triton_kernel import linear_attention_triton
        return linear_attention_triton(q, k, v, state, reset, detach_each_step=detach_each_step)
    fn = linear_attention_reference if backend == "reference" else linear_attention_torch
    return fn(q, k, v, state, reset, detach_each_step=detach_each_step)


def srwm(x: torch.Tensor, W_slow: Dict[str, torch.Tensor], delta: Dict[str, torch.Tensor],
         reset: torch.Tensor, *, detach_each_step: bool = False,
         backend: str = "auto") -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Self-referential weight matrix over a whole unroll, read before write.

    x: [T, B, H, D]; W_slow: {y: [H, Dy, D], q: [H, D, D], k: [H, D, D], b: [H, 4, D]};
    delta: the same keys with a leading batch dimension; reset: bool [T, B].
    Returns (y [T, B, H, Dy], final_delta).
    """
    if _use_triton(backend, x):
        from .srwm.triton_kernel import srwm_triton
        return srwm_triton(x, W_slow, delta, reset, detach_each_step=detach_each_step)
    if backend != "reference":
        return srwm_torch(x, W_slow, delta, reset, detach_each_step=detach_each_step)
    return srwm_reference(x, W_slow, delta, reset, detach_each_step=detach_each_step)
