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

class _DeltaRule(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, beta, state, reset, detach_each_step: bool):
        T, B, H, Dk = q.shape
        Dv = v.shape[-1]
        BH = B * H
        keep = (~reset).to(q.dtype)                                           # [T, B]
        qf = q.reshape(T, BH, Dk)
        kf = k.reshape(T, BH, Dk)
        vf = v.reshape(T, BH, Dv)
        bf = beta.reshape(T, BH, 1)
        keep_bh = keep.repeat_interleave(H, dim=1).view(T, BH, 1, 1)
        S = state.reshape(BH, Dk, Dv).clone()
        S_prev = q.new_empty(T, BH, Dk, Dv)                                   # S'_t (after reset)
        E = q.new_empty(T, BH, Dv)
        out = q.new_empty(T, BH, Dv)
        for t in range(T):
            S.mul_(keep_bh[t])
            S_prev[t] = S
            v_old = _vm(kf[t], S)                                               # [BH, Dv]
            e = bf[t] * (vf[t] - v_old)
            E[t] = e
            _add_outer_(S, kf[t], e)                                            # S += k e^T
            out[t] = _vm(qf[t], S)                                              # o = S^T q
        ctx.save_for_backward(qf, kf, vf, bf, S_prev, E, keep_bh)
        ctx.shape = (T, B, H, Dk, Dv)
        ctx.detach_each_step = detach_each_step
        return out.view(T, B, H, Dv), S.view(B, H, Dk, Dv)

    @staticmethod
    def backward(ctx, d_out, d_final):
        qf, kf, vf, bf, S_prev, E, keep_bh = ctx.saved_tensors
        T, B, H, Dk, Dv = ctx.shape
        BH = B * H
        detach = ctx.detach_each_step
        d_out = d_out.reshape(T, BH, Dv) if d_out is not None else qf.new_zeros(T, BH, Dv)
        G = (d_final.reshape(BH, Dk, Dv).clone() if (d_final is not None and not detach)
             else qf.new_zeros(BH, Dk, Dv))
        dq = torch.empty_like(qf)
        dk = torch.empty_like(kf)
        dv = torch.empty_like(vf)
        dbeta = torch.empty_like(bf)
        for t in range(T - 1, -1, -1):
            Sp, e, k_t, q_t = S_prev[t], E[t], kf[t], qf[t]
            S_t = Sp + _outer(k_t, e)                                         # [BH, Dk, Dv]
            do = d_out[t]
            dq[t] = _mv(S_t, do)
            _add_outer_(G, q_t, do)                                             # G += q do^T
            de = _vm(k_t, G)                                                    # G^T k  [BH, Dv]
            dk_t = _mv(G, e)                                                    # G e    [BH, Dk]
            v_old = _vm(k_t, Sp)
            dbeta[t] = (de * (vf[t] - v_old)).sum(-1, keepdim=True)
            dv[t] = bf[t] * de
            dv_old = -bf[t] * de
            dk_t += _mv(Sp, dv_old)
            dk[t] = dk_t
            _add_outer_(G, k_t, dv_old)                                         # dS' = G + k dv_old^T
            G.mul_(keep_bh[t])
            if detach and t > 0:
                G.zero_()
        d_state = G.view(B, H, Dk, Dv)
        return (dq.view(T, B, H, Dk), dk.view(T, B, H, Dk), dv.view(T, B, H, Dv),
                dbeta.view(T, B, H), d_state, None, None)


def delta_rule_torch(q, k, v, beta, state, reset, *, detach_each_step: bool = False):
    """Same contract as :func:`agents.kernels.reference.delta_rule_reference`."""
    T, B, H, Dk = q.shape
    reset = _check_reset(reset, T, B)
    dtype = torch.promote_types(q.dtype, torch.float32)
    cast = lambda x: x.to(dtype).contiguous()   # noqa: E731
    out, final = _DeltaRule.apply(cast(q), cast(k), cast(v), cast(beta), cast(state), reset, detach_each_step)
    if detach_each_step:
        final = final.detach()
    return out.to(q.dtype), final.to(state.dtype)


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
