"""The SRWM step maths as ``@triton.jit`` helpers, written once and used by the forward
kernel, the backward's chunk recomputation and its reverse pass
(:mod:`agents.kernels.srwm.triton_kernel`).

Per (batch row, head) the effective weights of a step are ``W_j = S_j + A_j`` (``j`` in
y, q, k, b; padded tiles [DYP, DP], [DP, DP], [DP, DP], [4, DP]); ``md`` masks the valid
lanes of ``D`` and ``r4 = tl.arange(0, 4)``::

    q = softmax(W^q x);  k = softmax(W^k x);  b = sigmoid(W^b x)      # the reads
    d = q - k;  e_j = W_j d                                            # all before any write
    A_j <- A_j + b_j e_j k^T                                           # the write
"""

from __future__ import annotations

import triton
import triton.language as tl

from ..triton_common import ADD, MAX


@triton.jit
def srwm_weights(rst, Ay, Aq, Ak, Ab, p_sy, p_sq, p_sk, p_sb, m_yd, m_dd, m_4d, ACC: tl.constexpr):
    """The step's reset (A_j = 0, back to the slow weights, where ``rst`` is set) and its
    effective weights W_j = S_j + A_j, the slow weights read from memory (shared by the
    rows of a head). Returns the four A_j after the reset and the four W_j."""
    Ay = tl.where(rst, 0.0, Ay)
    Aq = tl.where(rst, 0.0, Aq)
    Ak = tl.where(rst, 0.0, Ak)
    Ab = tl.where(rst, 0.0, Ab)
    Wy = tl.load(p_sy, mask=m_yd, other=0.0).to(ACC) + Ay          # [DYP, DP]
    Wq = tl.load(p_sq, mask=m_dd, other=0.0).to(ACC) + Aq          # [DP, DP]
    Wk = tl.load(p_sk, mask=m_dd, other=0.0).to(ACC) + Ak          # [DP, DP]
    Wb = tl.load(p_sb, mask=m_4d, other=0.0).to(ACC) + Ab          # [4, DP]
    return Ay, Aq, Ak, Ab, Wy, Wq, Wk, Wb


@triton.jit
def srwm_reads(Wy, Wq, Wk, Wb, x, md, r4):
    """The reads of one step, all before its write. Returns q, k [DP] (softmax), b [4]
    (sigmoid) and its entries b0..b3 as scalars, d = q - k [DP], and e_j = W_j d.
    (The softmaxes are written out rather than calls to a helper: every nested
    ``@jit`` call costs milliseconds under the CPU interpreter that runs the tests.)"""
    sq = tl.where(md, tl.reduce(Wq * x[None, :], 1, ADD), float("-inf"))
    eq = tl.exp(sq - tl.reduce(sq, 0, MAX))
    q = eq / tl.reduce(eq, 0, ADD)                                 # [DP] softmax, 0 on padded lanes
    sk = tl.where(md, tl.reduce(Wk * x[None, :], 1, ADD), float("-inf"))
    ek = tl.exp(sk - tl.reduce(sk, 0, MAX))
    k = ek / tl.reduce(ek, 0, ADD)
    b = 1.0 / (1.0 + tl.exp(-tl.reduce(Wb * x[None, :], 1, ADD)))
    d = q - k
    b0 = tl.reduce(tl.where(r4 == 0, b, 0.0), 0, ADD)
    b1 = tl.reduce(tl.where(r4 == 1, b, 0.0), 0, ADD)
    b2 = tl.reduce(tl.where(r4 == 2, b, 0.0), 0, ADD)
    b3 = tl.reduce(tl.where(r4 == 3, b, 0.0), 0, ADD)
    ey = tl.reduce(Wy * d[None, :], 1, ADD)                        # [DYP]  W^y q - W^y k
    e_q = tl.reduce(Wq * d[None, :], 1, ADD)                       # [DP]
    e_k = tl.reduce(Wk * d[None, :], 1, ADD)                       # [DP]
    e_b = tl.reduce(Wb * d[None, :], 1, ADD)                       # [4]
    return q, k, b, b0, b1, b2, b3, d, ey, e_q, e_k, e_b


@triton.jit
def srwm_write(Ay, Aq, Ak, Ab, k, b0, b1, b2, b3, ey, e_q, e_k, e_b):
    """The write of one step: A_j + b_j e_j k^T."""
    Ay = Ay + (b0 * ey)[:, None] * k[None, :]
    Aq = Aq + (b1 * e_q)[:, None] * k[None, :]
    Ak = Ak + (b2 * e_k)[:, None] * k[None, :]
    Ab = Ab + (b3 * e_b)[:, None] * k[None, :]
    return Ay, Aq, Ak, Ab
