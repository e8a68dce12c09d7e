"""What the Triton kernels of every op share: dtypes, the reductions' combine functions,
the masked softmax, the backward of a delta-rule step, and the description of a kernel
variant for ``--compile-only``.

Reductions are written ``tl.reduce(x, axis, ADD)`` (and ``MAX``) with the combine
functions below: on the GPU they compile to exactly what ``tl.sum`` / ``tl.max`` give.
Under the CPU interpreter (``TRITON_INTERPRET=1``, the tests) only Triton's own combine
functions are mapped to one numpy call; a user-written one runs element by element in
Python, and ``tl.sum`` / ``x.sum`` are nested ``@jit`` functions that the interpreter
re-patches on every call. So, and only when interpreting, ``ADD`` / ``MAX`` are
Triton's own (private) combine functions when they exist; if a Triton release renames
them the interpreter falls back to ours: slower tests, same results. The compiled
kernels never touch a private Triton name.

Measured (Triton 3.9, CPU time under the interpreter): a loop step summing a 16 x 16
tile costs 0.05 ms with ``tl.reduce(x, 1, tl.standard._sum_combine)``, 0.45 ms with
``tl.sum(x, 1)``, 0.52 ms with ``x.sum(1)`` and 8.2 ms with ``tl.reduce(x, 1,
add_combine)``. Whole test workers (``python -m tests.test_triton_kernels --worker OP``,
import included) with every reduction written ``tl.sum`` / ``tl.max`` instead: the
gated delta rule's cases 8.3 s vs 6.4 s (+30%), ``delta_rnn`` 12.5 s vs 9.0 s (+39%),
``rec_delta`` 19.8 s vs 12.7 s (+56%), ``linear_attention`` 7.7 s vs 5.9 s (+29%);
without the 2.1 s of imports +45%, +51%, +67%, +45%. That is more than the 30% we would accept for dropping the private names, so
they stay (issue 16).
"""

from __future__ import annotations

import os
from typing import Dict, NamedTuple

import torch
import triton
import triton.language as tl

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
TL_DTYPE = {torch.float32: tl.float32, torch.float64: tl.float64}


def acc_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """Accumulation dtype: float64 if any input is float64 (used by gradcheck), else float32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def check_dtypes_devices(named, device, what: str) -> None:
    """Raise if a (name, tensor) pair has an unsupported dtype or lives off ``device``."""
    for name, t in named:
        if t.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"{name} has dtype {t.dtype}; the Triton {what} supports "
                             "float32, float16, bfloat16, float64")
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but the first input is on {device}")


@triton.jit
def add_combine(a, b):
    return a + b


@triton.jit
def max_combine(a, b):
    return tl.maximum(a, b)


if os.environ.get("TRITON_INTERPRET") == "1":       # interpreter speed only, see the docstring
    ADD = getattr(tl.standard, "_sum_combine", add_combine)
    MAX = getattr(tl.standard, "_elementwise_max", max_combine)
else:
    ADD = add_combine
    MAX = max_combine


@triton.jit
def softmax(y, m):
    """Softmax of the valid lanes ``m`` of a vector y; padded lanes give 0."""
    y = tl.where(m, y, float("-inf"))
    ex = tl.exp(y - tl.reduce(y, 0, MAX))
    ex = tl.where(m, ex, 0.0)
    return ex / tl.reduce(ex, 0, ADD)


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def delta_step_bwd(S_in, G, k, q, e, beta, dy):
    """Backward of one delta-rule step whose read follows its write, as the backward
    kernels of the Delta RNN and RDN walk it (one program holds the state's whole key
    axis: rows of ``S_in`` [K, V] are keys, columns values)::

        u = beta e;   S = S_in + k u^T;   o = S^T q          (e = v - S_in^T k, stored)

    ``S_in``: the state the step starts from (after its reset);
    ``G``: dL/dS from the later steps; ``dy``: dL/do. Returns ``dq = S dy``, ``du`` = dL/du
    (so dv = beta du and dbeta = <du, e>), ``dk``, and ``G`` = dL/dS_in through this step,
    the path through ``v_old = S_in^T k`` included (dL/dv_old = -beta du). One helper rather
    than finer ones: every nested ``@jit`` call costs time under the CPU interpreter."""
    u = beta * e                                                     # [V]
    S = S_in + k[:, None] * u[None, :]
    dq = tl.reduce(S * dy[None, :], 1, ADD)                          # S dy
    G += q[:, None] * dy[None, :]                                    # o = S^T q
    du = tl.reduce(G * k[:, None], 0, ADD)                           # G^T k
    dvold = -beta * du
    dk = tl.reduce(G * u[None, :], 1, ADD) + tl.reduce(S_in * dvold[None, :], 1, ADD)
    G += k[:, None] * dvold[None, :]                                 # v_old = S_in^T k
    return dq, du, dk, G


class KernelSpec(NamedTuple):
    """One compiled variant of a kernel, as its launcher would pick it for a head size
    (``python -m launch.bench_kernels --compile-only`` compiles these for a GPU target)."""
    label: str                      # e.g. "delta fwd", "srwm bwd Dy=49"
    fn: object                      # the @triton.jit kernel
    constexprs: Dict[str, object]
    num_warps: int
