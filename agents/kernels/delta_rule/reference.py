"""Slow, obviously correct per-step references of the fast-weight ops.

These loops follow DESIGN.md section 4 line by line; the Triton kernels in this
package are tested against them (outputs, final states and every gradient).

Conventions (per head, rows of a weight matrix are its outputs):

* ``reset[t, b]`` true: before step ``t`` row ``b`` of the state goes back to its
  episode-start value (zeros; for SRWM a zero difference from the slow weights).
* ``detach_each_step=True`` cuts the gradient through the state after every step,
  as the original IDSIA learner did; the default backpropagates through the
  whole unroll.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

SRWM_KEYS = ("y", "q", "k", "b")


def _check_reset(reset: torch.Tensor, T: int, B: int) -> torch.Tensor:
    if reset.shape != (T, B):
        raise ValueError(f"reset must be [T, B] = [{T}, {B}], got {list(reset.shape)}")
    return reset.to(torch.bool)


def delta_rule_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                         state: torch.Tensor, reset: torch.Tensor, *,
                         detach_each_step: bool = False,
                         alpha: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Delta rule, read after write (Schlag et al. 2021); with ``alpha`` the gated delta
    rule (Yang, Kautz, Hatamizadeh, "Gated Delta Networks", ICLR 2025).

    q, k: [T, B, H, Dk] (feature-mapped and normalised); v: [T, B, H, Dv];
    beta: [T, B, H] in (0, 1); state S: [B, H, Dk, Dv]; reset: bool [T, B];
    alpha: optional [T, B, H] decay in (0, 1] (None: alpha = 1, plain DeltaNet).
    Per step: ``S <- 0 if reset``; ``S <- alpha S``; ``v_old = S^T k``;
    ``S <- S + k (beta (v - v_old))^T``; ``out = S^T q``, i.e.
    ``S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T``.
    Returns out [T, B, H, Dv] and the final state [B, H, Dk, Dv].
    """
    T, B, H, Dk = q.shape
    reset = _check_reset(reset, T, B)
    if alpha is not None and alpha.shape != (T, B, H):
        raise ValueError(f"alpha must be [T, B, H] = [{T}, {B}, {H}], got {list(alpha.shape)}")
    S = state
    outs = []
    for t in range(T):
        S = torch.where(reset[t].view(B, 1, 1, 1), torch.zeros_like(S), S)   # [B, H, Dk, Dv]
        if alpha is not None:
            S = alpha[t].view(B, H, 1, 1) * S                                  # decay first
        k_t, q_t = k[t], q[t]                                                  # [B, H, Dk]
        v_old = torch.einsum("bhkv,bhk->bhv", S, k_t)                          # [B, H, Dv]
        delta = beta[t].unsqueeze(-1) * (v[t] - v_old)                          # [B, H, Dv]
        S = S + k_t.unsqueeze(-1) * delta.unsqueeze(-2)                        # [B, H, Dk, Dv]
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q_t))                     # read after write
        if detach_each_step:
            S = S.detach()
    return torch.stack(outs), S


def linear_attention_reference(q, k, v, state, reset, *, detach_each_step: bool = False):
    """Purely additive fast weights (Linear Transformer): ``S <- S + k v^T``; ``out = S^T q``.

    Shapes as :func:`delta_rule_reference` (no beta).
    """
    T, B, H, Dk = q.shape
    reset = _check_reset(reset, T, B)
    S = state
    outs = []
    for t in range(T):
        S = torch.where(reset[t].view(B, 1, 1, 1), torch.zeros_like(S), S)
        S = S + k[t].unsqueeze(-1) * v[t].unsqueeze(-2)
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q[t]))
        if detach_each_step:
            S = S.detach()
    return torch.stack(outs), S


