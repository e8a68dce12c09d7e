"""Fused Triton kernels for the delta rule over a whole unroll (DeltaNet).

(Over 400 lines on purpose: the forward and backward kernels, their launchers and the
autograd wrapper share the residual layout and the value-block split, and read best
together; the gated backward is in ``triton_gated.py``.)

The op is the fast memory of DeltaNet (Schlag, Irie and Schmidhuber, "Linear
Transformers Are Secretly Fast Weight Programmers", ICML 2021) and of the SR-Delta
core (Irie et al., "A Modern Self-Referential Weight Matrix That Learns to Modify
Itself", ICML 2022). Per (batch row, head), with state ``S`` of shape ``[Dk, Dv]``::

    S     <- 0                      if reset[t]
    r_t    = v_t - S^T k_t          # residual (v minus the value the memory returns)
    S     <- S + k_t (beta_t r_t)^T
    o_t    = S^T q_t                # read after write

Semantics match :func:`agents.kernels.delta_rule.reference.delta_rule_reference` exactly
(including ``detach_each_step``). Layout of the launch:

* one program per (value block, batch row, head); the columns of ``S`` evolve
  independently, so the ``Dv`` columns are split into blocks of ``BV`` for
  parallelism and the ``Dk``-sized results (dq, dk, dbeta) are summed over blocks
  in PyTorch afterwards (deterministic, no atomics);
* the state lives in registers in fp32 and the program loops over ``t``;
* forward stores the residuals ``r_t`` (a vector per step) for the backward;
* backward makes two passes in one launch: a reverse pass carries the state
  gradient ``dS`` (its recurrence does not involve ``S``), then a forward pass
  recomputes ``S`` from the initial state (resets applied) for the terms that need
  it. Nothing is ever subtracted to undo a step, so resets are exact.

``DELTA=False`` (``delta=False`` in :func:`delta_rule_triton`) drops the ``S^T k`` term
of the residual, ``r_t = v_t``: with beta = 1 that is linear attention
(:mod:`agents.kernels.linear_attention.triton_kernel`); the backward then has no
``dv_old`` terms. The gated backward is in :mod:`agents.kernels.delta_rule.triton_gated`.

The maths of the backward is written out in ``agents/kernels/README.md``.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import triton
import triton.language as tl

from ..triton_common import ADD, TL_DTYPE, KernelSpec, acc_dtype, check_dtypes_devices
from .triton_gated import gated_delta_backward

__all__ = ["delta_rule_triton", "compile_specs"]


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _delta_fwd_kernel(q_ptr, k_ptr, v_ptr, beta_ptr, s0_ptr, reset_ptr,
                      out_ptr, sT_ptr, res_ptr, alpha_ptr, ckpt_ptr,
                      T, B, H, C,
                      DK: tl.constexpr, DV: tl.constexpr, DKP: tl.constexpr, BV: tl.constexpr,
                      STORE_RES: tl.constexpr, HAS_ALPHA: tl.constexpr, STORE_CKPT: tl.constexpr,
                      ACC: tl.constexpr, DELTA: tl.constexpr = True):
    """Forward over the unroll for one (value block, batch row, head).

    Pointers advance by one time step per iteration (additions only: cheaper than
    index products on the GPU and much cheaper under the interpreter).
    """
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1).to(tl.int64)        # b * H + h
    i_b = i_bh // H
    rk = tl.arange(0, DKP)                      # [DKP]
    rv = i_v * BV + tl.arange(0, BV)            # [BV]
    mk = rk < DK
    mv = rv < DV
    m_s = mk[:, None] & mv[None, :]             # [DKP, BV]
    o_s = i_bh * DK * DV + rk[:, None] * DV + rv[None, :]
    S = tl.load(s0_ptr + o_s, mask=m_s, other=0.0).to(ACC)   # [DKP, BV]

    stride_k = B * H * DK                        # one time step of q / k
    stride_v = B * H * DV                        # one time step of v / out / res
    p_q = q_ptr + i_bh * DK + rk
    p_k = k_ptr + i_bh * DK + rk
    p_v = v_ptr + i_bh * DV + rv
    p_o = out_ptr + i_bh * DV + rv
    p_r = res_ptr + i_bh * DV + rv
    p_beta = beta_ptr + i_bh
    p_alpha = alpha_ptr + i_bh
    p_reset = reset_ptr + i_b
    p_ckpt = ckpt_ptr + o_s
    for t in range(T):
        if STORE_CKPT:                                          # carried S at t = 0, C, 2C, ...
            if t % C == 0:
                tl.store(p_ckpt, S, mask=m_s)
                p_ckpt += B * H * DK * DV
        S = tl.where(tl.load(p_reset) != 0, 0.0, S)
        if HAS_ALPHA:
            S = S * tl.load(p_alpha).to(ACC)                    # gated: decay before read and write
            p_alpha += B * H
        k_t = tl.load(p_k, mask=mk, other=0.0).to(ACC)          # [DKP]
        q_t = tl.load(p_q, mask=mk, other=0.0).to(ACC)          # [DKP]
        v_t = tl.load(p_v, mask=mv, other=0.0).to(ACC)          # [BV]
        beta_t = tl.load(p_beta).to(ACC)
        if DELTA:
            r_t = v_t - tl.reduce(S * k_t[:, None], 0, ADD)           # [BV]  v - S^T k
        else:
            r_t = v_t                                                 # linear attention
        if STORE_RES:
            tl.store(p_r, r_t, mask=mv)
        S = S + k_t[:, None] * (beta_t * r_t)[None, :]
        o_t = tl.reduce(S * q_t[:, None], 0, ADD)                     # [BV]  read after write
        tl.store(p_o, o_t.to(out_ptr.dtype.element_ty), mask=mv)
        p_q += stride_k
        p_k += stride_k
        p_v += stride_v
        p_o += stride_v
        p_r += stride_v
        p_beta += B * H
        p_reset += B
    tl.store(sT_ptr + o_s, S.to(sT_ptr.dtype.element_ty), mask=m_s)


@triton.jit
def _delta_bwd_kernel(q_ptr, k_ptr, beta_ptr, s0_ptr, reset_ptr, res_ptr, do_ptr, dsT_ptr,
                      dq_ptr, dk_ptr, dv_ptr, dbeta_ptr, ds0_ptr, dvold_ptr,
                      T, B, H,
                      DK: tl.constexpr, DV: tl.constexpr, DKP: tl.constexpr, BV: tl.constexpr,
                      DETACH: tl.constexpr, ACC: tl.constexpr, DELTA: tl.constexpr = True):
    """Backward for one (value block, batch row, head).

    dq_ptr, dk_ptr: [NV, T, B, H, DK] partial sums over value blocks;
    dbeta_ptr: [NV, T, B, H]; dv_ptr: [T, B, H, DV]; ds0_ptr: [B, H, DK, DV] (fp32);
    dvold_ptr: [T, B, H, DV] fp32 scratch carrying dL/dv_old from pass 1 to pass 2.
    """
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1).to(tl.int64)
    i_b = i_bh // H
    rk = tl.arange(0, DKP)
    rv = i_v * BV + tl.arange(0, BV)
    mk = rk < DK
    mv = rv < DV
    m_s = mk[:, None] & mv[None, :]
    o_s = i_bh * DK * DV + rk[:, None] * DV + rv[None, :]
    stride_k = B * H * DK
    stride_v = B * H * DV
    o_k = i_bh * DK + rk                          # [DKP] offset at t = 0 in [T, B, H, DK]
    o_v = i_bh * DV + rv                          # [BV]  offset at t = 0 in [T, B, H, DV]
    o_pk = i_v * T * stride_k + o_k               # into [NV, T, B, H, DK]
    o_pb = i_v * T * B * H + i_bh                 # into [NV, T, B, H]

    # Pass 1, reverse in time: dS is dL/dS_t (state after the write of step t).
    last_k = (T - 1) * stride_k
    last_v = (T - 1) * stride_v
    p_q = q_ptr + last_k + o_k
    p_k = k_ptr + last_k + o_k
    p_dk = dk_ptr + last_k + o_pk
    p_do = do_ptr + last_v + o_v
    p_r = res_ptr + last_v + o_v
    p_dv = dv_ptr + last_v + o_v
    p_dvold = dvold_ptr + last_v + o_v
    p_beta = beta_ptr + (T - 1) * B * H + i_bh
    p_dbeta = dbeta_ptr + (T - 1) * B * H + o_pb
    p_reset = reset_ptr + (T - 1) * B + i_b
    if DETACH:
        dS = tl.zeros([DKP, BV], dtype=ACC)
    else:
        dS = tl.load(dsT_ptr + o_s, mask=m_s, other=0.0).to(ACC)      # [DKP, BV]
    for _ in range(T):
        if DETACH:
            dS = tl.zeros([DKP, BV], dtype=ACC)
        q_t = tl.load(p_q, mask=mk, other=0.0).to(ACC)                 # [DKP]
        k_t = tl.load(p_k, mask=mk, other=0.0).to(ACC)                 # [DKP]
        do_t = tl.load(p_do, mask=mv, other=0.0).to(ACC)               # [BV]
        r_t = tl.load(p_r, mask=mv, other=0.0)                                # [BV]
        beta_t = tl.load(p_beta).to(ACC)
        dS += q_t[:, None] * do_t[None, :]                                    # o_t = S_t^T q_t
        tl.store(p_dk, tl.reduce(dS * (beta_t * r_t)[None, :], 1, ADD), mask=mk)   # S' + k u^T
        du = tl.reduce(dS * k_t[:, None], 0, ADD)                            # [BV] dL/du, u = beta r
        tl.store(p_dv, (beta_t * du).to(dv_ptr.dtype.element_ty), mask=mv)
        tl.store(p_dbeta, tl.reduce(du * r_t, 0, ADD))
        if DELTA:
            dvold = -beta_t * du                                              # [BV] dL/dv_old
            tl.store(p_dvold, dvold, mask=mv)
            dS += k_t[:, None] * dvold[None, :]                               # v_old = S'^T k
        dS = tl.where(tl.load(p_reset) != 0, 0.0, dS)                         # S' = 0 cuts the path
        p_q -= stride_k
        p_k -= stride_k
        p_dk -= stride_k
        p_do -= stride_v
        p_r -= stride_v
        p_dv -= stride_v
        p_dvold -= stride_v
        p_beta -= B * H
        p_dbeta -= B * H
        p_reset -= B
    tl.store(ds0_ptr + o_s, dS, mask=m_s)

    tl.debug_barrier()   # pass 2 reads dk / dvold written by other threads of this program

    # Pass 2, forward in time: recompute S (resets applied) for the S-dependent terms.
    S = tl.load(s0_ptr + o_s, mask=m_s, other=0.0).to(ACC)            # [DKP, BV]
    p_k = k_ptr + o_k
    p_dk = dk_ptr + o_pk
    p_dq = dq_ptr + o_pk
    p_do = do_ptr + o_v
    p_r = res_ptr + o_v
    p_dvold = dvold_ptr + o_v
    p_beta = beta_ptr + i_bh
    p_reset = reset_ptr + i_b
    for _ in range(T):
        S = tl.where(tl.load(p_reset) != 0, 0.0, S)
        k_t = tl.load(p_k, mask=mk, other=0.0).to(ACC)                 # [DKP]
        do_t = tl.load(p_do, mask=mv, other=0.0).to(ACC)               # [BV]
        r_t = tl.load(p_r, mask=mv, other=0.0)                                # [BV]
        beta_t = tl.load(p_beta).to(ACC)
        if DELTA:
            dvold = tl.load(p_dvold, mask=mv, other=0.0)                      # [BV]
            dk_t = tl.load(p_dk, mask=mk, other=0.0) + tl.reduce(S * dvold[None, :], 1, ADD)
            tl.store(p_dk, dk_t, mask=mk)                                     # v_old = S'^T k
        S = S + k_t[:, None] * (beta_t * r_t)[None, :]
        tl.store(p_dq, tl.reduce(S * do_t[None, :], 1, ADD), mask=mk)        # o_t = S_t^T q_t
        p_k += stride_k
        p_dk += stride_k
        p_dq += stride_k
        p_do += stride_v
        p_r += stride_v
        p_dvold += stride_v
        p_beta += B * H
        p_reset += B



def _block_v(DV: int, block_v: Optional[int], backward: bool) -> int:
    DVP = triton.next_power_of_2(DV)
    if block_v is None:
        block_v = 32 if backward else 8
    if block_v < 1 or block_v & (block_v - 1):
        raise ValueError(f"block_v must be a power of two, got {block_v}")
    return min(DVP, block_v)


def _num_warps(DKP: int, BV: int) -> int:
    return 1 if DKP * BV <= 512 else 2 if DKP * BV <= 2048 else 4


def _delta_forward(q, k, v, beta, state, reset_u8, *, store_res: bool, block_v: Optional[int] = None,
                   alpha: Optional[torch.Tensor] = None, chunk: int = 16, delta: bool = True):
    """Launch the forward kernel on contiguous inputs. Returns (out, final_state, res, ckpt);
    ``ckpt`` (the gated backward's checkpoints) only with alpha and store_res."""
    T, B, H, DK = q.shape
    DV = v.shape[-1]
    DKP = triton.next_power_of_2(DK)
    BV = _block_v(DV, block_v, backward=False)
    NV = triton.cdiv(DV, BV)
    out = torch.empty(T, B, H, DV, device=q.device, dtype=q.dtype)        # [T, B, H, Dv]
    final = torch.empty_like(state)                                       # [B, H, Dk, Dv]
    acc = acc_dtype(q, k, v, beta, state, *(() if alpha is None else (alpha,)))
    res = (torch.empty(T, B, H, DV, device=q.device, dtype=acc)            # [T, B, H, Dv]
           if store_res else out)                                         # (dummy pointer when unused)
    store_ckpt = store_res and alpha is not None
    ckpt = (torch.empty(triton.cdiv(T, chunk), B, H, DK, DV, device=q.device, dtype=acc)
            if store_ckpt else out)                                       # [NC, B, H, Dk, Dv]
    _delta_fwd_kernel[(NV, B * H)](
        q, k, v, beta, state, reset_u8, out, final, res, alpha if alpha is not None else beta, ckpt,
        T, B, H, chunk,
        DK=DK, DV=DV, DKP=DKP, BV=BV, STORE_RES=store_res, HAS_ALPHA=alpha is not None,
        STORE_CKPT=store_ckpt, ACC=TL_DTYPE[acc], DELTA=delta, num_warps=_num_warps(DKP, BV))
    return out, final, (res if store_res else None), (ckpt if store_ckpt else None)


def _delta_backward(q, k, beta, state, reset_u8, res, d_out, d_final, *, detach: bool,
                    block_v: Optional[int] = None, delta: bool = True):
    """Launch the backward kernel. Returns (dq, dk, dv, dbeta, dstate) in the accumulation dtype."""
    T, B, H, DK = q.shape
    DV = res.shape[-1]
    DKP = triton.next_power_of_2(DK)
    BV = _block_v(DV, block_v, backward=True)
    NV = triton.cdiv(DV, BV)
    dev = q.device
    acc = res.dtype                                                        # accumulation dtype
    dq = torch.empty(NV, T, B, H, DK, device=dev, dtype=acc)             # partial over value blocks
    dk = torch.empty(NV, T, B, H, DK, device=dev, dtype=acc)
    dbeta = torch.empty(NV, T, B, H, device=dev, dtype=acc)
    dv = torch.empty(T, B, H, DV, device=dev, dtype=acc)
    ds0 = torch.empty(B, H, DK, DV, device=dev, dtype=acc)
    dvold = torch.empty(T, B, H, DV, device=dev, dtype=acc)               # scratch
    _delta_bwd_kernel[(NV, B * H)](
        q, k, beta, state, reset_u8, res, d_out, d_final,
        dq, dk, dv, dbeta, ds0, dvold, T, B, H,
        DK=DK, DV=DV, DKP=DKP, BV=BV, DETACH=detach, ACC=TL_DTYPE[acc], DELTA=delta,
        num_warps=_num_warps(DKP, BV))
    return dq.sum(0), dk.sum(0), dv, dbeta.sum(0), ds0


class _DeltaRuleFunction(torch.autograd.Function):
    """Autograd wrapper: inputs are already validated and contiguous."""

    @staticmethod
    def forward(ctx, q, k, v, beta, state, reset_u8, alpha, detach_each_step, block_v, chunk, delta):
        out, final, res, ckpt = _delta_forward(q, k, v, beta, state, reset_u8, store_res=True,
                                               block_v=block_v, alpha=alpha, chunk=chunk, delta=delta)
        if alpha is None:
            ctx.save_for_backward(q, k, beta, state, reset_u8, res)
        else:
            ctx.save_for_backward(q, k, beta, state, reset_u8, res, alpha, ckpt)
        ctx.gated = alpha is not None
        ctx.detach_each_step = detach_each_step
        ctx.block_v = block_v
        ctx.chunk = chunk
        ctx.delta = delta
        ctx.dtypes = (q.dtype, k.dtype, v.dtype, beta.dtype, state.dtype,
                      alpha.dtype if alpha is not None else None)
        if detach_each_step:
            ctx.mark_non_differentiable(final)   # the reference detaches the state every step
        return out, final

    @staticmethod
    def backward(ctx, d_out, d_final):
        saved = ctx.saved_tensors
        q, k, beta, state, reset_u8, res = saved[:6]
        d_out = d_out.contiguous()
        d_final = d_final.contiguous() if d_final is not None else torch.zeros_like(state)
        tq, tk, tv, tb, ts, ta = ctx.dtypes
        if ctx.gated:
            alpha, ckpt = saved[6:]
            BV = _block_v(res.shape[-1], ctx.block_v, backward=True)
            dq, dk, dv, dbeta, ds0, dalpha = gated_delta_backward(
                q, k, beta, alpha, reset_u8, res, ckpt, d_out, d_final, detach=ctx.detach_each_step,
                chunk=ctx.chunk, block_v=BV, num_warps=_num_warps(triton.next_power_of_2(q.shape[-1]), BV))
            d_alpha = dalpha.to(ta)
        else:
            dq, dk, dv, dbeta, ds0 = _delta_backward(q, k, beta, state, reset_u8, res, d_out, d_final,
                                                     detach=ctx.detach_each_step, block_v=ctx.block_v,
                                                     delta=ctx.delta)
            d_alpha = None
        return (dq.to(tq), dk.to(tk), dv.to(tv), dbeta.to(tb), ds0.to(ts), None, d_alpha,
                None, None, None, None)


def _check_inputs(q, k, v, beta, state, reset, alpha=None):
    if q.dim() != 4:
        raise ValueError(f"q must be [T, B, H, Dk], got shape {list(q.shape)}")
    T, B, H, DK = q.shape
    if T < 1:
        raise ValueError(f"the unroll needs T >= 1 steps, got T={T}")
    if k.shape != q.shape:
        raise ValueError(f"k must have q's shape {list(q.shape)}, got {list(k.shape)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [T, B, H, Dv] = [{T}, {B}, {H}, Dv], got {list(v.shape)}")
    DV = v.shape[-1]
    if beta.shape != (T, B, H):
        raise ValueError(f"beta must be [T, B, H] = [{T}, {B}, {H}], got {list(beta.shape)}")
    if state.shape != (B, H, DK, DV):
        raise ValueError(f"state must be [B, H, Dk, Dv] = [{B}, {H}, {DK}, {DV}], got {list(state.shape)}")
    if reset.shape != (T, B):
        raise ValueError(f"reset must be [T, B] = [{T}, {B}], got {list(reset.shape)}")
    if alpha is not None and alpha.shape != (T, B, H):
        raise ValueError(f"alpha must be [T, B, H] = [{T}, {B}, {H}], got {list(alpha.shape)}")
    named = [("q", q), ("k", k), ("v", v), ("beta", beta), ("state", state)]
    check_dtypes_devices(named + ([("alpha", alpha)] if alpha is not None else []), q.device, "delta rule")
    if reset.device != q.device:
        raise ValueError(f"reset is on {reset.device} but q is on {q.device}")


def delta_rule_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                      state: torch.Tensor, reset: torch.Tensor, *, detach_each_step: bool = False,
                      block_v: Optional[int] = None, alpha: Optional[torch.Tensor] = None,
                      chunk: int = 16, delta: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Delta rule over a whole unroll in one kernel launch (same contract as the reference).

    q, k: [T, B, H, Dk]; v: [T, B, H, Dv]; beta: [T, B, H]; state: [B, H, Dk, Dv];
    reset: bool [T, B]; alpha: optional [T, B, H] decay (the gated delta rule).
    Returns (out [T, B, H, Dv] in q's dtype, final_state [B, H, Dk, Dv] in state's dtype).
    ``block_v`` (a power of two) overrides the value-block width; ``chunk`` is the
    checkpoint interval of the gated backward. Without autograd (e.g. acting, T = 1) no
    residuals or checkpoints are stored. ``delta=False`` drops the ``S^T k`` term of the
    residual (linear attention, with beta = 1; not with alpha).
    """
    _check_inputs(q, k, v, beta, state, reset, alpha)
    if not delta and alpha is not None:
        raise ValueError("delta=False (linear attention) has no gated form: pass alpha=None")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    q, k, v, beta, state = (t.contiguous() for t in (q, k, v, beta, state))
    alpha = alpha.contiguous() if alpha is not None else None
    reset_u8 = reset.to(torch.bool).contiguous().view(torch.uint8)      # [T, B]
    grads = (q, k, v, beta, state) + ((alpha,) if alpha is not None else ())
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in grads)
    if not needs_grad:
        out, final, _, _ = _delta_forward(q, k, v, beta, state, reset_u8, store_res=False, block_v=block_v,
                                          alpha=alpha, delta=delta)
        return out, final
    return _DeltaRuleFunction.apply(q, k, v, beta, state, reset_u8, alpha, detach_each_step, block_v, chunk,
                                    delta)


def compile_specs(d: int) -> List[KernelSpec]:
    """The kernel variants the launchers pick at head size ``d`` (Dk = Dv = d, fp32): the
    forward and backward of the delta rule, the gated delta rule and linear attention.
    Labels start with the op's ``launch.bench_kernels --ops`` name."""
    from .triton_gated import _gated_delta_bwd_kernel
    P = triton.next_power_of_2(d)
    specs = []
    for kind in ("delta", "gated", "linear"):
        for backward in (False, True):
            BV = _block_v(d, None, backward)
            consts = dict(DK=d, DV=d, DKP=P, BV=BV, ACC=tl.float32)
            if backward:
                consts.update(DETACH=False)
                if kind != "gated":
                    consts.update(DELTA=kind == "delta")
                fn = _gated_delta_bwd_kernel if kind == "gated" else _delta_bwd_kernel
            else:
                consts.update(STORE_RES=True, HAS_ALPHA=kind == "gated", STORE_CKPT=kind == "gated",
                              DELTA=kind != "linear")
                fn = _delta_fwd_kernel
            specs.append(KernelSpec(f"{kind} {'bwd' if backward else 'fwd'} d={d} BV={BV}", fn, consts,
                                    _num_warps(P, BV)))
    return specs
