"""The PyTorch reference fast-weight ops (``agents/kernels/<op>/reference.py``) against hand-worked
numbers and an independent scalar-Python loop (docs/design.md#core-equations), plus gradchecks.

The scalar loops below use plain Python floats and ``math`` only, one (batch, head)
at a time, so they share no code (and no broadcasting conventions) with the ops.
"""

from __future__ import annotations

import math

import pytest
import torch

from agents.kernels import SRWM_KEYS, delta_rule, linear_attention, srwm
from agents.kernels.delta_rule.reference import delta_rule_reference
from agents.kernels.linear_attention.reference import linear_attention_reference
from agents.kernels.srwm.reference import srwm_reference

torch.set_num_threads(1)
F64 = torch.float64
LN3 = math.log(3.0)


# ----------------------------------------------------------------------------- scalar references

def _matvec(M, x):
    return [sum(M[i][j] * x[j] for j in range(len(x))) for i in range(len(M))]


def _softmax(z):
    m = max(z)
    e = [math.exp(a - m) for a in z]
    s = sum(e)
    return [a / s for a in e]


def _sigmoid(a):
    return 1.0 / (1.0 + math.exp(-a))


def delta_rule_scalar(q, k, v, beta, S0, reset, additive=False):
    """One (b, h): q, k [T][Dk], v [T][Dv], beta [T], S0 [Dk][Dv], reset [T] -> outs [T][Dv], S."""
    S = [row[:] for row in S0]
    Dk, Dv = len(S), len(S[0])
    outs = []
    for t in range(len(q)):
        if reset[t]:
            S = [[0.0] * Dv for _ in range(Dk)]
        if additive:
            upd = v[t]
        else:
            v_old = [sum(S[i][j] * k[t][i] for i in range(Dk)) for j in range(Dv)]
            upd = [beta[t] * (v[t][j] - v_old[j]) for j in range(Dv)]
        for i in range(Dk):
            for j in range(Dv):
                S[i][j] += k[t][i] * upd[j]
        outs.append([sum(S[i][j] * q[t][i] for i in range(Dk)) for j in range(Dv)])
    return outs, S


def srwm_scalar(x, W_slow, dW0, reset):
    """One (b, h): x [T][D]; W_slow, dW0: {name: matrix}. Returns ys [T][Dy] and the final dW."""
    W = {n: [[W_slow[n][i][j] + dW0[n][i][j] for j in range(len(W_slow[n][0]))]
             for i in range(len(W_slow[n]))] for n in SRWM_KEYS}
    ys = []
    for t in range(len(x)):
        if reset[t]:
            W = {n: [row[:] for row in W_slow[n]] for n in SRWM_KEYS}
        y = _matvec(W["y"], x[t])
        q = _softmax(_matvec(W["q"], x[t]))
        k = _softmax(_matvec(W["k"], x[t]))
        b = [_sigmoid(a) for a in _matvec(W["b"], x[t])]
        qk = [qi - ki for qi, ki in zip(q, k)]
        diffs = {n: _matvec(W[n], qk) for n in SRWM_KEYS}            # all reads before any write
        for j, n in enumerate(SRWM_KEYS):
            for r in range(len(W[n])):
                for c in range(len(k)):
                    W[n][r][c] += b[j] * diffs[n][r] * k[c]
        ys.append(y)
    dW = {n: [[W[n][i][j] - W_slow[n][i][j] for j in range(len(W[n][0]))] for i in range(len(W[n]))]
          for n in SRWM_KEYS}
    return ys, dW


def t64(data):
    return torch.tensor(data, dtype=F64)


# ----------------------------------------------------------------------------- hand-worked cases

