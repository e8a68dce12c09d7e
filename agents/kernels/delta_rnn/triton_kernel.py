"""Fused Triton kernels for the recurrent fast net of the Delta RNN (``delta_rnn``).

Irie, Schlag, Csordás and Schmidhuber, "Going Beyond Linear Transformers with Recurrent
Fast Weight Programmers", NeurIPS 2021. Per (batch row, head), with the recurrent fast
weights ``R`` [d, d] and the previous output ``y`` [d]::

    R, y  <- 0                       if reset[t]
    s      = softmax(y)
    e_t    = v_t - R^T k_t
    R     <- R + k_t (beta_t e_t)^T
    y_t    = z_t + R^T s             # read after write

Semantics match :func:`agents.kernels.delta_rnn.reference.delta_rnn_reference` (including
``detach_each_step``). The output ``y`` feeds the next step's softmax across all of its
entries, so one program owns a whole (row, head): the grid is ``(B * H,)`` and the
padded ``[DP, DP]`` state lives in registers in the accumulation dtype.

The backward checkpoints and recomputes, as the gated delta rule does: the forward
writes the carried ``(R, y)`` at ``t = 0, C, 2C, ...`` and the residuals ``e_t``; the
backward walks the chunks in reverse, re-runs each chunk's forward from its checkpoint
into a per-program scratch of the states after the reset, then back-propagates through
the chunk's steps (equations in ``agents/kernels/README.md``). Nothing is reconstructed
by subtraction.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import triton
import triton.language as tl

from ..triton_common import (ADD, TL_DTYPE, KernelSpec, acc_dtype, check_dtypes_devices, delta_step_bwd,
                             softmax)

__all__ = ["delta_rnn_triton", "compile_specs"]


@triton.jit
def _delta_rnn_fwd_kernel(z_ptr, k_ptr, v_ptr, beta_ptr, r0_ptr, y0_ptr, reset_ptr,
                          out_ptr, rT_ptr, yT_ptr, res_ptr, ckr_ptr, cky_ptr,
                          T, B, H, C,
                          D: tl.constexpr, DP: tl.constexpr, STORE: tl.constexpr, ACC: tl.constexpr):
    i_bh = tl.program_id(0).to(tl.int64)
    i_b = i_bh // H
    r = tl.arange(0, DP)
    m = r < D
    m_s = m[:, None] & m[None, :]
    o_s = i_bh * D * D + r[:, None] * D + r[None, :]
    o_v = i_bh * D + r
    R = tl.load(r0_ptr + o_s, mask=m_s, other=0.0).to(ACC)             # [DP, DP]  R[key, value]
    y = tl.load(y0_ptr + o_v, mask=m, other=0.0).to(ACC)               # [DP]
    stride = B * H * D
    for t in range(T):
        if STORE:
            if t % C == 0:
                c = t // C
                tl.store(ckr_ptr + c * B * H * D * D + o_s, R, mask=m_s)
                tl.store(cky_ptr + c * stride + o_v, y, mask=m)
        rs = tl.load(reset_ptr + t * B + i_b) != 0
        R = tl.where(rs, 0.0, R)
        y = tl.where(rs, 0.0, y)
        s = softmax(y, m)
        k_t = tl.load(k_ptr + t * stride + o_v, mask=m, other=0.0).to(ACC)
        v_t = tl.load(v_ptr + t * stride + o_v, mask=m, other=0.0).to(ACC)
        z_t = tl.load(z_ptr + t * stride + o_v, mask=m, other=0.0).to(ACC)
        beta_t = tl.load(beta_ptr + t * B * H + i_bh).to(ACC)
        e_t = v_t - tl.reduce(R * k_t[:, None], 0, ADD)                 # v - R^T k
        if STORE:
            tl.store(res_ptr + t * stride + o_v, e_t, mask=m)
        R = R + k_t[:, None] * (beta_t * e_t)[None, :]
        y = z_t + tl.reduce(R * s[:, None], 0, ADD)                      # z + R^T s
        y = tl.where(m, y, 0.0)
        tl.store(out_ptr + t * stride + o_v, y.to(out_ptr.dtype.element_ty), mask=m)
    tl.store(rT_ptr + o_s, R.to(rT_ptr.dtype.element_ty), mask=m_s)
    tl.store(yT_ptr + o_v, y.to(yT_ptr.dtype.element_ty), mask=m)


@triton.jit
def _delta_rnn_bwd_kernel(k_ptr, beta_ptr, reset_ptr, res_ptr, ckr_ptr, cky_ptr, z_ptr, do_ptr,
                          drT_ptr, dyT_ptr, dz_ptr, dk_ptr, dv_ptr, dbeta_ptr, dr0_ptr, dy0_ptr,
                          scr_r_ptr, scr_y_ptr,
                          T, B, H, C, NC,
                          D: tl.constexpr, DP: tl.constexpr, DETACH: tl.constexpr, ACC: tl.constexpr):
    i_bh = tl.program_id(0).to(tl.int64)
    i_b = i_bh // H
    r = tl.arange(0, DP)
    m = r < D
    m_s = m[:, None] & m[None, :]
    o_s = i_bh * D * D + r[:, None] * D + r[None, :]
    o_v = i_bh * D + r
    o_tile = r[:, None] * DP + r[None, :]
    p_sr = scr_r_ptr + i_bh * C * DP * DP
    p_sy = scr_y_ptr + i_bh * C * DP
    stride = B * H * D
    if DETACH:
        G = tl.zeros([DP, DP], dtype=ACC)
        gy = tl.zeros([DP], dtype=ACC)
    else:
        G = tl.load(drT_ptr + o_s, mask=m_s, other=0.0).to(ACC)
        gy = tl.load(dyT_ptr + o_v, mask=m, other=0.0).to(ACC)
    for ci in range(NC):
        c = NC - 1 - ci
        t0 = c * C
        L = tl.minimum(C, T - t0)
        R = tl.load(ckr_ptr + c * B * H * D * D + o_s, mask=m_s, other=0.0).to(ACC)
        y = tl.load(cky_ptr + c * stride + o_v, mask=m, other=0.0).to(ACC)
        for j in range(L):                                                # recompute the chunk
            t = t0 + j
            rs = tl.load(reset_ptr + t * B + i_b) != 0
            R = tl.where(rs, 0.0, R)
            y = tl.where(rs, 0.0, y)
            tl.store(p_sr + j * DP * DP + o_tile, R)
            tl.store(p_sy + j * DP + r, y)
            s = softmax(y, m)
            k_t = tl.load(k_ptr + t * stride + o_v, mask=m, other=0.0).to(ACC)
            e_t = tl.load(res_ptr + t * stride + o_v, mask=m, other=0.0)
            beta_t = tl.load(beta_ptr + t * B * H + i_bh).to(ACC)
            z_t = tl.load(z_ptr + t * stride + o_v, mask=m, other=0.0).to(ACC)
            R = R + k_t[:, None] * (beta_t * e_t)[None, :]
            y = tl.where(m, z_t + tl.reduce(R * s[:, None], 0, ADD), 0.0)
        tl.debug_barrier()
        for jj in range(L):                                               # back-propagate
            j = L - 1 - jj
            t = t0 + j
            R_in = tl.load(p_sr + j * DP * DP + o_tile)
            s = softmax(tl.load(p_sy + j * DP + r), m)
            k_t = tl.load(k_ptr + t * stride + o_v, mask=m, other=0.0).to(ACC)
            e_t = tl.load(res_ptr + t * stride + o_v, mask=m, other=0.0)
            beta_t = tl.load(beta_ptr + t * B * H + i_bh).to(ACC)
            do_t = tl.load(do_ptr + t * stride + o_v, mask=m, other=0.0).to(ACC)
            if DETACH:
                G = tl.zeros([DP, DP], dtype=ACC)
                gy = tl.zeros([DP], dtype=ACC)
            dy = do_t + gy
            tl.store(dz_ptr + t * stride + o_v, dy.to(dz_ptr.dtype.element_ty), mask=m)
            # R_t = R_in + k (beta e)^T, y = z + R_t^T s: ds = R_t dy, du = dL/d(beta e), G <- dL/dR_in
            ds, du, dk_t, G = delta_step_bwd(R_in, G, k_t, s, e_t, beta_t, dy)
            tl.store(dv_ptr + t * stride + o_v, (beta_t * du).to(dv_ptr.dtype.element_ty), mask=m)
            tl.store(dbeta_ptr + t * B * H + i_bh, tl.reduce(du * e_t, 0, ADD).to(dbeta_ptr.dtype.element_ty))
            tl.store(dk_ptr + t * stride + o_v, dk_t.to(dk_ptr.dtype.element_ty), mask=m)
            gy = s * (ds - tl.reduce(s * ds, 0, ADD))                    # softmax backward
            rs = tl.load(reset_ptr + t * B + i_b) != 0
            G = tl.where(rs, 0.0, G)
            gy = tl.where(rs, 0.0, gy)
        tl.debug_barrier()
    tl.store(dr0_ptr + o_s, G, mask=m_s)
    tl.store(dy0_ptr + o_v, gy, mask=m)


def _warps(DP: int) -> int:
    return 1 if DP * DP <= 256 else 2 if DP * DP <= 1024 else 4


def _forward(z, k, v, beta, R0, y0, reset_u8, *, store: bool, chunk: int):
    T, B, H, D = z.shape
    DP = max(triton.next_power_of_2(D), 2)
    acc = acc_dtype(z, k, v, beta, R0, y0)
    out = torch.empty_like(z)
    RT, yT = torch.empty_like(R0), torch.empty_like(y0)
    C = min(chunk, T)
    NC = triton.cdiv(T, C)
    if store:
        res = torch.empty(T, B, H, D, device=z.device, dtype=acc)
        ckr = torch.empty(NC, B, H, D, D, device=z.device, dtype=acc)
        cky = torch.empty(NC, B, H, D, device=z.device, dtype=acc)
    else:
        res = ckr = cky = out                                              # dummy pointers
    _delta_rnn_fwd_kernel[(B * H,)](z, k, v, beta, R0, y0, reset_u8, out, RT, yT, res, ckr, cky,
                                    T, B, H, C, D=D, DP=DP, STORE=store, ACC=TL_DTYPE[acc],
                                    num_warps=_warps(DP))
    return out, RT, yT, (res, ckr, cky) if store else None


class _DeltaRNNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, k, v, beta, R0, y0, reset_u8, detach_each_step, chunk):
        out, RT, yT, saved = _forward(z, k, v, beta, R0, y0, reset_u8, store=True, chunk=chunk)
        res, ckr, cky = saved
        ctx.save_for_backward(z, k, beta, reset_u8, res, ckr, cky)
        ctx.detach_each_step, ctx.chunk = detach_each_step, chunk
        ctx.dtypes = (z.dtype, k.dtype, v.dtype, beta.dtype, R0.dtype, y0.dtype)
        if detach_each_step:
            ctx.mark_non_differentiable(RT, yT)
        return out, RT, yT

    @staticmethod
    def backward(ctx, d_out, d_R, d_y):
        z, k, beta, reset_u8, res, ckr, cky = ctx.saved_tensors
        T, B, H, D = z.shape
        DP = max(triton.next_power_of_2(D), 2)
        acc = res.dtype
        C = min(ctx.chunk, T)
        NC = triton.cdiv(T, C)
        dev = z.device
        d_out = d_out.contiguous() if d_out is not None else torch.zeros_like(z)
        d_R = d_R.contiguous() if d_R is not None else torch.zeros(B, H, D, D, device=dev, dtype=acc)
        d_y = d_y.contiguous() if d_y is not None else torch.zeros(B, H, D, device=dev, dtype=acc)
        dz, dk, dv = (torch.empty(T, B, H, D, device=dev, dtype=acc) for _ in range(3))
        dbeta = torch.empty(T, B, H, device=dev, dtype=acc)
        dR0 = torch.empty(B, H, D, D, device=dev, dtype=acc)
        dy0 = torch.empty(B, H, D, device=dev, dtype=acc)
        scr_r = torch.empty(B * H, C, DP, DP, device=dev, dtype=acc)
        scr_y = torch.empty(B * H, C, DP, device=dev, dtype=acc)
        _delta_rnn_bwd_kernel[(B * H,)](k, beta, reset_u8, res, ckr, cky, z, d_out, d_R, d_y,
                                        dz, dk, dv, dbeta, dR0, dy0, scr_r, scr_y, T, B, H, C, NC,
                                        D=D, DP=DP, DETACH=ctx.detach_each_step, ACC=TL_DTYPE[acc],
                                        num_warps=_warps(DP))
        tz, tk, tv, tb, tr, ty = ctx.dtypes
        return dz.to(tz), dk.to(tk), dv.to(tv), dbeta.to(tb), dR0.to(tr), dy0.to(ty), None, None, None


def delta_rnn_triton(z: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                     state: dict, reset: torch.Tensor, *, detach_each_step: bool = False,
                     chunk: int = 16) -> Tuple[torch.Tensor, dict]:
    """Recurrent fast net of the Delta RNN in one launch (same contract as the reference).

    z, k, v: [T, B, H, d]; beta: [T, B, H]; state: {R: [B, H, d, d], y: [B, H, d]};
    reset: bool [T, B]. ``chunk`` is the checkpoint interval of the backward.
    """
    if z.dim() != 4 or z.shape[0] < 1:
        raise ValueError(f"z must be [T, B, H, d] with T >= 1, got {list(z.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    named = [("z", z), ("k", k), ("v", v), ("beta", beta), ("state['R']", state["R"]), ("state['y']", state["y"])]
    check_dtypes_devices(named, z.device, "Delta RNN")
    z, k, v, beta = (t.contiguous() for t in (z, k, v, beta))
    R0, y0 = state["R"].contiguous(), state["y"].contiguous()
    reset_u8 = reset.to(torch.bool).contiguous().view(torch.uint8)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (z, k, v, beta, R0, y0))
    if not needs_grad:
        out, RT, yT, _ = _forward(z, k, v, beta, R0, y0, reset_u8, store=False, chunk=chunk)
    else:
        out, RT, yT = _DeltaRNNFunction.apply(z, k, v, beta, R0, y0, reset_u8, detach_each_step, chunk)
    return out, {"R": RT, "y": yT}


def compile_specs(d: int) -> List[KernelSpec]:
    """The forward and backward kernels as the launchers pick them at head size ``d`` (fp32)."""
    DP = max(triton.next_power_of_2(d), 2)
    return [KernelSpec(f"delta_rnn fwd d={d}", _delta_rnn_fwd_kernel, dict(D=d, DP=DP, STORE=True, ACC=tl.float32),
                       _warps(DP)),
            KernelSpec(f"delta_rnn bwd d={d}", _delta_rnn_bwd_kernel,
                       dict(D=d, DP=DP, DETACH=False, ACC=tl.float32), _warps(DP))]