def srwm_reference(x: torch.Tensor, W_slow: Dict[str, torch.Tensor], delta: Dict[str, torch.Tensor],
                   reset: torch.Tensor, *, detach_each_step: bool = False
                   ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Self-referential weight matrix (Irie et al., ICML 2022), read before write.

    x: [T, B, H, D] (already softmaxed per head). ``W_slow`` has keys ``y, q, k, b`` of
    shapes [H, Dy, D], [H, D, D], [H, D, D], [H, 4, D]; ``delta`` the same keys with a
    leading batch dimension. The effective weights are ``W = W_slow + delta``. Per step::

        y = W^y x;  q = softmax(W^q x);  k = softmax(W^k x);  b = sigmoid(W^b x)
        M_j <- M_j + b[j] (M_j q - M_j k) k^T   for M_j in (W^y, W^q, W^k, W^b)

    with every read done before any write. Returns y [T, B, H, Dy] and the final delta.
    """
    T, B, H, D = x.shape
    reset = _check_reset(reset, T, B)
    dW = dict(delta)
    ys = []
    for t in range(T):
        r = reset[t].view(B, 1, 1, 1)
        dW = {n: torch.where(r, torch.zeros_like(dW[n]), dW[n]) for n in SRWM_KEYS}
        W = {n: W_slow[n].unsqueeze(0) + dW[n] for n in SRWM_KEYS}           # [B, H, out, D]
        x_t = x[t]                                                            # [B, H, D]
        y = torch.einsum("bhod,bhd->bho", W["y"], x_t)                        # [B, H, Dy]
        q = torch.softmax(torch.einsum("bhod,bhd->bho", W["q"], x_t), -1)     # [B, H, D]
        k = torch.softmax(torch.einsum("bhod,bhd->bho", W["k"], x_t), -1)     # [B, H, D]
        b = torch.sigmoid(torch.einsum("bhod,bhd->bho", W["b"], x_t))         # [B, H, 4]
        new = {}
        for j, n in enumerate(SRWM_KEYS):
            diff = torch.einsum("bhod,bhd->bho", W[n], q - k)                 # M q - M k
            new[n] = dW[n] + b[..., j, None, None] * diff.unsqueeze(-1) * k.unsqueeze(-2)
        dW = {n: v.detach() for n, v in new.items()} if detach_each_step else new
        ys.append(y)
    return torch.stack(ys), dW


def rec_delta_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                        R: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor], reset: torch.Tensor, *,
                        detach_each_step: bool = False) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Recurrent Delta Net memory (Irie et al., NeurIPS 2021, "RDN"), read after write.

    q, k, v: [T, B, H, d] and beta: [T, B, H] are the slow net's *pre-activations* from
    the layer input; ``R`` holds the recurrent slow weights ``q, k, v``: [H, d, d] and
    ``b``: [H, d]; ``state`` holds ``S`` [B, H, d, d] (fast weights) and ``y`` [B, H, d]
    (the previous output, before its tanh). Per step (row vectors, ``x R`` = sum over
    the first index of R)::

        S, y <- 0 if reset
        h = tanh(y)
        q = softmax(q~ + h R_q);  k = softmax(k~ + h R_k);  v = v~ + h R_v
        beta = sigmoid(b~ + h . r_b)
        S <- S + k (beta (v - S^T k))^T;   y = S^T q

    Returns y [T, B, H, d] and the final state ``{"S", "y"}``.
    """
    T, B, H, d = q.shape
    reset = _check_reset(reset, T, B)
    S, y = state["S"], state["y"]
    outs = []
    for t in range(T):
        r = reset[t]
        S = torch.where(r.view(B, 1, 1, 1), torch.zeros_like(S), S)            # [B, H, d, d]
        y = torch.where(r.view(B, 1, 1), torch.zeros_like(y), y)               # [B, H, d]
        h = torch.tanh(y)
        q_t = torch.softmax(q[t] + torch.einsum("bhe,hed->bhd", h, R["q"]), -1)
        k_t = torch.softmax(k[t] + torch.einsum("bhe,hed->bhd", h, R["k"]), -1)
        v_t = v[t] + torch.einsum("bhe,hed->bhd", h, R["v"])
        b_t = torch.sigmoid(beta[t] + (h * R["b"]).sum(-1))                    # [B, H]
        v_old = torch.einsum("bhkv,bhk->bhv", S, k_t)
        S = S + k_t.unsqueeze(-1) * (b_t.unsqueeze(-1) * (v_t - v_old)).unsqueeze(-2)
        y = torch.einsum("bhkv,bhk->bhv", S, q_t)                              # read after write
        outs.append(y)
        if detach_each_step:
            S, y = S.detach(), y.detach()
    return torch.stack(outs), {"S": S, "y": y}


def delta_rnn_reference(z: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                        state: Dict[str, torch.Tensor], reset: torch.Tensor, *,
                        detach_each_step: bool = False) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Recurrent part of the Delta RNN (Irie et al., NeurIPS 2021), read after write.

    z: [T, B, H, d] is the feed-forward fast net's output ``W_t q_t`` (a :func:`delta_rule`
    output); k: [T, B, H, d] (softmaxed), v: [T, B, H, d], beta: [T, B, H] in (0, 1) are the
    slow net's recurrent key, value and learning rate; ``state`` holds ``R`` [B, H, d, d]
    (the recurrent fast weights) and ``y`` [B, H, d] (the previous output). Per step::

        R, y <- 0 if reset
        R <- R + k (beta (v - R^T k))^T
        y = z + R^T softmax(y)

    Returns y [T, B, H, d] and the final state ``{"R", "y"}``.
    """
    T, B, H, d = z.shape
    reset = _check_reset(reset, T, B)
    R, y = state["R"], state["y"]
    outs = []
    for t in range(T):
        r = reset[t]
        R = torch.where(r.view(B, 1, 1, 1), torch.zeros_like(R), R)            # [B, H, d, d]
        y = torch.where(r.view(B, 1, 1), torch.zeros_like(y), y)               # [B, H, d]
        s = torch.softmax(y, -1)
        v_old = torch.einsum("bhkv,bhk->bhv", R, k[t])
        R = R + k[t].unsqueeze(-1) * (beta[t].unsqueeze(-1) * (v[t] - v_old)).unsqueeze(-2)
        y = z[t] + torch.einsum("bhkv,bhk->bhv", R, s)                         # read after write
        outs.append(y)
        if detach_each_step:
            R, y = R.detach(), y.detach()
    return torch.stack(outs), {"R": R, "y": y}
