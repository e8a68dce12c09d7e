"""Fused Triton kernels for the Recurrent Delta Net memory (``rec_delta``).

Irie, Schlag, Csordás and Schmidhuber, "Going Beyond Linear Transformers with Recurrent
Fast Weight Programmers", NeurIPS 2021 (RDN). Per (batch row, head), with the fast
weights ``S`` [d, d], the previous output ``y`` [d] and the recurrent slow weights
``R_q, R_k, R_v`` [d, d], ``r_b`` [d] of the head::

    S, y <- 0 if reset[t];   h = tanh(y)
    q = softmax(q~ + h R_q);  k = softmax(k~ + h R_k);  v = v~ + h R_v;  beta = sigmoid(b~ + h . r_b)
    e = v - S^T k;   S <- S + k (beta e)^T;   y = S^T q

Semantics match :func:`agents.kernels.rec_delta.reference.rec_delta_reference`. As for the Delta
RNN (:mod:`agents.kernels.delta_rnn.triton_kernel`), ``y`` couples every column of the state,
so one program owns a (row, head): grid ``(B * H,)``. The forward stores the residuals
``e`` and checkpoints ``(S, y)`` every C steps; the backward walks the chunks in
reverse, recomputes each chunk's states after the reset into a per-program scratch and
back-propagates through its steps (equations in ``agents/kernels/README.md``). The slow
weights are read at each use (shared by the rows of a head) rather than held in
registers; their gradients are accumulated per (row, head), written to ``[B, H, ...]``
buffers and summed over the batch in PyTorch (deterministic).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import triton
import triton.language as tl

from ..triton_common import (ADD, TL_DTYPE, KernelSpec, acc_dtype, check_dtypes_devices, delta_step_bwd,
                             softmax)

__all__ = ["rec_delta_triton", "compile_specs"]


@triton.jit
def _tanh(x):
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


@triton.jit
def _slow_inputs(qx_ptr, kx_ptr, vx_ptr, bx_ptr, rq_ptr, rk_ptr, rv_ptr, rb_ptr, o_in, o_r, o_rb, o_b,
                 h, m, m_s, ACC: tl.constexpr):
    """q, k (softmaxed), v, beta of one step from the pre-activations and h = tanh(y)."""
    hc = h[:, None]
    qp = tl.load(qx_ptr + o_in, mask=m, other=0.0).to(ACC) + \
        tl.reduce(hc * tl.load(rq_ptr + o_r, mask=m_s, other=0.0).to(ACC), 0, ADD)
    kp = tl.load(kx_ptr + o_in, mask=m, other=0.0).to(ACC) + \
        tl.reduce(hc * tl.load(rk_ptr + o_r, mask=m_s, other=0.0).to(ACC), 0, ADD)
    v = tl.load(vx_ptr + o_in, mask=m, other=0.0).to(ACC) + \
        tl.reduce(hc * tl.load(rv_ptr + o_r, mask=m_s, other=0.0).to(ACC), 0, ADD)
    bp = tl.load(bx_ptr + o_b).to(ACC) + tl.reduce(h * tl.load(rb_ptr + o_rb, mask=m, other=0.0).to(ACC), 0, ADD)
    beta = 1.0 / (1.0 + tl.exp(-bp))
    return softmax(qp, m), softmax(kp, m), tl.where(m, v, 0.0), beta


@triton.jit
def _rec_delta_fwd_kernel(qx_ptr, kx_ptr, vx_ptr, bx_ptr, rq_ptr, rk_ptr, rv_ptr, rb_ptr, s0_ptr, y0_ptr,
                          reset_ptr, out_ptr, sT_ptr, yT_ptr, res_ptr, cks_ptr, cky_ptr,
                          T, B, H, C,
                          D: tl.constexpr, DP: tl.constexpr, STORE: tl.constexpr, ACC: tl.constexpr):
    i_bh = tl.program_id(0).to(tl.int64)
    i_b = i_bh // H
    i_h = i_bh % H
    r = tl.arange(0, DP)
    m = r < D
    m_s = m[:, None] & m[None, :]
    o_s = i_bh * D * D + r[:, None] * D + r[None, :]
    o_r = i_h * D * D + r[:, None] * D + r[None, :]
    o_rb = i_h * D + r
    o_v = i_bh * D + r
    S = tl.load(s0_ptr + o_s, mask=m_s, other=0.0).to(ACC)
    y = tl.load(y0_ptr + o_v, mask=m, other=0.0).to(ACC)
    stride = B * H * D
    for t in range(T):
        if STORE:
            if t % C == 0:
                c = t // C
                tl.store(cks_ptr + c * B * H * D * D + o_s, S, mask=m_s)
                tl.store(cky_ptr + c * stride + o_v, y, mask=m)
        rs = tl.load(reset_ptr + t * B + i_b) != 0
        S = tl.where(rs, 0.0, S)
        y = tl.where(rs, 0.0, y)
        h = _tanh(y)
        q, k, v, beta = _slow_inputs(qx_ptr, kx_ptr, vx_ptr, bx_ptr, rq_ptr, rk_ptr, rv_ptr, rb_ptr,
                                     t * stride + o_v, o_r, o_rb, t * B * H + i_bh, h, m, m_s, ACC)
        e = v - tl.reduce(S * k[:, None], 0, ADD)
        if STORE:
            tl.store(res_ptr + t * stride + o_v, e, mask=m)
        S = S + k[:, None] * (beta * e)[None, :]
        y = tl.where(m, tl.reduce(S * q[:, None], 0, ADD), 0.0)
        tl.store(out_ptr + t * stride + o_v, y.to(out_ptr.dtype.element_ty), mask=m)
    tl.store(sT_ptr + o_s, S.to(sT_ptr.dtype.element_ty), mask=m_s)
    tl.store(yT_ptr + o_v, y.to(yT_ptr.dtype.element_ty), mask=m)


@triton.jit
def _rec_delta_bwd_kernel(qx_ptr, kx_ptr, vx_ptr, bx_ptr, rq_ptr, rk_ptr, rv_ptr, rb_ptr,
                          reset_ptr, res_ptr, cks_ptr, cky_ptr, do_ptr, dsT_ptr, dyT_ptr,
                          dqx_ptr, dkx_ptr, dvx_ptr, dbx_ptr, drq_ptr, drk_ptr, drv_ptr, drb_ptr,
                          ds0_ptr, dy0_ptr, scr_s_ptr, scr_y_ptr,
                          T, B, H, C, NC,
                          D: tl.constexpr, DP: tl.constexpr, DETACH: tl.constexpr, ACC: tl.constexpr):
    i_bh = tl.program_id(0).to(tl.int64)
    i_b = i_bh // H
    i_h = i_bh % H
    r = tl.arange(0, DP)
    m = r < D
    m_s = m[:, None] & m[None, :]
    o_s = i_bh * D * D + r[:, None] * D + r[None, :]
    o_r = i_h * D * D + r[:, None] * D + r[None, :]
    o_rb = i_h * D + r
    o_v = i_bh * D + r
    o_tile = r[:, None] * DP + r[None, :]
    p_ss = scr_s_ptr + i_bh * C * DP * DP
    p_sy = scr_y_ptr + i_bh * C * DP
    stride = B * H * D
    dRq = tl.zeros([DP, DP], dtype=ACC)
    dRk = tl.zeros([DP, DP], dtype=ACC)
    dRv = tl.zeros([DP, DP], dtype=ACC)
    drb = tl.zeros([DP], dtype=ACC)
    if DETACH:
        G = tl.zeros([DP, DP], dtype=ACC)
        gy = tl.zeros([DP], dtype=ACC)
    else:
        G = tl.load(dsT_ptr + o_s, mask=m_s, other=0.0).to(ACC)
        gy = tl.load(dyT_ptr + o_v, mask=m, other=0.0).to(ACC)
    for ci in range(NC):
        c = NC - 1 - ci
        t0 = c * C
        L = tl.minimum(C, T - t0)
        S = tl.load(cks_ptr + c * B * H * D * D + o_s, mask=m_s, other=0.0).to(ACC)
        y = tl.load(cky_ptr + c * stride + o_v, mask=m, other=0.0).to(ACC)
        for j in range(L):                                                 # recompute the chunk
            t = t0 + j
            rs = tl.load(reset_ptr + t * B + i_b) != 0
            S = tl.where(rs, 0.0, S)
            y = tl.where(rs, 0.0, y)
            tl.store(p_ss + j * DP * DP + o_tile, S)
            tl.store(p_sy + j * DP + r, y)
            h = _tanh(y)
            q, k, v, beta = _slow_inputs(qx_ptr, kx_ptr, vx_ptr, bx_ptr, rq_ptr, rk_ptr, rv_ptr, rb_ptr,
                                         t * stride + o_v, o_r, o_rb, t * B * H + i_bh, h, m, m_s, ACC)
            e = tl.load(res_ptr + t * stride + o_v, mask=m, other=0.0)
            S = S + k[:, None] * (beta * e)[None, :]
            y = tl.where(m, tl.reduce(S * q[:, None], 0, ADD), 0.0)
        tl.debug_barrier()
        for jj in range(L):                                                # back-propagate
            j = L - 1 - jj
            t = t0 + j
            S_in = tl.load(p_ss + j * DP * DP + o_tile)
            h = _tanh(tl.load(p_sy + j * DP + r))
            q, k, v, beta = _slow_inputs(qx_ptr, kx_ptr, vx_ptr, bx_ptr, rq_ptr, rk_ptr, rv_ptr, rb_ptr,
                                         t * stride + o_v, o_r, o_rb, t * B * H + i_bh, h, m, m_s, ACC)
            e = tl.load(res_ptr + t * stride + o_v, mask=m, other=0.0)
            do_t = tl.load(do_ptr + t * stride + o_v, mask=m, other=0.0).to(ACC)
            if DETACH:
                G = tl.zeros([DP, DP], dtype=ACC)
                gy = tl.zeros([DP], dtype=ACC)
            dy = do_t + gy
            # S_t = S_in + k (beta e)^T, y = S_t^T q: dq = S_t dy, du = dL/d(beta e), G <- dL/dS_in
            dq, du, dk, G = delta_step_bwd(S_in, G, k, q, e, beta, dy)
            dv = beta * du
            dbeta = tl.reduce(du * e, 0, ADD)
            dqp = tl.where(m, q * (dq - tl.reduce(q * dq, 0, ADD)), 0.0)    # softmax backward
            dkp = tl.where(m, k * (dk - tl.reduce(k * dk, 0, ADD)), 0.0)
            dv = tl.where(m, dv, 0.0)
            dbp = dbeta * beta * (1.0 - beta)
            tl.store(dqx_ptr + t * stride + o_v, dqp.to(dqx_ptr.dtype.element_ty), mask=m)
            tl.store(dkx_ptr + t * stride + o_v, dkp.to(dkx_ptr.dtype.element_ty), mask=m)
            tl.store(dvx_ptr + t * stride + o_v, dv.to(dvx_ptr.dtype.element_ty), mask=m)
            tl.store(dbx_ptr + t * B * H + i_bh, dbp.to(dbx_ptr.dtype.element_ty))
            hc = h[:, None]
            dRq += hc * dqp[None, :]
            dRk += hc * dkp[None, :]
            dRv += hc * dv[None, :]
            drb += h * dbp
            dh = tl.reduce(tl.load(rq_ptr + o_r, mask=m_s, other=0.0).to(ACC) * dqp[None, :], 1, ADD) \
                + tl.reduce(tl.load(rk_ptr + o_r, mask=m_s, other=0.0).to(ACC) * dkp[None, :], 1, ADD) \
                + tl.reduce(tl.load(rv_ptr + o_r, mask=m_s, other=0.0).to(ACC) * dv[None, :], 1, ADD) \
                + tl.load(rb_ptr + o_rb, mask=m, other=0.0).to(ACC) * dbp
            gy = dh * (1.0 - h * h)
            rs = tl.load(reset_ptr + t * B + i_b) != 0
            G = tl.where(rs, 0.0, G)
            gy = tl.where(rs, 0.0, gy)
        tl.debug_barrier()
    tl.store(ds0_ptr + o_s, G, mask=m_s)
    tl.store(dy0_ptr + o_v, gy, mask=m)
    tl.store(drq_ptr + o_s, dRq, mask=m_s)
    tl.store(drk_ptr + o_s, dRk, mask=m_s)
    tl.store(drv_ptr + o_s, dRv, mask=m_s)
    tl.store(drb_ptr + o_v, drb, mask=m)


def _warps(DP: int, backward: bool = False) -> int:
    """The backward holds three slow-weight gradient tiles besides the state and its
    gradient: twice the warps of the forward keep it within the register file."""
    w = 1 if DP * DP <= 256 else 2 if DP * DP <= 1024 else 4
    return 2 * w if backward else w


def _forward(qx, kx, vx, bx, Rq, Rk, Rv, rb, S0, y0, reset_u8, *, store: bool, chunk: int):
    T, B, H, D = qx.shape
    DP = max(triton.next_power_of_2(D), 2)
    acc = acc_dtype(qx, kx, vx, bx, Rq, Rk, Rv, rb, S0, y0)
    out = torch.empty_like(qx)
    ST, yT = torch.empty_like(S0), torch.empty_like(y0)
    C = min(chunk, T)
    NC = triton.cdiv(T, C)
    if store:
        res = torch.empty(T, B, H, D, device=qx.device, dtype=acc)
        cks = torch.empty(NC, B, H, D, D, device=qx.device, dtype=acc)
        cky = torch.empty(NC, B, H, D, device=qx.device, dtype=acc)
    else:
        res = cks = cky = out                                                # dummy pointers
    _rec_delta_fwd_kernel[(B * H,)](qx, kx, vx, bx, Rq, Rk, Rv, rb, S0, y0, reset_u8, out, ST, yT,
                                    res, cks, cky, T, B, H, C, D=D, DP=DP, STORE=store,
                                    ACC=TL_DTYPE[acc], num_warps=_warps(DP))
    return out, ST, yT, ((res, cks, cky) if store else None)


class _RecDeltaFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qx, kx, vx, bx, Rq, Rk, Rv, rb, S0, y0, reset_u8, detach_each_step, chunk):
        out, ST, yT, (res, cks, cky) = _forward(qx, kx, vx, bx, Rq, Rk, Rv, rb, S0, y0, reset_u8,
                                                store=True, chunk=chunk)
        ctx.save_for_backward(qx, kx, vx, bx, Rq, Rk, Rv, rb, reset_u8, res, cks, cky)
        ctx.detach_each_step, ctx.chunk = detach_each_step, chunk
        ctx.dtypes = [t.dtype for t in (qx, kx, vx, bx, Rq, Rk, Rv, rb, S0, y0)]
        if detach_each_step:
            ctx.mark_non_differentiable(ST, yT)
        return out, ST, yT

    @staticmethod
    def backward(ctx, d_out, d_S, d_y):
        qx, kx, vx, bx, Rq, Rk, Rv, rb, reset_u8, res, cks, cky = ctx.saved_tensors
        T, B, H, D = qx.shape
        DP = max(triton.next_power_of_2(D), 2)
        acc = res.dtype
        C = min(ctx.chunk, T)
        NC = triton.cdiv(T, C)
        dev = qx.device
        e = lambda *s: torch.empty(*s, device=dev, dtype=acc)   # noqa: E731
        d_out = d_out.contiguous() if d_out is not None else torch.zeros_like(qx)
        d_S = d_S.contiguous() if d_S is not None else torch.zeros(B, H, D, D, device=dev, dtype=acc)
        d_y = d_y.contiguous() if d_y is not None else torch.zeros(B, H, D, device=dev, dtype=acc)
        dqx, dkx, dvx, dbx = e(T, B, H, D), e(T, B, H, D), e(T, B, H, D), e(T, B, H)
        drq, drk, drv, drb = e(B, H, D, D), e(B, H, D, D), e(B, H, D, D), e(B, H, D)
        dS0, dy0 = e(B, H, D, D), e(B, H, D)
        scr_s, scr_y = e(B * H, C, DP, DP), e(B * H, C, DP)
        _rec_delta_bwd_kernel[(B * H,)](qx, kx, vx, bx, Rq, Rk, Rv, rb, reset_u8, res, cks, cky, d_out, d_S, d_y,
                                        dqx, dkx, dvx, dbx, drq, drk, drv, drb, dS0, dy0, scr_s, scr_y,
                                        T, B, H, C, NC, D=D, DP=DP, DETACH=ctx.detach_each_step,
                                        ACC=TL_DTYPE[acc], num_warps=_warps(DP, backward=True))
        grads = (dqx, dkx, dvx, dbx, drq.sum(0), drk.sum(0), drv.sum(0), drb.sum(0), dS0, dy0)
        return tuple(g.to(dt) for g, dt in zip(grads, ctx.dtypes)) + (None, None, None)


def rec_delta_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                     R: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor], reset: torch.Tensor, *,
                     detach_each_step: bool = False, chunk: int = 16) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """RDN memory over a whole unroll in one launch (same contract as the reference).

    q, k, v: [T, B, H, d] and beta: [T, B, H] pre-activations; R: {q, k, v: [H, d, d],
    b: [H, d]}; state: {S: [B, H, d, d], y: [B, H, d]}; reset: bool [T, B]. ``chunk`` is
    the checkpoint interval of the backward.
    """
    if q.dim() != 4 or q.shape[0] < 1:
        raise ValueError(f"q must be [T, B, H, d] with T >= 1, got {list(q.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    tensors = [q, k, v, beta, R["q"], R["k"], R["v"], R["b"], state["S"], state["y"]]
    names = ["q", "k", "v", "beta", "R['q']", "R['k']", "R['v']", "R['b']", "state['S']", "state['y']"]
    check_dtypes_devices(zip(names, tensors), q.device, "RDN")
    tensors = [t.contiguous() for t in tensors]
    reset_u8 = reset.to(torch.bool).contiguous().view(torch.uint8)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        out, ST, yT, _ = _forward(*tensors, reset_u8, store=False, chunk=chunk)
    else:
        out, ST, yT = _RecDeltaFunction.apply(*tensors, reset_u8, detach_each_step, chunk)
    return out, {"S": ST, "y": yT}


def compile_specs(d: int) -> List[KernelSpec]:
    """The forward and backward kernels as the launchers pick them at head size ``d`` (fp32)."""
    DP = max(triton.next_power_of_2(d), 2)
    return [KernelSpec(f"rec_delta fwd d={d}", _rec_delta_fwd_kernel, dict(D=d, DP=DP, STORE=True, ACC=tl.float32),
                       _warps(DP)),
            KernelSpec(f"rec_delta bwd d={d}", _rec_delta_bwd_kernel,
                       dict(D=d, DP=DP, DETACH=False, ACC=tl.float32), _warps(DP, backward=True))]
