"""Whole-unroll PyTorch form of the Delta RNN's recurrent fast net (``delta_rnn``) with
a hand-written backward pass (the CPU backend). It reuses the delta-rule step backward;
the softmax of the previous output is written out in ``agents/kernels/README.md``."""

from __future__ import annotations

import torch

from ..common import add_outer_, check_reset, softmax_backward, vm
from ..delta_rule.torch_fused import delta_step_backward


class _DeltaRNN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, k, v, beta, R0, y0, reset, detach_each_step: bool):
        T, B, H, d = z.shape
        BH = B * H
        keep_bh = (~reset).to(z.dtype).repeat_interleave(H, dim=1).view(T, BH, 1)
        zf, kf, vf, bf = z.reshape(T, BH, d), k.reshape(T, BH, d), v.reshape(T, BH, d), beta.reshape(T, BH, 1)
        R = R0.reshape(BH, d, d).clone()
        y = y0.reshape(BH, d).clone()
        R_in = z.new_empty(T, BH, d, d)
        Sm = z.new_empty(T, BH, d)
        E = z.new_empty(T, BH, d)
        out = z.new_empty(T, BH, d)
        for t in range(T):
            R.mul_(keep_bh[t].unsqueeze(-1))
            R_in[t] = R
            s = torch.softmax(y * keep_bh[t], -1)                               # f(y_{t-1})
            e = vf[t] - vm(kf[t], R)
            add_outer_(R, kf[t], bf[t] * e)
            y = zf[t] + vm(s, R)                                               # z + R^T s
            Sm[t], E[t], out[t] = s, e, y
        ctx.save_for_backward(kf, bf, R_in, Sm, E, keep_bh)
        ctx.shape = (T, B, H, d)
        ctx.detach_each_step = detach_each_step
        return out.view(T, B, H, d), R.view(B, H, d, d), y.view(B, H, d)

    @staticmethod
    def backward(ctx, d_out, d_R, d_y):
        kf, bf, R_in, Sm, E, keep_bh = ctx.saved_tensors
        T, B, H, d = ctx.shape
        BH = B * H
        detach = ctx.detach_each_step
        d_out = d_out.reshape(T, BH, d) if d_out is not None else kf.new_zeros(T, BH, d)
        G = d_R.reshape(BH, d, d).clone() if (d_R is not None and not detach) else kf.new_zeros(BH, d, d)
        gy = d_y.reshape(BH, d).clone() if (d_y is not None and not detach) else kf.new_zeros(BH, d)
        dz, dk, dv = (kf.new_empty(T, BH, d) for _ in range(3))
        dbeta = kf.new_empty(T, BH, 1)
        for t in range(T - 1, -1, -1):
            s = Sm[t]
            dy = d_out[t] + gy
            dz[t] = dy
            ds, dk[t], dv[t], dbeta[t] = delta_step_backward(G, R_in[t], kf[t], E[t], bf[t], s, dy)
            gy = softmax_backward(s, ds) * keep_bh[t]
            G.mul_(keep_bh[t].unsqueeze(-1))
            if detach and t > 0:
                G.zero_()
                gy.zero_()
        shp = (T, B, H, d)
        return (dz.view(shp), dk.view(shp), dv.view(shp), dbeta.view(T, B, H),
                G.view(B, H, d, d), gy.view(B, H, d), None, None)


def delta_rnn_torch(z, k, v, beta, state, reset, *, detach_each_step: bool = False):
    """Same contract as :func:`agents.kernels.delta_rnn.reference.delta_rnn_reference`."""
    T, B, H, d = z.shape
    reset = check_reset(reset, T, B)
    dtype = torch.promote_types(z.dtype, torch.float32)
    c = lambda x: x.to(dtype).contiguous()   # noqa: E731
    out, R, y = _DeltaRNN.apply(c(z), c(k), c(v), c(beta), c(state["R"]), c(state["y"]), reset,
                                detach_each_step)
    if detach_each_step:
        R, y = R.detach(), y.detach()
    return out.to(z.dtype), {"R": R.to(state["R"].dtype), "y": y.to(state["y"].dtype)}

