"""Whole-unroll PyTorch form of the SRWM with a hand-written backward pass (the CPU
backend; see :mod:`agents.kernels.delta_rule.torch_fused` for why these forms exist).

SRWM (read before write): the four matrices of a head are stacked into one
``M = [W^y; W^q; W^k; W^b]`` of ``R = Dy + 2D + 4`` rows and ``A_t = W_slow + (1 - r_t) DW_{t-1}``::

    z = A x = [y, zq, zk, zb];  q = softmax(zq);  k = softmax(zk);  b = sigmoid(zb)
    u = A (q - k);  c = b expanded to the rows of each matrix;  DW_t = (1 - r_t) DW_{t-1} + (c u) k^T
    backward, with G = dL/dDW_t:
    de = G k;  dk = G^T (c u);  dc = de u;  du = de c;  dq += A^T du;  dk -= A^T du
    dz = [dy, softmax'(q) dq, softmax'(k) dk, b (1 - b) db];  dA = dz x^T + du (q - k)^T;  dx = A^T dz
    dW_slow += dA (summed over the batch);  dL/dDW_{t-1} = (1 - r_t) (G + dA)

With ``detach_each_step`` G is zero at every step and only the initial delta receives dA_1.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

from ..common import add_outer_, check_reset, mv, outer, vm
from . import SRWM_KEYS


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
            z = mv(A, xf[t])                                                   # [BH, R]
            y[t] = z[:, :Dy]
            q = torch.softmax(z[:, Dy:Dy + D], -1)
            k = torch.softmax(z[:, Dy + D:Dy + 2 * D], -1)
            b = torch.sigmoid(z[:, Dy + 2 * D:])
            u = mv(A, q - k)                                                   # [BH, R]
            Q[t], K[t], Bt[t], U[t] = q, k, b, u
            c = b.index_select(1, groups)                                      # [BH, R]
            add_outer_(dW, c * u, k)                                           # += (c u) k^T
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
                dA = outer(dz, x_t)
            else:
                cu = c * u
                de = mv(G, k)                                                  # G k       [BH, R]
                dk = vm(cu, G)                                                 # G^T (c u) [BH, D]
                dc = de * u
                du = de * c
                db = xf.new_zeros(BH, 4).index_add_(1, groups, dc)
                AT_du = vm(du, A)                                              # A^T du    [BH, D]
                dq = AT_du
                dk = dk - AT_du
                dz[:, Dy:Dy + D] = q * (dq - (q * dq).sum(-1, keepdim=True))
                dz[:, Dy + D:Dy + 2 * D] = k * (dk - (k * dk).sum(-1, keepdim=True))
                dz[:, Dy + 2 * D:] = db * b * (1 - b)
                dA = outer(dz, x_t)
                add_outer_(dA, du, q - k)
            dx[t] = vm(dz, A)                                                  # A^T dz
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
    """Same contract as :func:`agents.kernels.srwm.reference.srwm_reference`."""
    T, B, H, D = x.shape
    reset = check_reset(reset, T, B)
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
