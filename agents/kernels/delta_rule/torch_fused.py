"""Whole-unroll PyTorch forms of the fast-weight ops with hand-written backward passes.

The per-step references (:mod:`agents.kernels.reference`) let autograd record every
small op of every step; on the CPU the learner then spends its time in op dispatch,
not arithmetic. These autograd Functions run the same recurrences with a few batched
batched ops per step over the ``B*H`` heads in the forward, keep
the per-step states they need, and walk the steps backwards with the exact gradient
recurrences below. They are the CPU backend of ``backend="auto"`` (``"torch"``) and
are tested against the references, gradients included.

Delta rule (read after write), per head; ``S'_t = (1 - r_t) S_{t-1}``::

    v_old = S'^T k;  e = beta (v - v_old);  S_t = S' + k e^T;  o_t = S_t^T q
    backward, with G = dL/dS_t (from later steps) + q do^T:
    dq = S_t do;  dk = G e + S' dv_old;  de = G^T k;  dbeta = <de, v - v_old>
    dv = beta de;  dv_old = -beta de;  dL/dS_{t-1} = (1 - r_t) (G + k dv_old^T)

SRWM (read before write): the four matrices of a head are stacked into one
``M = [W^y; W^q; W^k; W^b]`` of ``R = Dy + 2D + 4`` rows and ``A_t = W_slow + (1 - r_t) DW_{t-1}``::

    z = A x = [y, zq, zk, zb];  q = softmax(zq);  k = softmax(zk);  b = sigmoid(zb)
    u = A (q - k);  c = b expanded to the rows of each matrix;  DW_t = (1 - r_t) DW_{t-1} + (c u) k^T
    backward, with G = dL/dDW_t:
    de = G k;  dk = G^T (c u);  dc = de u;  du = de c;  dq += A^T du;  dk -= A^T du
    dz = [dy, softmax'(q) dq, softmax'(k) dk, b (1 - b) db];  dA = dz x^T + du (q - k)^T;  dx = A^T dz
    dW_slow += dA (summed over the batch);  dL/dDW_{t-1} = (1 - r_t) (G + dA)

The gated delta rule (``alpha``), RDN (``rec_delta``) and the Delta RNN (``delta_rnn``)
reuse the delta-rule step backward; their extra terms (the decay, the recurrent slow
net, the softmax of the previous output) are written out in ``agents/kernels/README.md``.

With ``detach_each_step`` the gradient through the state between steps is cut, as in
the reference: G is zero at every step and only the initial state receives dA_1.
No gradient is ever reconstructed by subtraction: every needed state is stored.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

from .reference import SRWM_KEYS, _check_reset


# Tiny batched matrix products as broadcast-multiply-and-sum: for d <= 64 heads this is
# several times faster on the CPU than bmm, which dispatches one small GEMM per head.
def _mv(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """M x for M [N, R, C], x [N, C] -> [N, R]."""
    return (M * x.unsqueeze(-2)).sum(-1)


def _vm(x: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """M^T x for M [N, R, C], x [N, R] -> [N, C]."""
    return (M * x.unsqueeze(-1)).sum(-2)


def _add_outer_(M: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """M += a b^T in place for M [N, R, C], a [N, R], b [N, C]."""
    return M.addcmul_(a.unsqueeze(-1), b.unsqueeze(-2))


def _outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.unsqueeze(-1) * b.unsqueeze(-2)


# ----------------------------------------------------------------------------- delta rule

def _delta_step_backward(G, Sp, k, e, beta, q, do):
    """Backward of one read-after-write delta step ``S = S' + k (beta e)^T; o = S^T q``
    with ``e = v - S'^T k``. G (dL/dS after the step, [N, Dk, Dv]) is updated in place
    to dL/dS' (this step's terms included). Returns dq, dk, dv, dbeta [N, 1]."""
    u = beta * e                                                            # [N, Dv]
    S_t = Sp + _outer(k, u)                                                 # [N, Dk, Dv]
    dq = _mv(S_t, do)                                                       # S do
    _add_outer_(G, q, do)                                                   # G += q do^T
    du = _vm(k, G)                                                          # G^T k  [N, Dv]
    dk = _mv(G, u)                                                          # G u    [N, Dk]
    dbeta = (du * e).sum(-1, keepdim=True)
    dv = beta * du
    dv_old = -beta * du
    dk += _mv(Sp, dv_old)
    _add_outer_(G, k, dv_old)                                               # dS' = G + k dv_old^T
    return dq, dk, dv, dbeta


class _DeltaRule(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, beta, state, reset, alpha, detach_each_step: bool):
        T, B, H, Dk = q.shape
        Dv = v.shape[-1]
        BH = B * H
        keep = (~reset).to(q.dtype)                                           # [T, B]
        qf = q.reshape(T, BH, Dk)
        kf = k.reshape(T, BH, Dk)
        vf = v.reshape(T, BH, Dv)
        bf = beta.reshape(T, BH, 1)
        af = alpha.reshape(T, BH, 1, 1) if alpha is not None else None
        keep_bh = keep.repeat_interleave(H, dim=1).view(T, BH, 1, 1)
        S = state.reshape(BH, Dk, Dv).clone()
        S_in = q.new_empty(T, BH, Dk, Dv)                                     # after reset, before decay
        E = q.new_empty(T, BH, Dv)
        out = q.new_empty(T, BH, Dv)
        for t in range(T):
            S.mul_(keep_bh[t])
            S_in[t] = S
            if af is not None:
                S.mul_(af[t])                                                   # S' = alpha S
            v_old = _vm(kf[t], S)                                               # [BH, Dv]
            e = vf[t] - v_old
            E[t] = e
            _add_outer_(S, kf[t], bf[t] * e)                                    # S += k (beta e)^T
            out[t] = _vm(qf[t], S)                                              # o = S^T q
        ctx.save_for_backward(qf, kf, bf, S_in, E, keep_bh, af)
        ctx.shape = (T, B, H, Dk, Dv)
        ctx.detach_each_step = detach_each_step
        return out.view(T, B, H, Dv), S.view(B, H, Dk, Dv)

    @staticmethod
    def backward(ctx, d_out, d_final):
        qf, kf, bf, S_in, E, keep_bh, af = ctx.saved_tensors
        T, B, H, Dk, Dv = ctx.shape
        BH = B * H
        detach = ctx.detach_each_step
        d_out = d_out.reshape(T, BH, Dv) if d_out is not None else qf.new_zeros(T, BH, Dv)
        G = (d_final.reshape(BH, Dk, Dv).clone() if (d_final is not None and not detach)
             else qf.new_zeros(BH, Dk, Dv))
        dq = torch.empty_like(qf)
        dk = torch.empty_like(kf)
        dv = qf.new_empty(T, BH, Dv)
        dbeta = torch.empty_like(bf)
        dalpha = qf.new_empty(T, BH) if af is not None else None
        for t in range(T - 1, -1, -1):
            Sp = S_in[t] * af[t] if af is not None else S_in[t]
            dq[t], dk[t], dv[t], dbeta[t] = _delta_step_backward(G, Sp, kf[t], E[t], bf[t], qf[t], d_out[t])
            if af is not None:                                                  # G is dL/dS' now
                dalpha[t] = (S_in[t] * G).sum((-2, -1))
                G.mul_(af[t])
            G.mul_(keep_bh[t])
            if detach and t > 0:
                G.zero_()
        d_state = G.view(B, H, Dk, Dv)
        d_alpha = dalpha.view(T, B, H) if dalpha is not None else None
        return (dq.view(T, B, H, Dk), dk.view(T, B, H, Dk), dv.view(T, B, H, Dv),
                dbeta.view(T, B, H), d_state, None, d_alpha, None)


def delta_rule_torch(q, k, v, beta, state, reset, *, detach_each_step: bool = False, alpha=None):
    """Same contract as :func:`agents.kernels.reference.delta_rule_reference`."""
    T, B, H, Dk = q.shape
    reset = _check_reset(reset, T, B)
    if alpha is not None and alpha.shape != (T, B, H):
        raise ValueError(f"alpha must be [T, B, H] = [{T}, {B}, {H}], got {list(alpha.shape)}")
    dtype = torch.promote_types(q.dtype, torch.float32)
    cast = lambda x: x.to(dtype).contiguous()   # noqa: E731
    out, final = _DeltaRule.apply(cast(q), cast(k), cast(v), cast(beta), cast(state), reset,
                                  None if alpha is None else cast(alpha), detach_each_step)
    if detach_each_step:
        final = final.detach()
    return out.to(q.dtype), final.to(state.dtype)


# ----------------------------------------------------------------------------- RDN

def _softmax_backward(p: torch.Tensor, dp: torch.Tensor) -> torch.Tensor:
    return p * (dp - (p * dp).sum(-1, keepdim=True))


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
            q = torch.softmax(qx[t].reshape(BH, d) + _vm(h, Rqb), -1)          # x R = R^T x
            k = torch.softmax(kx[t].reshape(BH, d) + _vm(h, Rkb), -1)
            v = vx[t].reshape(BH, d) + _vm(h, Rvb)
            b = torch.sigmoid(bx[t].reshape(BH, 1) + (h * rbb).sum(-1, keepdim=True))
            e = v - _vm(k, S)                                                   # v - S^T k
            _add_outer_(S, k, b * e)
            y = _vm(q, S)                                                       # S^T q
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
            dq, dk, dv, db = _delta_step_backward(G, S_in[t], k, E[t], b, q, dy)
            dqp, dkp = _softmax_backward(q, dq), _softmax_backward(k, dk)
            dbp = db * b * (1 - b)
            dqx[t], dkx[t], dvx[t], dbx[t] = dqp, dkp, dv, dbp
            _add_outer_(dRq, h, dqp)
            _add_outer_(dRk, h, dkp)
            _add_outer_(dRv, h, dv)
            drb.addcmul_(h, dbp)
            dh = _mv(Rqb, dqp) + _mv(Rkb, dkp) + _mv(Rvb, dv) + rbb * dbp      # [BH, d]
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
    """Same contract as :func:`agents.kernels.reference.rec_delta_reference`."""
    T, B, H, d = q.shape
    reset = _check_reset(reset, T, B)
    dtype = torch.promote_types(q.dtype, torch.float32)
    c = lambda x: x.to(dtype).contiguous()   # noqa: E731
    out, S, y = _RecDelta.apply(c(q), c(k), c(v), c(beta), c(R["q"]), c(R["k"]), c(R["v"]), c(R["b"]),
                                c(state["S"]), c(state["y"]), reset, detach_each_step)
    if detach_each_step:
        S, y = S.detach(), y.detach()
    return out.to(q.dtype), {"S": S.to(state["S"].dtype), "y": y.to(state["y"].dtype)}


# ----------------------------------------------------------------------------- Delta RNN

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
            e = vf[t] - _vm(kf[t], R)
            _add_outer_(R, kf[t], bf[t] * e)
            y = zf[t] + _vm(s, R)                                               # z + R^T s
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
            ds, dk[t], dv[t], dbeta[t] = _delta_step_backward(G, R_in[t], kf[t], E[t], bf[t], s, dy)
            gy = _softmax_backward(s, ds) * keep_bh[t]
            G.mul_(keep_bh[t].unsqueeze(-1))
            if detach and t > 0:
                G.zero_()
                gy.zero_()
        shp = (T, B, H, d)
        return (dz.view(shp), dk.view(shp), dv.view(shp), dbeta.view(T, B, H),
                G.view(B, H, d, d), gy.view(B, H, d), None, None)


def delta_rnn_torch(z, k, v, beta, state, reset, *, detach_each_step: bool = False):
    """Same contract as :func:`agents.kernels.reference.delta_rnn_reference`."""
    T, B, H, d = z.shape
    reset = _check_reset(reset, T, B)
    dtype = torch.promote_types(z.dtype, torch.float32)
    c = lambda x: x.to(dtype).contiguous()   # noqa: E731
    out, R, y = _DeltaRNN.apply(c(z), c(k), c(v), c(beta), c(state["R"]), c(state["y"]), reset,
                                detach_each_step)
    if detach_each_step:
        R, y = R.detach(), y.detach()
    return out.to(z.dtype), {"R": R.to(state["R"].dtype), "y": y.to(state["y"].dtype)}


# ----------------------------------------------------------------------------- SRWM

def _row_groups(Dy: int, D: int, device) -> torch.Tensor:
    """Index of the learning rate b[j] that updates each stacked row."""
    return torch.cat([torch.full((Dy,), 0), torch.full((D,), 1), torch.full((D,), 2),
                      torch.full((4,), 3)]).to(device)


class _SRWM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W_slow, delta, reset, Dy: int, detach_each_step: bool):
        # x: [T, B, H, D]; W_slow: [H, R, D]; delta: [B, H, R, D]; R = Dy + 2D + 4
        T, B, H, D = x.shape
        R = W_slow.shape[1]
        BH = B * H
        keep_bh = (~reset).to(x.dtype).repeat_interleave(H, dim=1).view(T, BH, 1, 1)
        xf = x.reshape(T, BH, D)
        Wb = W_slow.unsqueeze(0).expand(B, H, R, D).reshape(BH, R, D).contiguous()   # dense: fast adds
        dW = delta.reshape(BH, R, D).clone()
        groups = _row_groups(Dy, D, x.device)
        A_all = x.new_empty(T, BH, R, D)
        Q = x.new_empty(T, BH, D)
        K = x.new_empty(T, BH, D)
        Bt = x.new_empty(T, BH, 4)
        U = x.new_empty(T, BH, R)
        y = x.new_empty(T, BH, Dy)
        for t in range(T):
            dW.mul_(keep_bh[t])
            A = torch.add(Wb, dW, out=A_all[t])                                # [BH, R, D]
            z = _mv(A, xf[t])                                                   # [BH, R]
            y[t] = z[:, :Dy]
            q = torch.softmax(z[:, Dy:Dy + D], -1)
            k = torch.softmax(z[:, Dy + D:Dy + 2 * D], -1)
            b = torch.sigmoid(z[:, Dy + 2 * D:])
            u = _mv(A, q - k)                                                   # [BH, R]
            Q[t], K[t], Bt[t], U[t] = q, k, b, u
            c = b.index_select(1, groups)                                      # [BH, R]
            _add_outer_(dW, c * u, k)                                           # += (c u) k^T
        ctx.save_for_backward(xf, A_all, Q, K, Bt, U, keep_bh, groups)
        ctx.shape = (T, B, H, D, R, Dy)
        ctx.detach_each_step = detach_each_step
        return y.view(T, B, H, Dy), dW.view(B, H, R, D)

    @staticmethod
    def backward(ctx, d_y, d_final):
        xf, A_all, Q, K, Bt, U, keep_bh, groups = ctx.saved_tensors
        T, B, H, D, R, Dy = ctx.shape
        BH = B * H
        detach = ctx.detach_each_step
        d_y = d_y.reshape(T, BH, Dy) if d_y is not None else xf.new_zeros(T, BH, Dy)
        G = (d_final.reshape(BH, R, D).clone() if (d_final is not None and not detach)
             else xf.new_zeros(BH, R, D))
        dx = torch.empty_like(xf)
        dW_slow = xf.new_zeros(BH, R, D)
        for t in range(T - 1, -1, -1):
            A, x_t, q, k, b, u = A_all[t], xf[t], Q[t], K[t], Bt[t], U[t]
            c = b.index_select(1, groups)
            dz = xf.new_zeros(BH, R)
            dz[:, :Dy] = d_y[t]
            if detach:
                dA = _outer(dz, x_t)
            else:
                cu = c * u
                de = _mv(G, k)                                                  # G k       [BH, R]
                dk = _vm(cu, G)                                                 # G^T (c u) [BH, D]
                dc = de * u
                du = de * c
                db = xf.new_zeros(BH, 4).index_add_(1, groups, dc)
                AT_du = _vm(du, A)                                              # A^T du    [BH, D]
                dq = AT_du
                dk = dk - AT_du
                dz[:, Dy:Dy + D] = q * (dq - (q * dq).sum(-1, keepdim=True))
                dz[:, Dy + D:Dy + 2 * D] = k * (dk - (k * dk).sum(-1, keepdim=True))
                dz[:, Dy + 2 * D:] = db * b * (1 - b)
                dA = _outer(dz, x_t)
                _add_outer_(dA, du, q - k)
            dx[t] = _vm(dz, A)                                                  # A^T dz
            dW_slow += dA
            if detach:
                G = dA * keep_bh[t] if t == 0 else G
            else:
                G = (G + dA) * keep_bh[t]
        d_delta = G.view(B, H, R, D)
        d_W = dW_slow.view(B, H, R, D).sum(0)
        return dx.view(T, B, H, D), d_W, d_delta, None, None, None


def srwm_torch(x: torch.Tensor, W_slow: Dict[str, torch.Tensor], delta: Dict[str, torch.Tensor],
               reset: torch.Tensor, *, detach_each_step: bool = False
               ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Same contract as :func:`agents.kernels.reference.srwm_reference`."""
    T, B, H, D = x.shape
    reset = _check_reset(reset, T, B)
    Dy = W_slow["y"].shape[1]
    dtype = torch.promote_types(x.dtype, torch.float32)
    W = torch.cat([W_slow[n].to(dtype) for n in SRWM_KEYS], dim=1).contiguous()      # [H, R, D]
    dW0 = torch.cat([delta[n].to(dtype) for n in SRWM_KEYS], dim=2).contiguous()     # [B, H, R, D]
    y, dW = _SRWM.apply(x.to(dtype).contiguous(), W, dW0, reset, Dy, detach_each_step)
    if detach_each_step:
        dW = dW.detach()
    sizes = [Dy, D, D, 4]
    parts = torch.split(dW, sizes, dim=2)
    return y.to(x.dtype), {n: p.to(delta[n].dtype) for n, p in zip(SRWM_KEYS, parts)}