def _hand_delta_inputs():
    # B = H = 1, D = 2, T = 2 (shapes [T, B, H, D]).
    q = t64([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])
    k = t64([[[[1.0, 0.0]]], [[[0.5, 0.5]]]])
    v = t64([[[[2.0, 3.0]]], [[[1.0, 1.0]]]])
    beta = t64([[[0.5]], [[1.0]]])
    S0 = torch.zeros(1, 1, 2, 2, dtype=F64)
    return q, k, v, beta, S0


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_delta_rule_hand_worked(backend):
    q, k, v, beta, S0 = _hand_delta_inputs()
    out, S = delta_rule(q, k, v, beta, S0, torch.zeros(2, 1, dtype=torch.bool), backend=backend)
    # t=0: v_old = 0; S = k (0.5 [2, 3])^T = [[1, 1.5], [0, 0]]; out = S^T q = [1, 1.5]
    #      (reading BEFORE the write would give [0, 0]).
    # t=1: v_old = S^T k = [0.5, 0.75]; delta = 1 * ([1, 1] - v_old) = [0.5, 0.25];
    #      S += [0.5, 0.5]^T delta = [[1.25, 1.625], [0.25, 0.125]]; out = S^T [0, 1] = [0.25, 0.125].
    torch.testing.assert_close(out[:, 0, 0], t64([[1.0, 1.5], [0.25, 0.125]]), rtol=0, atol=1e-15)
    torch.testing.assert_close(S[0, 0], t64([[1.25, 1.625], [0.25, 0.125]]), rtol=0, atol=1e-15)

    # A reset before t=1 empties S: v_old = 0, delta = [1, 1], S = [[.5, .5], [.5, .5]], out = [.5, .5].
    out_r, S_r = delta_rule(q, k, v, beta, S0, torch.tensor([[False], [True]]), backend=backend)
    torch.testing.assert_close(out_r[:, 0, 0], t64([[1.0, 1.5], [0.5, 0.5]]), rtol=0, atol=1e-15)
    torch.testing.assert_close(S_r[0, 0], t64([[0.5, 0.5], [0.5, 0.5]]), rtol=0, atol=1e-15)


def test_linear_attention_hand_worked():
    q, k, v, _, S0 = _hand_delta_inputs()
    out, S = linear_attention(q, k, v, S0, torch.zeros(2, 1, dtype=torch.bool))
    # t=0: S = [1, 0]^T [2, 3] = [[2, 3], [0, 0]]; out = S^T [1, 0] = [2, 3] (read after write).
    # t=1: S += [0.5, 0.5]^T [1, 1] -> [[2.5, 3.5], [0.5, 0.5]]; out = S^T [0, 1] = [0.5, 0.5].
    torch.testing.assert_close(out[:, 0, 0], t64([[2.0, 3.0], [0.5, 0.5]]), rtol=0, atol=1e-15)
    torch.testing.assert_close(S[0, 0], t64([[2.5, 3.5], [0.5, 0.5]]), rtol=0, atol=1e-15)
    # With S0 = ones and a reset at t=0 the initial state is ignored.
    out_r, _ = linear_attention(q, k, v, torch.ones_like(S0), torch.tensor([[True], [False]]))
    torch.testing.assert_close(out_r, out, rtol=0, atol=1e-15)


