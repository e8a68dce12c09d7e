"""Fused Triton kernels for the self-referential weight matrix over a whole unroll.

(Over 400 lines on purpose: the forward writes and the backward reads the same padded
checkpoint and scratch tiles, laid out in both kernels side by side; the step maths
they share is in ``triton_step.py``.)

The op is the SRWM of Irie, Schlag, Csordas and Schmidhuber, "A Modern
Self-Referential Weight Matrix That Learns to Modify Itself" (ICML 2022). Per
(batch row, head) the carried state is the difference ``A_j`` of four matrices from
their slow weights ``S_j`` (j in y, q, k, b; shapes [Dy, D], [D, D], [D, D], [4, D]).
With ``W_j = S_j + A_j``::

    A      <- 0                               if reset[t]   (back to the slow weights)
    y_t     = W^y x_t                         # read BEFORE the write
    q_t     = softmax(W^q x_t);  k_t = softmax(W^k x_t);  b_t = sigmoid(W^b x_t)
    A_j    <- A_j + b_t[j] (W_j (q_t - k_t)) k_t^T      for all j, reads before writes

Semantics match :func:`agents.kernels.srwm.reference.srwm_reference` exactly (including
``detach_each_step``, where W^q, W^k, W^b get no gradient).

Launch layout: one program per (batch row, head); the four state matrices live in
registers in fp32 and the program loops over ``t``. The forward writes the state
every ``chunk`` steps to a checkpoint buffer. The backward walks the chunks in
reverse: it recomputes the chunk's states forward from its checkpoint (resets
applied) into a per-program scratch of ``chunk`` states, then back-propagates through
the chunk's steps in reverse order reading them back. No state is ever reconstructed
by subtraction, so resets are exact. Slow-weight gradients are accumulated per
(batch row, head) and summed over the batch in PyTorch (deterministic). The
backward recurrences are written out in ``agents/kernels/README.md``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import triton
import triton.language as tl

from ..triton_common import ADD, TL_DTYPE, KernelSpec, acc_dtype, check_dtypes_devices
from . import SRWM_KEYS
from .triton_step import srwm_reads, srwm_weights, srwm_write

__all__ = ["srwm_triton", "DEFAULT_CHUNK", "compile_specs"]

DEFAULT_CHUNK = 16


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _srwm_fwd_kernel(x_ptr, sy_ptr, sq_ptr, sk_ptr, sb_ptr,
                     ay_ptr, aq_ptr, ak_ptr, ab_ptr, reset_ptr,
                     y_ptr, fy_ptr, fq_ptr, fk_ptr, fb_ptr, ckpt_ptr,
                     T, B, H, C, NC,
                     D: tl.constexpr, DY: tl.constexpr, DP: tl.constexpr, DYP: tl.constexpr,
                     STORE_CKPT: tl.constexpr, ACC: tl.constexpr):
    """Forward for one (batch row, head). ckpt_ptr: [B*H, NC, SZ] fp32 padded tiles."""
    i_bh = tl.program_id(0).to(tl.int64)        # b * H + h
    i_b = i_bh // H
    i_h = i_bh % H
    rd = tl.arange(0, DP)
    ry = tl.arange(0, DYP)
    r4 = tl.arange(0, 4)
    md = rd < D
    m_yd = (ry < DY)[:, None] & md[None, :]     # [DYP, DP]
    m_dd = md[:, None] & md[None, :]            # [DP, DP]
    m_4d = (r4 < 4)[:, None] & md[None, :]      # [4, DP]
    o_yd = ry[:, None] * D + rd[None, :]
    o_dd = rd[:, None] * D + rd[None, :]
    o_4d = r4[:, None] * D + rd[None, :]
    # slow weights of head h: read at each use (L1/L2 hits shared by the batch rows)
    # rather than held, which leaves the registers to the carried state
    p_sy = sy_ptr + i_h * DY * D + o_yd
    p_sq = sq_ptr + i_h * D * D + o_dd
    p_sk = sk_ptr + i_h * D * D + o_dd
    p_sb = sb_ptr + i_h * 4 * D + o_4d
    # carried differences
    Ay = tl.load(ay_ptr + i_bh * DY * D + o_yd, mask=m_yd, other=0.0).to(ACC)
    Aq = tl.load(aq_ptr + i_bh * D * D + o_dd, mask=m_dd, other=0.0).to(ACC)
    Ak = tl.load(ak_ptr + i_bh * D * D + o_dd, mask=m_dd, other=0.0).to(ACC)
    Ab = tl.load(ab_ptr + i_bh * 4 * D + o_4d, mask=m_4d, other=0.0).to(ACC)
    # checkpoint layout: padded tiles y | q | k | b
    SZ: tl.constexpr = DYP * DP + 2 * DP * DP + 4 * DP
    c_y = ry[:, None] * DP + rd[None, :]
    c_q = DYP * DP + rd[:, None] * DP + rd[None, :]
    c_k = c_q + DP * DP
    c_b = DYP * DP + 2 * DP * DP + r4[:, None] * DP + rd[None, :]
    p_ck = ckpt_ptr + i_bh * NC * SZ

    p_x = x_ptr + i_bh * D + rd
    p_y = y_ptr + i_bh * DY + ry
    p_reset = reset_ptr + i_b
    for t in range(T):
        if STORE_CKPT:
            if t % C == 0:                       # state entering the chunk (before its reset)
                p_c = p_ck + (t // C) * SZ
                tl.store(p_c + c_y, Ay)
                tl.store(p_c + c_q, Aq)
                tl.store(p_c + c_k, Ak)
                tl.store(p_c + c_b, Ab)
        Ay, Aq, Ak, Ab, Wy, Wq, Wk, Wb = srwm_weights(tl.load(p_reset) != 0, Ay, Aq, Ak, Ab,
                                                      p_sy, p_sq, p_sk, p_sb, m_yd, m_dd, m_4d, ACC)
        x_t = tl.load(p_x, mask=md, other=0.0).to(ACC)                 # [DP]
        y_t = tl.reduce(Wy * x_t[None, :], 1, ADD)                     # [DYP]  read before write
        q_t, k_t, b_t, b0, b1, b2, b3, d_t, ey, e_q, e_k, e_b = srwm_reads(Wy, Wq, Wk, Wb, x_t, md, r4)
        Ay, Aq, Ak, Ab = srwm_write(Ay, Aq, Ak, Ab, k_t, b0, b1, b2, b3, ey, e_q, e_k, e_b)
        tl.store(p_y, y_t.to(y_ptr.dtype.element_ty), mask=ry < DY)
        p_x += B * H * D
        p_y += B * H * DY
        p_reset += B
    tl.store(fy_ptr + i_bh * DY * D + o_yd, Ay.to(fy_ptr.dtype.element_ty), mask=m_yd)
    tl.store(fq_ptr + i_bh * D * D + o_dd, Aq.to(fq_ptr.dtype.element_ty), mask=m_dd)
    tl.store(fk_ptr + i_bh * D * D + o_dd, Ak.to(fk_ptr.dtype.element_ty), mask=m_dd)
    tl.store(fb_ptr + i_bh * 4 * D + o_4d, Ab.to(fb_ptr.dtype.element_ty), mask=m_4d)


@triton.jit
def _srwm_bwd_kernel(x_ptr, sy_ptr, sq_ptr, sk_ptr, sb_ptr, reset_ptr, dy_ptr,
                     gy_ptr, gq_ptr, gk_ptr, gb_ptr, ckpt_ptr, scr_ptr,
                     dx_ptr, dsy_ptr, dsq_ptr, dsk_ptr, dsb_ptr,
                     day_ptr, daq_ptr, dak_ptr, dab_ptr,
                     T, B, H, C, NC,
                     D: tl.constexpr, DY: tl.constexpr, DP: tl.constexpr, DYP: tl.constexpr,
                     DETACH: tl.constexpr, ACC: tl.constexpr):
    """Backward for one (batch row, head).

    g*_ptr: gradient of the final delta [B, H, rows, D]; scr_ptr: [B*H, C, SZ] fp32 scratch;
    ds*_ptr: per-(batch row, head) slow-weight gradients [B*H, rows, D] fp32;
    da*_ptr: gradient of the initial delta [B, H, rows, D] fp32; dx_ptr: [T, B, H, D].
    """
    i_bh = tl.program_id(0).to(tl.int64)
    i_b = i_bh // H
    i_h = i_bh % H
    rd = tl.arange(0, DP)
    ry = tl.arange(0, DYP)
    r4 = tl.arange(0, 4)
    md = rd < D
    m_yd = (ry < DY)[:, None] & md[None, :]
    m_dd = md[:, None] & md[None, :]
    m_4d = (r4 < 4)[:, None] & md[None, :]
    o_yd = ry[:, None] * D + rd[None, :]
    o_dd = rd[:, None] * D + rd[None, :]
    o_4d = r4[:, None] * D + rd[None, :]
    p_sy = sy_ptr + i_h * DY * D + o_yd
    p_sq = sq_ptr + i_h * D * D + o_dd
    p_sk = sk_ptr + i_h * D * D + o_dd
    p_sb = sb_ptr + i_h * 4 * D + o_4d
    SZ: tl.constexpr = DYP * DP + 2 * DP * DP + 4 * DP
    c_y = ry[:, None] * DP + rd[None, :]
    c_q = DYP * DP + rd[:, None] * DP + rd[None, :]
    c_k = c_q + DP * DP
    c_b = DYP * DP + 2 * DP * DP + r4[:, None] * DP + rd[None, :]
    p_ck = ckpt_ptr + i_bh * NC * SZ
    p_scr = scr_ptr + i_bh * C * SZ

    # G_j = dL/dA_j for the state after the step being processed (starts at the final state).
    if DETACH:
        Gy = tl.zeros([DYP, DP], dtype=ACC)
        Gq = tl.zeros([DP, DP], dtype=ACC)
        Gk = tl.zeros([DP, DP], dtype=ACC)
        Gb = tl.zeros([4, DP], dtype=ACC)
    else:
        Gy = tl.load(gy_ptr + i_bh * DY * D + o_yd, mask=m_yd, other=0.0).to(ACC)
        Gq = tl.load(gq_ptr + i_bh * D * D + o_dd, mask=m_dd, other=0.0).to(ACC)
        Gk = tl.load(gk_ptr + i_bh * D * D + o_dd, mask=m_dd, other=0.0).to(ACC)
        Gb = tl.load(gb_ptr + i_bh * 4 * D + o_4d, mask=m_4d, other=0.0).to(ACC)
    # per-step local gradients of W_j, summed over time: the slow-weight gradients
    Ey = tl.zeros([DYP, DP], dtype=ACC)
    Eq = tl.zeros([DP, DP], dtype=ACC)
    Ek = tl.zeros([DP, DP], dtype=ACC)
    Eb = tl.zeros([4, DP], dtype=ACC)

    for ci in range(NC):
        c = NC - 1 - ci
        t0 = c * C
        n = tl.minimum(T - t0, C)                 # steps in this chunk

        # (1) recompute the chunk forward from its checkpoint; scratch[s] = the effective
        #     weights W = S + A used at step t0 + s (after that step's reset)
        p_c = p_ck + c * SZ
        Ay = tl.load(p_c + c_y)
        Aq = tl.load(p_c + c_q)
        Ak = tl.load(p_c + c_k)
        Ab = tl.load(p_c + c_b)
        p_x = x_ptr + (t0 * B * H + i_bh) * D + rd
        p_reset = reset_ptr + t0 * B + i_b
        p_s = p_scr
        for _ in range(n - 1):
            Ay, Aq, Ak, Ab, Wy, Wq, Wk, Wb = srwm_weights(tl.load(p_reset) != 0, Ay, Aq, Ak, Ab,
                                                          p_sy, p_sq, p_sk, p_sb, m_yd, m_dd, m_4d, ACC)
            tl.store(p_s + c_y, Wy)
            tl.store(p_s + c_q, Wq)
            tl.store(p_s + c_k, Wk)
            tl.store(p_s + c_b, Wb)
            x_t = tl.load(p_x, mask=md, other=0.0).to(ACC)
            q_t, k_t, b_t, b0, b1, b2, b3, d_t, ey, e_q, e_k, e_b = srwm_reads(Wy, Wq, Wk, Wb, x_t, md, r4)
            Ay, Aq, Ak, Ab = srwm_write(Ay, Aq, Ak, Ab, k_t, b0, b1, b2, b3, ey, e_q, e_k, e_b)
            p_x += B * H * D
            p_reset += B
            p_s += SZ
        # the chunk's last step: its weights only (its write is not needed)
        Ay, Aq, Ak, Ab, Wy, Wq, Wk, Wb = srwm_weights(tl.load(p_reset) != 0, Ay, Aq, Ak, Ab,
                                                      p_sy, p_sq, p_sk, p_sb, m_yd, m_dd, m_4d, ACC)
        tl.store(p_s + c_y, Wy)
        tl.store(p_s + c_q, Wq)
        tl.store(p_s + c_k, Wk)
        tl.store(p_s + c_b, Wb)
        tl.debug_barrier()   # the reverse pass reads scratch written by other threads

        # (2) back-propagate through the chunk's steps in reverse
        t_last = t0 + n - 1
        p_x = x_ptr + (t_last * B * H + i_bh) * D + rd
        p_dx = dx_ptr + (t_last * B * H + i_bh) * D + rd
        p_dy = dy_ptr + (t_last * B * H + i_bh) * DY + ry
        p_reset = reset_ptr + t_last * B + i_b
        # p_s points at scratch[n - 1]
        for _ in range(n):
            Wy = tl.load(p_s + c_y)                                                # [DYP, DP]
            Wq = tl.load(p_s + c_q)                                                # [DP, DP]
            Wk = tl.load(p_s + c_k)                                                # [DP, DP]
            Wb = tl.load(p_s + c_b)                                                # [4, DP]
            x_t = tl.load(p_x, mask=md, other=0.0).to(ACC)                  # [DP]
            dy_t = tl.load(p_dy, mask=ry < DY, other=0.0).to(ACC)          # [DYP]
            q_t, k_t, b_t, b0, b1, b2, b3, d_t, ey, e_q, e_k, e_b = srwm_reads(Wy, Wq, Wk, Wb, x_t, md, r4)
            if DETACH:                       # the state after this step is cut off
                Gy = tl.zeros([DYP, DP], dtype=ACC)
                Gq = tl.zeros([DP, DP], dtype=ACC)
                Gk = tl.zeros([DP, DP], dtype=ACC)
                Gb = tl.zeros([4, DP], dtype=ACC)
            # A_j' = A_j + b_j e_j k^T with e_j = W_j d
            gky = tl.reduce(Gy * k_t[None, :], 1, ADD)                            # [DYP] G k
            gkq = tl.reduce(Gq * k_t[None, :], 1, ADD)
            gkk = tl.reduce(Gk * k_t[None, :], 1, ADD)
            gkb = tl.reduce(Gb * k_t[None, :], 1, ADD)
            db0 = tl.reduce(gky * ey, 0, ADD)
            db1 = tl.reduce(gkq * e_q, 0, ADD)
            db2 = tl.reduce(gkk * e_k, 0, ADD)
            db3 = tl.reduce(gkb * e_b, 0, ADD)
            dey = b0 * gky                                                         # dL/de_j
            deq = b1 * gkq
            dek = b2 * gkk
            deb = b3 * gkb
            dd = (tl.reduce(Wy * dey[:, None], 0, ADD) + tl.reduce(Wq * deq[:, None], 0, ADD)
                  + tl.reduce(Wk * dek[:, None], 0, ADD) + tl.reduce(Wb * deb[:, None], 0, ADD))   # [DP]
            dk_upd = (b0 * tl.reduce(Gy * ey[:, None], 0, ADD) + b1 * tl.reduce(Gq * e_q[:, None], 0, ADD)
                      + b2 * tl.reduce(Gk * e_k[:, None], 0, ADD) + b3 * tl.reduce(Gb * e_b[:, None], 0, ADD))
            dq_t = dd                                                              # d = q - k
            dk_t = dk_upd - dd
            # back through the reads
            dsq = q_t * (dq_t - tl.reduce(dq_t * q_t, 0, ADD))                    # softmax
            dsk = k_t * (dk_t - tl.reduce(dk_t * k_t, 0, ADD))
            dbv = tl.where(r4 == 0, db0, tl.where(r4 == 1, db1, tl.where(r4 == 2, db2, db3)))
            dsb = dbv * b_t * (1.0 - b_t)                                          # sigmoid
            dx_t = (tl.reduce(Wy * dy_t[:, None], 0, ADD) + tl.reduce(Wq * dsq[:, None], 0, ADD)
                    + tl.reduce(Wk * dsk[:, None], 0, ADD) + tl.reduce(Wb * dsb[:, None], 0, ADD))
            tl.store(p_dx, dx_t.to(dx_ptr.dtype.element_ty), mask=md)
            # local gradient of W_j at this step
            Ly = dey[:, None] * d_t[None, :] + dy_t[:, None] * x_t[None, :]
            Lq = deq[:, None] * d_t[None, :] + dsq[:, None] * x_t[None, :]
            Lk = dek[:, None] * d_t[None, :] + dsk[:, None] * x_t[None, :]
            Lb = deb[:, None] * d_t[None, :] + dsb[:, None] * x_t[None, :]
            Ey += Ly
            Eq += Lq
            Ek += Lk
            Eb += Lb
            rst = tl.load(p_reset) != 0              # a reset cuts the path to earlier steps
            Gy = tl.where(rst, 0.0, Gy + Ly)
            Gq = tl.where(rst, 0.0, Gq + Lq)
            Gk = tl.where(rst, 0.0, Gk + Lk)
            Gb = tl.where(rst, 0.0, Gb + Lb)
            p_x -= B * H * D
            p_dx -= B * H * D
            p_dy -= B * H * DY
            p_reset -= B
            p_s -= SZ
        tl.debug_barrier()   # the next chunk's recompute overwrites the scratch

    tl.store(day_ptr + i_bh * DY * D + o_yd, Gy, mask=m_yd)
    tl.store(daq_ptr + i_bh * D * D + o_dd, Gq, mask=m_dd)
    tl.store(dak_ptr + i_bh * D * D + o_dd, Gk, mask=m_dd)
    tl.store(dab_ptr + i_bh * 4 * D + o_4d, Gb, mask=m_4d)
    tl.store(dsy_ptr + i_bh * DY * D + o_yd, Ey, mask=m_yd)
    tl.store(dsq_ptr + i_bh * D * D + o_dd, Eq, mask=m_dd)
    tl.store(dsk_ptr + i_bh * D * D + o_dd, Ek, mask=m_dd)
    tl.store(dsb_ptr + i_bh * 4 * D + o_4d, Eb, mask=m_4d)


# ----------------------------------------------------------------------------- launchers


def _num_warps(DP: int, DYP: int, backward: bool) -> int:
    """Enough warps that the state tiles (and, backward, their gradients) fit in registers."""
    tile = DP * max(DP, DYP)
    if backward:
        return 2 if tile <= 256 else 4 if tile <= 1024 else 8
    return 1 if tile <= 256 else 2 if tile <= 1024 else 8


def _sizes(x, Wy, chunk):
    T, B, H, D = x.shape
    DY = Wy.shape[1]
    DP = max(triton.next_power_of_2(D), 2)
    DYP = max(triton.next_power_of_2(DY), 2)
    C = min(chunk, T)
    NC = triton.cdiv(T, C)
    SZ = DYP * DP + 2 * DP * DP + 4 * DP
    return T, B, H, D, DY, DP, DYP, C, NC, SZ


def _srwm_forward(x, slow, delta, reset_u8, *, store_ckpt: bool, chunk: int):
    """Launch the forward kernel. Returns (y, final_delta tuple, checkpoints or None)."""
    T, B, H, D, DY, DP, DYP, C, NC, SZ = _sizes(x, slow[0], chunk)
    y = torch.empty(T, B, H, DY, device=x.device, dtype=x.dtype)                 # [T, B, H, Dy]
    final = tuple(torch.empty_like(a) for a in delta)                            # [B, H, rows, D]
    acc = acc_dtype(x, *slow, *delta)
    ckpt = (torch.empty(B * H, NC, SZ, device=x.device, dtype=acc)              # [B*H, NC, SZ]
            if store_ckpt else y)                                                # dummy when unused
    _srwm_fwd_kernel[(B * H,)](
        x, *slow, *delta, reset_u8, y, *final, ckpt, T, B, H, C, NC,
        D=D, DY=DY, DP=DP, DYP=DYP, STORE_CKPT=store_ckpt, ACC=TL_DTYPE[acc],
        num_warps=_num_warps(DP, DYP, backward=False))
    return y, final, (ckpt if store_ckpt else None)


def _srwm_backward(x, slow, reset_u8, ckpt, d_y, g_final, *, detach: bool, chunk: int):
    """Launch the backward kernel. Returns (dx, d_slow tuple, d_delta tuple) in the accumulation dtype."""
    T, B, H, D, DY, DP, DYP, C, NC, SZ = _sizes(x, slow[0], chunk)
    dev = x.device
    acc = ckpt.dtype                                                             # accumulation dtype
    rows = (DY, D, D, 4)
    dx = torch.empty(T, B, H, D, device=dev, dtype=acc)                          # [T, B, H, D]
    d_slow_bh = tuple(torch.empty(B, H, r, D, device=dev, dtype=acc) for r in rows)   # per (row, head)
    d_delta = tuple(torch.empty(B, H, r, D, device=dev, dtype=acc) for r in rows)
    scratch = torch.empty(B * H, C, SZ, device=dev, dtype=acc)
    _srwm_bwd_kernel[(B * H,)](
        x, *slow, reset_u8, d_y, *g_final, ckpt, scratch, dx, *d_slow_bh, *d_delta,
        T, B, H, C, NC, D=D, DY=DY, DP=DP, DYP=DYP, DETACH=detach, ACC=TL_DTYPE[acc],
        num_warps=_num_warps(DP, DYP, backward=True))
    d_slow = tuple(g.sum(0) for g in d_slow_bh)                                  # [H, rows, D]
    return dx, d_slow, d_delta


class _SRWMFunction(torch.autograd.Function):
    """Autograd wrapper: inputs are already validated and contiguous."""

    @staticmethod
    def forward(ctx, x, sy, sq, sk, sb, ay, aq, ak, ab, reset_u8, detach_each_step, chunk):
        slow, delta = (sy, sq, sk, sb), (ay, aq, ak, ab)
        y, final, ckpt = _srwm_forward(x, slow, delta, reset_u8, store_ckpt=True, chunk=chunk)
        ctx.save_for_backward(x, sy, sq, sk, sb, reset_u8, ckpt)
        ctx.detach_each_step = detach_each_step
        ctx.chunk = chunk
        ctx.dtypes = (x.dtype, sy.dtype, ay.dtype)
        if detach_each_step:
            ctx.mark_non_differentiable(*final)
        return (y, *final)

    @staticmethod
    def backward(ctx, d_y, gy, gq, gk, gb):
        x, sy, sq, sk, sb, reset_u8, ckpt = ctx.saved_tensors
        g_final = tuple(g.contiguous() for g in (gy, gq, gk, gb))
        dx, d_slow, d_delta = _srwm_backward(x, (sy, sq, sk, sb), reset_u8, ckpt, d_y.contiguous(),
                                             g_final, detach=ctx.detach_each_step, chunk=ctx.chunk)
        tx, ts, ta = ctx.dtypes
        return (dx.to(tx), *(g.to(ts) for g in d_slow), *(g.to(ta) for g in d_delta), None, None, None)


def _check_inputs(x, W_slow, delta, reset):
    if x.dim() != 4:
        raise ValueError(f"x must be [T, B, H, D], got shape {list(x.shape)}")
    T, B, H, D = x.shape
    if T < 1:
        raise ValueError(f"the unroll needs T >= 1 steps, got T={T}")
    for name, mapping in (("W_slow", W_slow), ("delta", delta)):
        if set(mapping) != set(SRWM_KEYS):
            raise ValueError(f"{name} must have keys {SRWM_KEYS}, got {sorted(mapping)}")
    if W_slow["y"].dim() != 3:
        raise ValueError(f"W_slow['y'] must be [H, Dy, D], got shape {list(W_slow['y'].shape)}")
    DY = W_slow["y"].shape[1]
    rows = {"y": DY, "q": D, "k": D, "b": 4}
    for n in SRWM_KEYS:
        want = (H, rows[n], D)
        if tuple(W_slow[n].shape) != want:
            raise ValueError(f"W_slow[{n!r}] must be {list(want)}, got {list(W_slow[n].shape)}")
        if tuple(delta[n].shape) != (B, *want):
            raise ValueError(f"delta[{n!r}] must be {[B, *want]}, got {list(delta[n].shape)}")
    if reset.shape != (T, B):
        raise ValueError(f"reset must be [T, B] = [{T}, {B}], got {list(reset.shape)}")
    tensors = [("x", x)] + [(f"W_slow[{n!r}]", W_slow[n]) for n in SRWM_KEYS] \
        + [(f"delta[{n!r}]", delta[n]) for n in SRWM_KEYS]
    check_dtypes_devices(tensors, x.device, "SRWM")
    if reset.device != x.device:
        raise ValueError(f"reset is on {reset.device} but x is on {x.device}")
    if len({W_slow[n].dtype for n in SRWM_KEYS}) != 1 or len({delta[n].dtype for n in SRWM_KEYS}) != 1:
        raise ValueError("the four W_slow matrices must share one dtype, and so must the four delta matrices")


def srwm_triton(x: torch.Tensor, W_slow: Dict[str, torch.Tensor], delta: Dict[str, torch.Tensor],
                reset: torch.Tensor, *, detach_each_step: bool = False,
                chunk: Optional[int] = None) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """SRWM over a whole unroll in one kernel launch (same contract as the reference).

    x: [T, B, H, D]; W_slow: {y: [H, Dy, D], q: [H, D, D], k: [H, D, D], b: [H, 4, D]};
    delta: the same keys with a leading batch dimension; reset: bool [T, B].
    Returns (y [T, B, H, Dy] in x's dtype, final delta in delta's dtype). ``chunk``
    (default 16) is the checkpoint interval of the backward. Without autograd
    (e.g. acting, T = 1) no checkpoints are stored.
    """
    _check_inputs(x, W_slow, delta, reset)
    chunk = DEFAULT_CHUNK if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    x = x.contiguous()
    slow = tuple(W_slow[n].contiguous() for n in SRWM_KEYS)
    dlt = tuple(delta[n].contiguous() for n in SRWM_KEYS)
    reset_u8 = reset.to(torch.bool).contiguous().view(torch.uint8)       # [T, B]
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, *slow, *dlt))
    if not needs_grad:
        y, final, _ = _srwm_forward(x, slow, dlt, reset_u8, store_ckpt=False, chunk=chunk)
    else:
        y, *final = _SRWMFunction.apply(x, *slow, *dlt, reset_u8, detach_each_step, chunk)
    return y, dict(zip(SRWM_KEYS, final))


def compile_specs(d: int) -> List[KernelSpec]:
    """The forward and backward kernels as the launchers pick them at head size ``d``, for
    ``Dy = d`` (SRWM) and ``Dy = 3d + 1`` (SR-Delta), fp32."""
    DP = max(triton.next_power_of_2(d), 2)
    specs = []
    for DY in (d, 3 * d + 1):
        YP = max(triton.next_power_of_2(DY), 2)
        for backward in (False, True):
            consts = dict(D=d, DY=DY, DP=DP, DYP=YP, ACC=tl.float32)
            consts.update(DETACH=False) if backward else consts.update(STORE_CKPT=True)
            fn = _srwm_bwd_kernel if backward else _srwm_fwd_kernel
            specs.append(KernelSpec(f"srwm {'bwd' if backward else 'fwd'} d={d} Dy={DY}", fn, consts,
                                    _num_warps(DP, YP, backward)))
    return specs
