"""Whole-unroll PyTorch form of the RDN memory (``rec_delta``) with a hand-written
backward pass (the CPU backend). It reuses the delta-rule step backward; the extra
terms of the recurrent slow net are written out in ``agents/kernels/README.md``."""

from __future__ import annotations

import torch

from ..common import add_outer_, check_reset, mv, softmax_backward, vm
from ..delta_rule.torch_fused import delta_step_backward


class _RecDelta(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qx, kx, vx, bx, Rq, Rk, Rv, rb, S0, y0, reset, detach_each_step: bool):
        T, B, H, d = qx.shape
        BH = B * H
        keep_bh = (~reset).to(qx.dtype).repeat_interleave(H, dim=1).view(T, BH, 1)
        dense = lambda R: R.unsqueeze(0).expand(B, *R.shape).reshape(BH, *R.shape[1:]).contiguous()  # noqa: E731
        Rqb, Rkb, Rvb, rbb = dense(Rq), dense(Rk), dense(Rv), dense(rb)      # [BH, d, d], [BH, d]
        S = S0.reshape(BH, d, d).clone()
        y = y0.reshape(BH, d).clone()
        S_in = qx.new_empty(T, BH, d, d)
        Hs, Q, K, E = (qx.new_empty(T, BH, d) for _ in range(4))
        Bt = qx.new_empty(T, BH, 1)
        out = qx.new_empty(T, BH, d)
        for t in range(T):
            S.mul_(keep_bh[t].unsqueeze(-1))
            S_in[t] = S
            h = torch.tanh(y * keep_bh[t])                                      # [BH, d]
            q = torch.softmax(qx[t].reshape(BH, d) + vm(h, Rqb), -1)          # x R = R^T x
            k = torch.softmax(kx[t].reshape(BH, d) + vm(h, Rkb), -1)
            v = vx[t].reshape(BH, d) + vm(h, Rvb)
            b = torch.sigmoid(bx[t].reshape(BH, 1) + (h * rbb).sum(-1, keepdim=True))
            e = v - vm(k, S)                                                   # v - S^T k
            add_outer_(S, k, b * e)
            y = vm(q, S)                                                       # S^T q
            Hs[t], Q[t], K[t], E[t], Bt[t], out[t] = h, q, k, e, b, y
        ctx.save_for_backward(S_in, Hs, Q, K, E, Bt, keep_bh, Rqb, Rkb, Rvb, rbb)
        ctx.shape = (T, B, H, d)
        ctx.detach_each_step = detach_each_step
        return out.view(T, B, H, d), S.view(B, H, d, d), y.view(B, H, d)

    @staticmethod
    def backward(ctx, d_out, d_S, d_y):
        S_in, Hs, Q, K, E, Bt, keep_bh, Rqb, Rkb, Rvb, rbb = ctx.saved_tensors
        T, B, H, d = ctx.shape
        BH = B * H
        detach = ctx.detach_each_step
        d_out = d_out.reshape(T, BH, d) if d_out is not None else Q.new_zeros(T, BH, d)
        G = d_S.reshape(BH, d, d).clone() if (d_S is not None and not detach) else Q.new_zeros(BH, d, d)
        gy = d_y.reshape(BH, d).clone() if (d_y is not None and not detach) else Q.new_zeros(BH, d)
        dqx, dkx, dvx = (Q.new_empty(T, BH, d) for _ in range(3))
        dbx = Q.new_empty(T, BH, 1)
        dRq, dRk, dRv = (Q.new_zeros(BH, d, d) for _ in range(3))
        drb = Q.new_zeros(BH, d)
        for t in range(T - 1, -1, -1):
            h, q, k, b = Hs[t], Q[t], K[t], Bt[t]
            dy = d_out[t] + gy
            dq, dk, dv, db = delta_step_backward(G, S_in[t], k, E[t], b, q, dy)
            dqp, dkp = softmax_backward(q, dq), softmax_backward(k, dk)
            dbp = db * b * (1 - b)
            dqx[t], dkx[t], dvx[t], dbx[t] = dqp, dkp, dv, dbp
            add_outer_(dRq, h, dqp)
            add_outer_(dRk, h, dkp)
            add_outer_(dRv, h, dv)
            drb.addcmul_(h, dbp)
            dh = mv(Rqb, dqp) + mv(Rkb, dkp) + mv(Rvb, dv) + rbb * dbp      # [BH, d]
            gy = dh * (1 - h * h) * keep_bh[t]
            G.mul_(keep_bh[t].unsqueeze(-1))
            if detach and t > 0:
                G.zero_()
                gy.zero_()
        sum_b = lambda g: g.view(B, H, *g.shape[1:]).sum(0)   # noqa: E731
        shp = (T, B, H, d)
        return (dqx.view(shp), dkx.view(shp), dvx.view(shp), dbx.view(T, B, H),
                sum_b(dRq), sum_b(dRk), sum_b(dRv), sum_b(drb),
                G.view(B, H, d, d), gy.view(B, H, d), None, None)


def rec_delta_torch(q, k, v, beta, R, state, reset, *, detach_each_step: bool = False):
    """Same contract as :func:`agents.kernels.rec_delta.reference.rec_delta_reference`."""
    T, B, H, d = q.shape
    reset = check_reset(reset, T, B)
    dtype = torch.promote_types(q.dtype, torch.float32)
    c = lambda x: x.to(dtype).contiguous()   # noqa: E731
    out, S, y = _RecDelta.apply(c(q), c(k), c(v), c(beta), c(R["q"]), c(R["k"]), c(R["v"]), c(R["b"]),
                                c(state["S"]), c(state["y"]), reset, detach_each_step)
    if detach_each_step:
        S, y = S.detach(), y.detach()
    return out.to(q.dtype), {"S": S.to(state["S"].dtype), "y": y.to(state["y"].dtype)}