def _hand_srwm_inputs():
    # B = H = 1, D = Dy = 2, T = 2. x is already a distribution (the op does not softmax it).
    x = t64([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])                          # [T, B, H, D]
    W = {"y": t64([[[1.0, 2.0], [3.0, 4.0]]]),                         # [H, Dy, D]
         "q": t64([[[0.0, 0.0], [LN3, 0.0]]]),                         # W^q x0 = [0, ln 3]
         "k": t64([[[LN3, 0.0], [0.0, 0.0]]]),                         # W^k x0 = [ln 3, 0]
         "b": torch.zeros(1, 4, 2, dtype=F64)}                         # b0 = sigmoid(0) = 1/2
    dW0 = {n: torch.zeros(1, *W[n].shape, dtype=F64) for n in SRWM_KEYS}
    return x, W, dW0


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_srwm_hand_worked(backend):
    x, W, dW0 = _hand_srwm_inputs()
    # t=0: q = softmax([0, ln3]) = [1/4, 3/4]; k = softmax([ln3, 0]) = [3/4, 1/4]; b = 1/2;
    #      q - k = [-1/2, 1/2].  y0 = W^y x0 = [1, 3]  (weights BEFORE the write).
    #      W^y (q - k) = [1/2, 1/2] -> dW^y = 1/2 [1/2, 1/2]^T [3/4, 1/4] = [[3/16, 1/16], [3/16, 1/16]]
    #      W^q (q - k) = [0, -ln3/2] -> dW^q = [[0, 0], [-3 ln3/16, -ln3/16]]
    #      W^k (q - k) = [-ln3/2, 0] -> dW^k = [[-3 ln3/16, -ln3/16], [0, 0]];  dW^b = 0.
    y1, d1 = srwm(x[:1], W, dW0, torch.zeros(1, 1, dtype=torch.bool), backend=backend)
    torch.testing.assert_close(y1[0, 0, 0], t64([1.0, 3.0]), rtol=0, atol=1e-15)
    torch.testing.assert_close(d1["y"][0, 0], t64([[3 / 16, 1 / 16], [3 / 16, 1 / 16]]), rtol=0, atol=1e-15)
    torch.testing.assert_close(d1["q"][0, 0], t64([[0, 0], [-3 * LN3 / 16, -LN3 / 16]]), rtol=0, atol=1e-15)
    torch.testing.assert_close(d1["k"][0, 0], t64([[-3 * LN3 / 16, -LN3 / 16], [0, 0]]), rtol=0, atol=1e-15)
    torch.testing.assert_close(d1["b"][0, 0], torch.zeros(4, 2, dtype=F64), rtol=0, atol=1e-15)

    # t=1: y1 = (W^y + dW^y) x1 = column 1 of [[1 3/16, 2 1/16], [3 3/16, 4 1/16]] = [2.0625, 4.0625].
    y, _ = srwm(x, W, dW0, torch.zeros(2, 1, dtype=torch.bool), backend=backend)
    torch.testing.assert_close(y[:, 0, 0], t64([[1.0, 3.0], [2.0625, 4.0625]]), rtol=0, atol=1e-15)

    # Carrying the difference: starting at t=1 from dW after t=0 gives the same y1; a reset
    # before t=1 reads the slow weights again: y1 = W^y x1 = [2, 4].
    y_carry, _ = srwm(x[1:], W, d1, torch.zeros(1, 1, dtype=torch.bool), backend=backend)
    torch.testing.assert_close(y_carry[0], y[1], rtol=0, atol=1e-15)
    y_reset, _ = srwm(x, W, dW0, torch.tensor([[False], [True]]), backend=backend)
    torch.testing.assert_close(y_reset[:, 0, 0], t64([[1.0, 3.0], [2.0, 4.0]]), rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------- random cases vs scalar loops

RESETS = [[False, False], [True, False], [False, True], [True, True], [False, False]]   # [T=5, B=2]


def _random_delta_inputs(T=5, B=2, H=2, Dk=3, Dv=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.softmax(torch.randn(T, B, H, Dk, generator=g, dtype=F64), -1)
    k = torch.softmax(torch.randn(T, B, H, Dk, generator=g, dtype=F64), -1)
    v = torch.randn(T, B, H, Dv, generator=g, dtype=F64)
    beta = torch.sigmoid(torch.randn(T, B, H, generator=g, dtype=F64))
    S0 = torch.randn(B, H, Dk, Dv, generator=g, dtype=F64)
    return q, k, v, beta, S0


@pytest.mark.parametrize("additive", [False, True], ids=["delta_rule", "linear_attention"])
def test_delta_and_linear_attention_match_scalar_loop(additive):
    q, k, v, beta, S0 = _random_delta_inputs()
    reset = torch.tensor(RESETS)
    if additive:
        out, S = linear_attention(q, k, v, S0, reset)
    else:
        out, S = delta_rule(q, k, v, beta, S0, reset)
    T, B, H, _ = q.shape
    for b in range(B):
        for h in range(H):
            want_out, want_S = delta_rule_scalar(q[:, b, h].tolist(), k[:, b, h].tolist(), v[:, b, h].tolist(),
                                                 beta[:, b, h].tolist(), S0[b, h].tolist(),
                                                 reset[:, b].tolist(), additive=additive)
            torch.testing.assert_close(out[:, b, h], t64(want_out), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(S[b, h], t64(want_S), rtol=1e-12, atol=1e-12)


def _random_srwm_inputs(T=5, B=2, H=2, D=3, Dy=4, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.softmax(torch.randn(T, B, H, D, generator=g, dtype=F64), -1)
    shapes = {"y": (H, Dy, D), "q": (H, D, D), "k": (H, D, D), "b": (H, 4, D)}
    W = {n: torch.randn(*s, generator=g, dtype=F64) / math.sqrt(D) for n, s in shapes.items()}
    dW = {n: 0.3 * torch.randn(B, *s, generator=g, dtype=F64) for n, s in shapes.items()}
    if requires_grad:
        for t in [x, *W.values(), *dW.values()]:
            t.requires_grad_(True)
    return x, W, dW


def test_srwm_matches_scalar_loop():
    x, W, dW = _random_srwm_inputs()
    reset = torch.tensor(RESETS)
    y, dW_final = srwm(x, W, dW, reset)
    T, B, H, D = x.shape
    for b in range(B):
        for h in range(H):
            want_y, want_dW = srwm_scalar(x[:, b, h].tolist(), {n: W[n][h].tolist() for n in SRWM_KEYS},
                                          {n: dW[n][b, h].tolist() for n in SRWM_KEYS}, reset[:, b].tolist())
            torch.testing.assert_close(y[:, b, h], t64(want_y), rtol=1e-12, atol=1e-12)
            for n in SRWM_KEYS:
                torch.testing.assert_close(dW_final[n][b, h], t64(want_dW[n]), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- gradient through the state

def test_srwm_slow_weights_get_gradient_only_with_full_backprop():
    x, W, dW = _random_srwm_inputs(seed=1)
    reset = torch.zeros(5, 2, dtype=torch.bool)
    for detach, want_nonzero in ((False, True), (True, False)):
        Wp = {n: w.clone().requires_grad_(True) for n, w in W.items()}
        zero = {n: torch.zeros_like(t) for n, t in dW.items()}
        y, _ = srwm(x, Wp, zero, reset, detach_each_step=detach)
        (y * torch.linspace(-1, 1, y.numel(), dtype=F64).view_as(y)).sum().backward()
        assert Wp["y"].grad.abs().sum() > 0
        for n in ("q", "k", "b"):
            if want_nonzero:
                assert Wp[n].grad.abs().sum() > 1e-8, f"W^{n} has no gradient with full backprop"
            else:
                # None (not in the graph at all) or exactly zero
                assert Wp[n].grad is None or torch.equal(Wp[n].grad, torch.zeros_like(Wp[n])), \
                    f"W^{n} got a gradient with detach_each_step"


def test_delta_rule_detach_each_step_cuts_gradient_across_steps():
    q, k, v, beta, S0 = _random_delta_inputs()
    reset = torch.zeros(5, 2, dtype=torch.bool)
    for detach in (False, True):
        v_ = v.clone().requires_grad_(True)
        out, _ = delta_rule(q, k, v_, beta, S0, reset, detach_each_step=detach)
        out[-1].sum().backward()
        earlier = v_.grad[:-1].abs().sum()
        assert (earlier == 0) if detach else (earlier > 0)
        assert v_.grad[-1].abs().sum() > 0


# ----------------------------------------------------------------------------- gradcheck

GRADCHECK_RESET = torch.tensor([[False, True], [True, False], [False, False]])   # [T=3, B=2]


def test_gradcheck_delta_rule():
    q, k, v, beta, S0 = _random_delta_inputs(T=3, B=2, H=1, Dk=2, Dv=2, seed=3)
    inputs = [t.clone().requires_grad_(True) for t in (q, k, v, beta, S0)]

    def f(q, k, v, beta, S0):
        return delta_rule_reference(q, k, v, beta, S0, GRADCHECK_RESET)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)


def test_gradcheck_linear_attention():
    q, k, v, _, S0 = _random_delta_inputs(T=3, B=2, H=1, Dk=2, Dv=2, seed=4)
    inputs = [t.clone().requires_grad_(True) for t in (q, k, v, S0)]

    def f(q, k, v, S0):
        return linear_attention_reference(q, k, v, S0, GRADCHECK_RESET)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)


def test_gradcheck_srwm():
    x, W, dW = _random_srwm_inputs(T=3, B=2, H=1, D=2, Dy=3, seed=5, requires_grad=True)
    inputs = [x] + [W[n] for n in SRWM_KEYS] + [dW[n] for n in SRWM_KEYS]

    def f(x, Wy, Wq, Wk, Wb, dy, dq, dk, db):
        y, final = srwm_reference(x, dict(zip(SRWM_KEYS, (Wy, Wq, Wk, Wb))),
                                  dict(zip(SRWM_KEYS, (dy, dq, dk, db))), GRADCHECK_RESET)
        return (y,) + tuple(final[n] for n in SRWM_KEYS)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- bad input

def test_bad_reset_shape_and_backend_raise():
    q, k, v, beta, S0 = _random_delta_inputs()
    with pytest.raises(ValueError, match=r"reset must be \[T, B\]"):
        delta_rule(q, k, v, beta, S0, torch.zeros(5, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        delta_rule(q, k, v, beta, S0, torch.zeros(5, 2, dtype=torch.bool), backend="cuda")


# ----------------------------------------------------------------------------- gated delta rule, RDN, Delta RNN

@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_gated_delta_rule_hand_worked(backend):
    q, k, v, beta, S0 = _hand_delta_inputs()
    alpha = t64([[[0.5]], [[0.5]]])                                     # [T, B, H]
    out, S = delta_rule(q, k, v, beta, S0, torch.zeros(2, 1, dtype=torch.bool), alpha=alpha, backend=backend)
    # t=0: S' = 0.5 * 0; v_old = 0; S = k (0.5 [2, 3])^T = [[1, 1.5], [0, 0]]; out = [1, 1.5].
    # t=1: S' = 0.5 S = [[.5, .75], [0, 0]]; v_old = S'^T [.5, .5] = [.25, .375];
    #      delta = [1, 1] - v_old = [.75, .625]; S = S' + [.5, .5]^T delta = [[.875, 1.0625], [.375, .3125]];
    #      out = S^T [0, 1] = [.375, .3125]  (reading v_old from the undecayed S would give [.25, .125]).
    torch.testing.assert_close(out[:, 0, 0], t64([[1.0, 1.5], [0.375, 0.3125]]), rtol=0, atol=1e-15)
    torch.testing.assert_close(S[0, 0], t64([[0.875, 1.0625], [0.375, 0.3125]]), rtol=0, atol=1e-15)
    # A reset before t=1: the decay acts on an empty memory, as in the ungated case.
    out_r, S_r = delta_rule(q, k, v, beta, S0, torch.tensor([[False], [True]]), alpha=alpha, backend=backend)
    torch.testing.assert_close(out_r[:, 0, 0], t64([[1.0, 1.5], [0.5, 0.5]]), rtol=0, atol=1e-15)
    torch.testing.assert_close(S_r[0, 0], t64([[0.5, 0.5], [0.5, 0.5]]), rtol=0, atol=1e-15)
    # alpha = 1 is DeltaNet.
    q, k, v, beta, S0 = _random_delta_inputs()
    reset = torch.tensor(RESETS)
    want = delta_rule(q, k, v, beta, S0, reset, backend=backend)
    got = delta_rule(q, k, v, beta, S0, reset, alpha=torch.ones(5, 2, 2, dtype=F64), backend=backend)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-15)


def _hand_rec_delta_inputs():
    # B = H = d... d = 2, T = 1; q~ = 0, k~ = [0, ln3], v~ = [1, 2], b~ = 0.
    q = torch.zeros(1, 1, 1, 2, dtype=F64)
    k = t64([[[[0.0, LN3]]]])
    v = t64([[[[1.0, 2.0]]]])
    beta = torch.zeros(1, 1, 1, dtype=F64)
    R = {"q": t64([[[2 * LN3, 0.0], [0.0, 0.0]]]), "k": torch.zeros(1, 2, 2, dtype=F64),
         "v": t64([[[2.0, 0.0], [0.0, 0.0]]]), "b": torch.zeros(1, 2, dtype=F64)}
    state = {"S": torch.zeros(1, 1, 2, 2, dtype=F64), "y": t64([[[math.atanh(0.5), 0.0]]])}
    return q, k, v, beta, R, state


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_rec_delta_hand_worked(backend):
    from agents.kernels import rec_delta
    q, k, v, beta, R, state = _hand_rec_delta_inputs()
    y, fin = rec_delta(q, k, v, beta, R, state, torch.zeros(1, 1, dtype=torch.bool), backend=backend)
    # f = tanh(y_prev) = [.5, 0]:  q = softmax([0, 0] + f R_q) = softmax([ln3, 0]) = [3/4, 1/4];
    # k = softmax([0, ln3]) = [1/4, 3/4];  v = [1, 2] + f R_v = [2, 2];  beta = sigmoid(0) = 1/2.
    # S = k (1/2 [2, 2])^T = [[1/4, 1/4], [3/4, 3/4]];  y = S^T q = [3/8, 3/8].
    torch.testing.assert_close(y[0, 0, 0], t64([0.375, 0.375]), rtol=0, atol=1e-15)
    torch.testing.assert_close(fin["S"][0, 0], t64([[0.25, 0.25], [0.75, 0.75]]), rtol=0, atol=1e-15)
    torch.testing.assert_close(fin["y"], y[-1], rtol=0, atol=0)
    # A reset: y_prev = 0, so f = 0 and q = [1/2, 1/2], v = [1, 2]:
    # S = [1/4, 3/4]^T (1/2 [1, 2]) = [[1/8, 1/4], [3/8, 3/4]];  y = S^T q = [1/4, 1/2].
    y_r, fin_r = rec_delta(q, k, v, beta, R, state, torch.ones(1, 1, dtype=torch.bool), backend=backend)
    torch.testing.assert_close(y_r[0, 0, 0], t64([0.25, 0.5]), rtol=0, atol=1e-15)
    torch.testing.assert_close(fin_r["S"][0, 0], t64([[0.125, 0.25], [0.375, 0.75]]), rtol=0, atol=1e-15)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_delta_rnn_hand_worked(backend):
    from agents.kernels import delta_rnn
    z = t64([[[[0.25, LN3 - 0.5]]], [[[0.0, 0.0]]]])                  # [T=2, B, H, d=2]
    k = t64([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])
    v = t64([[[[2.0, 4.0]]], [[[1.0, 1.0]]]])
    beta = t64([[[0.5]], [[1.0]]])
    state = {"R": torch.zeros(1, 1, 2, 2, dtype=F64), "y": t64([[[LN3, 0.0]]])}
    y, fin = delta_rnn(z, k, v, beta, state, torch.zeros(2, 1, dtype=torch.bool), backend=backend)
    # t=0: s = softmax([ln3, 0]) = [3/4, 1/4];  R = [1, 0]^T (1/2 [2, 4]) = [[1, 2], [0, 0]];
    #      y = z + R^T s = [.25, ln3 - .5] + [3/4, 3/2] = [1, 1 + ln3]   (read after the write).
    # t=1: s = softmax([1, 1 + ln3]) = [1/4, 3/4];  v_old = R^T [0, 1] = 0;  R = [[1, 2], [1, 1]];
    #      y = 0 + R^T s = [1, 5/4].
    torch.testing.assert_close(y[:, 0, 0], t64([[1.0, 1.0 + LN3], [1.0, 1.25]]), rtol=0, atol=1e-14)
    torch.testing.assert_close(fin["R"][0, 0], t64([[1.0, 2.0], [1.0, 1.0]]), rtol=0, atol=1e-15)
    # A reset before t=1: R = 0 and y = 0, so s = [1/2, 1/2]; R = [[0, 0], [1, 1]]; y = [1/2, 1/2].
    y_r, fin_r = delta_rnn(z, k, v, beta, state, torch.tensor([[False], [True]]), backend=backend)
    torch.testing.assert_close(y_r[1, 0, 0], t64([0.5, 0.5]), rtol=0, atol=1e-15)
    torch.testing.assert_close(fin_r["R"][0, 0], t64([[0.0, 0.0], [1.0, 1.0]]), rtol=0, atol=1e-15)
    torch.testing.assert_close(fin_r["y"][0, 0], t64([0.5, 0.5]), rtol=0, atol=1e-15)


def test_recurrent_ops_refuse_bad_shapes():
    from agents.kernels import delta_rnn, rec_delta
    q, k, v, beta, R, state = _hand_rec_delta_inputs()
    reset = torch.zeros(1, 1, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"R\['b'\] must be \[1, 2\], got \[1, 3\]"):
        rec_delta(q, k, v, beta, dict(R, b=torch.zeros(1, 3, dtype=F64)), state, reset)
    rnn_state = {"R": torch.zeros(1, 1, 2, 2, dtype=F64), "y": torch.zeros(1, 1, 3, dtype=F64)}
    with pytest.raises(ValueError, match=r"state\['y'\] must be \[1, 1, 2\], got \[1, 1, 3\]"):
        delta_rnn(q, k, v, beta.squeeze(-1).unsqueeze(-1), rnn_state, reset)
    with pytest.raises(ValueError, match=r"alpha must be \[T, B, H\] = \[1, 1, 1\], got \[1, 1\]"):
        delta_rule(q, k, v, torch.rand(1, 1, 1, dtype=F64), state["S"], reset, alpha=torch.rand(1, 1))
