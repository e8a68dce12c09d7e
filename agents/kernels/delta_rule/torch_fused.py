"""Whole-unroll PyTorch form of the delta rule (and the gated delta rule) with a
hand-written backward pass.

The per-step references (:mod:`agents.kernels.delta_rule.reference` and its siblings)
let autograd record every small op of every step; on the CPU the learner then spends
its time in op dispatch, not arithmetic. The autograd Functions of the ``torch_fused``
modules run the same recurrences with a few batched ops per step over the ``B*H``
heads in the forward, keep the per-step states they need, and walk the steps backwards
with the exact gradient recurrences. They are the CPU backend of ``backend="auto"``
(``"torch"``) and are tested against the references, gradients included.

Delta rule (read after write), per head; ``S'_t = (1 - r_t) S_{t-1}``::

    v_old = S'^T k;  e = beta (v - v_old);  S_t = S' + k e^T;  o_t = S_t^T q
    backward, with G = dL/dS_t (from later steps) + q do^T:
    dq = S_t do;  dk = G e + S' dv_old;  de = G^T k;  dbeta = <de, v - v_old>
    dv = beta de;  dv_old = -beta de;  dL/dS_{t-1} = (1 - r_t) (G + k dv_old^T)

The gated delta rule (``alpha``) adds the decay (``agents/kernels/README.md``); the
same Function with ``delta=False`` (no ``v_old`` term, beta = 1) is linear attention
(:mod:`agents.kernels.linear_attention.torch_fused`). RDN and the Delta RNN reuse
:func:`delta_step_backward`.

With ``detach_each_step`` the gradient through the state between steps is cut, as in
the reference: G is zero at every step and only the initial state receives dA_1.
No gradient is ever reconstructed by subtraction: every needed state is stored.
"""

from __future__ import annotations

import torch

from ..common import add_outer_, check_reset, mv, outer, vm


def delta_step_backward(G, Sp, k, e, beta, q, do, delta: bool = True):
    """Backward of one read-after-write delta step ``S = S' + k (beta e)^T; o = S^T q``
    with ``e = v - S'^T k`` (``e = v`` when ``delta`` is False: linear attention).
    G (dL/dS after the step, [N, Dk, Dv]) is updated in place to dL/dS' (this step's
    terms included). Returns dq, dk, dv, dbeta [N, 1]."""
    u = beta * e                                                            # [N, Dv]
    S_t = Sp + outer(k, u)                                                 # [N, Dk, Dv]
    dq = mv(S_t, do)                                                       # S do
    add_outer_(G, q, do)                                                   # G += q do^T
    du = vm(k, G)                                                          # G^T k  [N, Dv]
    dk = mv(G, u)                                                          # G u    [N, Dk]
    dbeta = (du * e).sum(-1, keepdim=True)
    dv = beta * du
    if delta:
        dv_old = -beta * du
        dk += mv(Sp, dv_old)
        add_outer_(G, k, dv_old)                                           # dS' = G + k dv_old^T
    return dq, dk, dv, dbeta


def _forward(q, k, v, beta, state, reset, alpha, delta: bool, save: bool):
    """The recurrence over the ``B*H`` heads at once: (out [T, BH, Dv], final S, and with
    ``save`` what the backward needs: the flattened inputs, S_in, E, keep_bh, af)."""
    T, B, H, Dk = q.shape
    Dv = v.shape[-1]
    BH = B * H
    keep = (~reset).to(q.dtype)                                               # [T, B]
    qf = q.reshape(T, BH, Dk)
    kf = k.reshape(T, BH, Dk)
    vf = v.reshape(T, BH, Dv)
    bf = beta.reshape(T, BH, 1)
    af = alpha.reshape(T, BH, 1, 1) if alpha is not None else None
    keep_bh = keep.repeat_interleave(H, dim=1).view(T, BH, 1, 1)
    S = state.reshape(BH, Dk, Dv).clone()
    S_in = q.new_empty(T, BH, Dk, Dv) if save else None                       # after reset, before decay
    E = q.new_empty(T, BH, Dv) if save else None
    out = q.new_empty(T, BH, Dv)
    for t in range(T):
        S.mul_(keep_bh[t])
        if save:
            S_in[t] = S
        if af is not None:
            S.mul_(af[t])                                                       # S' = alpha S
        e = vf[t] - vm(kf[t], S) if delta else vf[t]                           # v - S^T k
        if save:
            E[t] = e
        add_outer_(S, kf[t], bf[t] * e)                                        # S += k (beta e)^T
        out[t] = vm(qf[t], S)                                                  # o = S^T q
    return out, S, (qf, kf, bf, S_in, E, keep_bh, af)


class _DeltaRule(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, beta, state, reset, alpha, detach_each_step: bool, delta: bool):
        T, B, H, Dk = q.shape
        Dv = v.shape[-1]
        out, S, saved = _forward(q, k, v, beta, state, reset, alpha, delta, save=True)
        ctx.save_for_backward(*saved)
        ctx.shape = (T, B, H, Dk, Dv)
        ctx.detach_each_step = detach_each_step
        ctx.delta = delta
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
            dq[t], dk[t], dv[t], dbeta[t] = delta_step_backward(G, Sp, kf[t], E[t], bf[t], qf[t], d_out[t],
                                                                          ctx.delta)
            if af is not None:                                                  # G is dL/dS' now
                dalpha[t] = (S_in[t] * G).sum((-2, -1))
                G.mul_(af[t])
            G.mul_(keep_bh[t])
            if detach and t > 0:
                G.zero_()
        d_state = G.view(B, H, Dk, Dv)
        d_alpha = dalpha.view(T, B, H) if dalpha is not None else None
        return (dq.view(T, B, H, Dk), dk.view(T, B, H, Dk), dv.view(T, B, H, Dv),
                dbeta.view(T, B, H), d_state, None, d_alpha, None, None)


def delta_rule_torch(q, k, v, beta, state, reset, *, detach_each_step: bool = False, alpha=None,
                     delta: bool = True):
    """Same contract as :func:`agents.kernels.delta_rule.reference.delta_rule_reference`.

    ``delta=False`` drops the ``S^T k`` term of the residual (``e = v``): with beta = 1
    that is linear attention, :func:`agents.kernels.linear_attention.torch_fused.linear_attention_torch`.
    """
    T, B, H, Dk = q.shape
    reset = check_reset(reset, T, B)
    if alpha is not None and alpha.shape != (T, B, H):
        raise ValueError(f"alpha must be [T, B, H] = [{T}, {B}, {H}], got {list(alpha.shape)}")
    dtype = torch.promote_types(q.dtype, torch.float32)
    cast = lambda x: x.to(dtype).contiguous()   # noqa: E731
    args = (cast(q), cast(k), cast(v), cast(beta), cast(state), reset, None if alpha is None else cast(alpha))
    if torch.is_grad_enabled() and any(a is not None and a.requires_grad for a in args):
        out, final = _DeltaRule.apply(*args, detach_each_step, delta)
    else:        # acting, evaluation: the same forward, nothing kept for a backward
        out, S, _ = _forward(*args, delta, save=False)
        out, final = out.view(T, B, H, -1), S.view(B, H, Dk, -1)
    if detach_each_step:
        final = final.detach()
    return out.to(q.dtype), final.to(state.dtype)

