"""Backward Triton kernel of the gated delta rule (``delta_rule(..., alpha=alpha)``).

Yang, Kautz, Hatamizadeh, "Gated Delta Networks", ICLR 2025. The forward is the delta
rule's kernel with ``HAS_ALPHA`` (:mod:`agents.kernels.delta_rule.triton_kernel`), which
also writes the checkpoints this backward starts from; the maths is in
``agents/kernels/README.md`` (Gated delta rule).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..triton_common import ADD, TL_DTYPE

__all__ = ["gated_delta_backward"]


@triton.jit
def _gated_delta_bwd_kernel(q_ptr, k_ptr, beta_ptr, alpha_ptr, reset_ptr, res_ptr, do_ptr, dsT_ptr, ckpt_ptr,
                            dq_ptr, dk_ptr, dv_ptr, dbeta_ptr, dalpha_ptr, ds0_ptr, scratch_ptr,
                            T, B, H, C, NC,
                            DK: tl.constexpr, DV: tl.constexpr, DKP: tl.constexpr, BV: tl.constexpr,
                            DETACH: tl.constexpr, ACC: tl.constexpr):
    """Backward of the gated delta rule for one (value block, batch row, head).

    dalpha_t = <S_in_t, dL/dS'_t> needs the state and its gradient at the same step, so
    this kernel walks the chunks of C steps in reverse: it reloads the chunk's checkpoint
    (the carried state written by the forward at t = 0, C, 2C, ...), recomputes the
    chunk's states S_in_t (after the reset, before the decay) into a per-program scratch
    [C, DKP, BV], then back-propagates through the chunk's steps in reverse order.
    dq_ptr, dk_ptr: [NV, T, B, H, DK]; dbeta_ptr, dalpha_ptr: [NV, T, B, H] (partial sums
    over value blocks); dv_ptr: [T, B, H, DV]; ds0_ptr: [B, H, DK, DV].
    """
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1).to(tl.int64)
    i_b = i_bh // H
    NV = tl.num_programs(0)
    rk = tl.arange(0, DKP)
    rv = i_v * BV + tl.arange(0, BV)
    mk = rk < DK
    mv = rv < DV
    m_s = mk[:, None] & mv[None, :]
    o_s = i_bh * DK * DV + rk[:, None] * DV + rv[None, :]
    o_tile = rk[:, None] * BV + tl.arange(0, BV)[None, :]                 # [DKP, BV] in the scratch
    p_scr = scratch_ptr + (i_v * B * H + i_bh) * C * DKP * BV
    stride_k = B * H * DK
    stride_v = B * H * DV
    o_k = i_bh * DK + rk
    o_v = i_bh * DV + rv
    o_pk = i_v * T * stride_k + o_k
    o_pb = i_v * T * B * H + i_bh
    if DETACH:
        dS = tl.zeros([DKP, BV], dtype=ACC)
    else:
        dS = tl.load(dsT_ptr + o_s, mask=m_s, other=0.0).to(ACC)
    for ci in range(NC):
        c = NC - 1 - ci
        t0 = c * C
        L = tl.minimum(C, T - t0)
        # Recompute the chunk forward from its checkpoint; keep S_in_t in the scratch.
        S = tl.load(ckpt_ptr + c * B * H * DK * DV + o_s, mask=m_s, other=0.0).to(ACC)
        for j in range(L):
            t = t0 + j
            S = tl.where(tl.load(reset_ptr + t * B + i_b) != 0, 0.0, S)
            tl.store(p_scr + j * DKP * BV + o_tile, S)
            a_t = tl.load(alpha_ptr + t * B * H + i_bh).to(ACC)
            beta_t = tl.load(beta_ptr + t * B * H + i_bh).to(ACC)
            k_t = tl.load(k_ptr + t * stride_k + o_k, mask=mk, other=0.0).to(ACC)
            r_t = tl.load(res_ptr + t * stride_v + o_v, mask=mv, other=0.0)
            S = S * a_t + k_t[:, None] * (beta_t * r_t)[None, :]
        tl.debug_barrier()
        # Back-propagate through the chunk's steps in reverse.
        for jj in range(L):
            j = L - 1 - jj
            t = t0 + j
            S_in = tl.load(p_scr + j * DKP * BV + o_tile)
            a_t = tl.load(alpha_ptr + t * B * H + i_bh).to(ACC)
            beta_t = tl.load(beta_ptr + t * B * H + i_bh).to(ACC)
            q_t = tl.load(q_ptr + t * stride_k + o_k, mask=mk, other=0.0).to(ACC)
            k_t = tl.load(k_ptr + t * stride_k + o_k, mask=mk, other=0.0).to(ACC)
            r_t = tl.load(res_ptr + t * stride_v + o_v, mask=mv, other=0.0)
            do_t = tl.load(do_ptr + t * stride_v + o_v, mask=mv, other=0.0).to(ACC)
            # the delta-rule step backward written out, not triton_common.delta_step_bwd: with the
            # helper (stores after it) sm_90 took 221 registers instead of 168 at d = 32
            u_t = beta_t * r_t                                                # [BV]
            Sp = S_in * a_t                                                   # S' = alpha S_in
            S_t = Sp + k_t[:, None] * u_t[None, :]
            tl.store(dq_ptr + o_pk + t * stride_k, tl.reduce(S_t * do_t[None, :], 1, ADD), mask=mk)
            if DETACH:
                dS = tl.zeros([DKP, BV], dtype=ACC)
            dS += q_t[:, None] * do_t[None, :]                                # o_t = S_t^T q_t
            du = tl.reduce(dS * k_t[:, None], 0, ADD)                        # [BV]
            tl.store(dv_ptr + t * stride_v + o_v, (beta_t * du).to(dv_ptr.dtype.element_ty), mask=mv)
            tl.store(dbeta_ptr + o_pb + t * B * H, tl.reduce(du * r_t, 0, ADD))
            dvold = -beta_t * du
            dk_t = tl.reduce(dS * u_t[None, :], 1, ADD) + tl.reduce(Sp * dvold[None, :], 1, ADD)
            tl.store(dk_ptr + o_pk + t * stride_k, dk_t, mask=mk)
            dS += k_t[:, None] * dvold[None, :]                               # dL/dS'_t
            tl.store(dalpha_ptr + o_pb + t * B * H, tl.reduce(tl.reduce(S_in * dS, 1, ADD), 0, ADD))
            dS = dS * a_t
            dS = tl.where(tl.load(reset_ptr + t * B + i_b) != 0, 0.0, dS)
        tl.debug_barrier()
    tl.store(ds0_ptr + o_s, dS, mask=m_s)


# ----------------------------------------------------------------------------- launchers


def gated_delta_backward(q, k, beta, alpha, reset_u8, res, ckpt, d_out, d_final, *, detach: bool,
                         chunk: int, block_v: int, num_warps: int):
    """Launch the gated backward kernel (``block_v``, ``num_warps`` as the delta rule's
    launcher picks them). Returns (dq, dk, dv, dbeta, dstate, dalpha)."""
    T, B, H, DK = q.shape
    DV = res.shape[-1]
    DKP = triton.next_power_of_2(DK)
    BV = block_v
    NV = triton.cdiv(DV, BV)
    C = min(chunk, T)                                                      # the forward's interval
    NC = triton.cdiv(T, C)
    dev = q.device
    acc = res.dtype
    dq = torch.empty(NV, T, B, H, DK, device=dev, dtype=acc)
    dk = torch.empty(NV, T, B, H, DK, device=dev, dtype=acc)
    dbeta = torch.empty(NV, T, B, H, device=dev, dtype=acc)
    dalpha = torch.empty(NV, T, B, H, device=dev, dtype=acc)
    dv = torch.empty(T, B, H, DV, device=dev, dtype=acc)
    ds0 = torch.empty(B, H, DK, DV, device=dev, dtype=acc)
    scratch = torch.empty(NV, B * H, C, DKP, BV, device=dev, dtype=acc)   # S_in of one chunk
    _gated_delta_bwd_kernel[(NV, B * H)](
        q, k, beta, alpha, reset_u8, res, d_out, d_final, ckpt,
        dq, dk, dv, dbeta, dalpha, ds0, scratch, T, B, H, C, NC,
        DK=DK, DV=DV, DKP=DKP, BV=BV, DETACH=detach, ACC=TL_DTYPE[acc], num_warps=num_warps)
    return dq.sum(0), dk.sum(0), dv, dbeta.sum(0), ds0, dalpha.sum(0)
