"""Float64 ``torch.autograd.gradcheck`` of the reference fast-weight ops (docs/design.md#kernels).

The Triton kernels are tested against the gradients of these references
(tests/test_triton_kernels.py), so the references' own gradients must be right: here
they are checked against finite differences on tiny shapes, for every reset pattern the
kernel tests use (none, all, at t = 0, consecutive, at the last step, different in each
batch row), with Dk != Dv and an SR-Delta-shaped SRWM (Dy = 3D + 1), the initial state
and the slow weights included. The ``detach_each_step`` mode (no finite-difference
counterpart) is checked against an independent implementation of what the original
IDSIA learner did: the op called one step at a time from a Python loop, the state
detached after every step.
"""

from __future__ import annotations

import pytest
import torch

from agents.kernels import SRWM_KEYS
from agents.kernels.delta_rule.reference import delta_rule_reference
from agents.kernels.linear_attention.reference import linear_attention_reference
from agents.kernels.srwm.reference import srwm_reference

torch.set_num_threads(1)
F64 = torch.float64
T, B = 4, 2
RESETS = {                                          # bool [T, B], one column per batch row
    "none": [[0, 0], [0, 0], [0, 0], [0, 0]],
    "all": [[1, 1], [1, 1], [1, 1], [1, 1]],
    "t0_and_last": [[1, 0], [0, 0], [0, 0], [0, 1]],
    "consecutive": [[0, 0], [1, 0], [1, 1], [0, 1]],
}


def _reset(name: str) -> torch.Tensor:
    return torch.tensor(RESETS[name], dtype=torch.bool)


def _delta_inputs(H=1, Dk=2, Dv=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.softmax(torch.randn(T, B, H, Dk, generator=g, dtype=F64), -1)   # [T, B, H, Dk]
    k = torch.softmax(torch.randn(T, B, H, Dk, generator=g, dtype=F64), -1)   # [T, B, H, Dk]
    v = torch.randn(T, B, H, Dv, generator=g, dtype=F64)                      # [T, B, H, Dv]
    beta = torch.sigmoid(torch.randn(T, B, H, generator=g, dtype=F64))        # [T, B, H]
    S0 = torch.randn(B, H, Dk, Dv, generator=g, dtype=F64)                    # [B, H, Dk, Dv]
    return [t.requires_grad_(True) for t in (q, k, v, beta, S0)]


def _srwm_inputs(H=1, D=2, Dy=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = {"y": Dy, "q": D, "k": D, "b": 4}
    x = torch.softmax(torch.randn(T, B, H, D, generator=g, dtype=F64), -1)    # [T, B, H, D]
    W = {n: torch.randn(H, rows[n], D, generator=g, dtype=F64) / D ** 0.5 for n in SRWM_KEYS}
    dW = {n: 0.3 * torch.randn(B, H, rows[n], D, generator=g, dtype=F64) for n in SRWM_KEYS}
    for t in (x, *W.values(), *dW.values()):
        t.requires_grad_(True)
    return x, W, dW


def _srwm_flat(reset, detach=False):
    """srwm_reference as a function of positional tensors (for gradcheck)."""
    def f(x, Wy, Wq, Wk, Wb, dy, dq, dk, db):
        y, final = srwm_reference(x, dict(zip(SRWM_KEYS, (Wy, Wq, Wk, Wb))),
                                  dict(zip(SRWM_KEYS, (dy, dq, dk, db))), reset, detach_each_step=detach)
        return (y,) + tuple(final[n] for n in SRWM_KEYS)
    return f


# ----------------------------------------------------------------------------- finite differences


@pytest.mark.parametrize("pattern", sorted(RESETS))
def test_gradcheck_delta_rule(pattern):
    reset = _reset(pattern)
    inputs = _delta_inputs(Dk=2, Dv=3, seed=1)
    assert torch.autograd.gradcheck(lambda *a: delta_rule_reference(*a, reset), inputs, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("pattern", ["none", "consecutive"])
def test_gradcheck_linear_attention(pattern):
    reset = _reset(pattern)
    q, k, v, _, S0 = _delta_inputs(Dk=3, Dv=2, seed=2)
    assert torch.autograd.gradcheck(lambda *a: linear_attention_reference(*a, reset), (q, k, v, S0),
                                    eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("pattern", sorted(RESETS))
def test_gradcheck_srwm(pattern):
    x, W, dW = _srwm_inputs(D=2, Dy=3, seed=3)
    inputs = [x] + [W[n] for n in SRWM_KEYS] + [dW[n] for n in SRWM_KEYS]
    assert torch.autograd.gradcheck(_srwm_flat(_reset(pattern)), inputs, eps=1e-6, atol=1e-8)


def test_gradcheck_srwm_sr_delta_shape_two_heads():
    """SR-Delta's SRWM: W^y has 3D + 1 rows per head (q, k, v and beta of a fast memory)."""
    x, W, dW = _srwm_inputs(H=2, D=2, Dy=7, seed=4)
    inputs = [x] + [W[n] for n in SRWM_KEYS] + [dW[n] for n in SRWM_KEYS]
    assert torch.autograd.gradcheck(_srwm_flat(_reset("consecutive")), inputs, eps=1e-6, atol=1e-8,
                                    fast_mode=True)


# ----------------------------------------------------------------------------- detach_each_step


def _per_step_loop_delta(q, k, v, beta, S0, reset, additive=False):
    """The original learner: the op called with T = 1 from a Python loop, state detached."""
    S, outs = S0, []
    for t in range(q.shape[0]):
        sl = slice(t, t + 1)
        if additive:
            o, S = linear_attention_reference(q[sl], k[sl], v[sl], S, reset[sl])
        else:
            o, S = delta_rule_reference(q[sl], k[sl], v[sl], beta[sl], S, reset[sl])
        outs.append(o)
        S = S.detach()
    return torch.cat(outs), S


def _per_step_loop_srwm(x, W, dW, reset):
    ys = []
    for t in range(x.shape[0]):
        y, dW = srwm_reference(x[t:t + 1], W, dW, reset[t:t + 1])
        ys.append(y)
        dW = {n: a.detach() for n, a in dW.items()}
    return torch.cat(ys), dW


def _grads(out: torch.Tensor, inputs, seed=9) -> list:
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    grads = torch.autograd.grad((out * g).sum(), inputs, allow_unused=True)
    return [torch.zeros_like(i) if d is None else d for d, i in zip(grads, inputs)]


@pytest.mark.parametrize("pattern", ["none", "t0_and_last", "consecutive"])
@pytest.mark.parametrize("additive", [False, True], ids=["delta", "linear"])
def test_delta_detach_each_step_equals_per_step_loop(pattern, additive):
    reset = _reset(pattern)
    q, k, v, beta, S0 = _delta_inputs(Dk=3, Dv=2, seed=5)
    if additive:
        out, fin = linear_attention_reference(q, k, v, S0, reset, detach_each_step=True)
    else:
        out, fin = delta_rule_reference(q, k, v, beta, S0, reset, detach_each_step=True)
    out_loop, fin_loop = _per_step_loop_delta(q, k, v, beta, S0, reset, additive)
    torch.testing.assert_close(out, out_loop, rtol=0, atol=1e-14)
    torch.testing.assert_close(fin, fin_loop, rtol=0, atol=1e-14)
    assert not fin.requires_grad
    inputs = [q, k, v, S0] if additive else [q, k, v, beta, S0]
    for got, want in zip(_grads(out, inputs), _grads(out_loop, inputs)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("pattern", ["none", "t0_and_last", "consecutive"])
def test_srwm_detach_each_step_equals_per_step_loop(pattern):
    reset = _reset(pattern)
    x, W, dW = _srwm_inputs(D=3, Dy=2, seed=6)
    y, fin = srwm_reference(x, W, dW, reset, detach_each_step=True)
    y_loop, fin_loop = _per_step_loop_srwm(x, W, dW, reset)
    torch.testing.assert_close(y, y_loop, rtol=0, atol=1e-14)
    for n in SRWM_KEYS:
        torch.testing.assert_close(fin[n], fin_loop[n], rtol=0, atol=1e-14)
    inputs = [x] + [W[n] for n in SRWM_KEYS] + [dW[n] for n in SRWM_KEYS]
    got, want = _grads(y, inputs), _grads(y_loop, inputs)
    for name, a, b in zip(["x"] + [f"W_{n}" for n in SRWM_KEYS] + [f"dW_{n}" for n in SRWM_KEYS], got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14, msg=f"gradient of {name}")
    # and, as docs/design.md#gradient-through-the-state says, W^q, W^k, W^b learn nothing in this mode
    for n in ("q", "k", "b"):
        assert torch.equal(got[1 + SRWM_KEYS.index(n)], torch.zeros_like(W[n]))


# ----------------------------------------------------------------------------- gated delta rule, RDN, Delta RNN
# Both the per-step references and the whole-unroll torch forms (hand-written backward
# passes) against finite differences.

from agents.kernels.delta_rnn.reference import delta_rnn_reference  # noqa: E402
from agents.kernels.delta_rnn.torch_fused import delta_rnn_torch  # noqa: E402
from agents.kernels.delta_rule.torch_fused import delta_rule_torch  # noqa: E402
from agents.kernels.rec_delta.reference import rec_delta_reference  # noqa: E402
from agents.kernels.rec_delta.torch_fused import rec_delta_torch  # noqa: E402


def _gated_inputs(H=1, Dk=2, Dv=3, seed=0):
    q, k, v, beta, S0 = _delta_inputs(H=H, Dk=Dk, Dv=Dv, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    alpha = torch.sigmoid(torch.randn(T, B, H, generator=g, dtype=F64)).requires_grad_(True)
    return q, k, v, beta, S0, alpha


def _rec_delta_inputs(H=1, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: (0.7 * torch.randn(*s, generator=g, dtype=F64)).requires_grad_(True)   # noqa: E731
    return [r(T, B, H, d), r(T, B, H, d), r(T, B, H, d), r(T, B, H),
            r(H, d, d), r(H, d, d), r(H, d, d), r(H, d), r(B, H, d, d), r(B, H, d)]


def _rec_delta_flat(fn, reset, detach=False):
    def f(q, k, v, b, Rq, Rk, Rv, rb, S0, y0):
        y, fin = fn(q, k, v, b, {"q": Rq, "k": Rk, "v": Rv, "b": rb}, {"S": S0, "y": y0}, reset,
                    detach_each_step=detach)
        return y, fin["S"], fin["y"]
    return f


def _delta_rnn_inputs(H=1, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64)   # noqa: E731
    ins = [r(T, B, H, d), torch.softmax(r(T, B, H, d), -1), r(T, B, H, d), torch.sigmoid(r(T, B, H)),
           r(B, H, d, d), r(B, H, d)]
    return [t.requires_grad_(True) for t in ins]


def _delta_rnn_flat(fn, reset, detach=False):
    def f(z, k, v, b, R0, y0):
        y, fin = fn(z, k, v, b, {"R": R0, "y": y0}, reset, detach_each_step=detach)
        return y, fin["R"], fin["y"]
    return f


@pytest.mark.parametrize("impl", ["reference", "torch"])
@pytest.mark.parametrize("pattern", sorted(RESETS))
def test_gradcheck_gated_delta_rule(pattern, impl):
    reset = _reset(pattern)
    fn = delta_rule_reference if impl == "reference" else delta_rule_torch
    inputs = _gated_inputs(Dk=2, Dv=3, seed=7)
    assert torch.autograd.gradcheck(lambda q, k, v, b, s, a: fn(q, k, v, b, s, reset, alpha=a),
                                    inputs, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("impl", ["reference", "torch"])
@pytest.mark.parametrize("pattern", sorted(RESETS))
def test_gradcheck_rec_delta(pattern, impl):
    fn = rec_delta_reference if impl == "reference" else rec_delta_torch
    assert torch.autograd.gradcheck(_rec_delta_flat(fn, _reset(pattern)), _rec_delta_inputs(d=2, seed=8),
                                    eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("impl", ["reference", "torch"])
@pytest.mark.parametrize("pattern", sorted(RESETS))
def test_gradcheck_delta_rnn(pattern, impl):
    fn = delta_rnn_reference if impl == "reference" else delta_rnn_torch
    assert torch.autograd.gradcheck(_delta_rnn_flat(fn, _reset(pattern)), _delta_rnn_inputs(d=2, seed=9),
                                    eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("pattern", ["none", "t0_and_last", "consecutive"])
def test_recurrent_ops_detach_each_step_equals_per_step_loop(pattern):
    """detach_each_step: one call equals T calls of one step with the state detached in between."""
    reset = _reset(pattern)
    for base, flat, inputs in ((rec_delta_reference, _rec_delta_flat, _rec_delta_inputs(seed=10)),
                               (delta_rnn_reference, _delta_rnn_flat, _delta_rnn_inputs(seed=11))):
        seq_inputs, state = inputs[:-2], inputs[-2:]                # the state is (matrix, y)
        per_step = [t for t in seq_inputs if t.shape[:2] == (T, B)]
        fixed = [t for t in seq_inputs if t.shape[:2] != (T, B)]
        y, *fin = flat(base, reset, detach=True)(*inputs)
        outs, st = [], state
        for t in range(T):
            step = [a[t:t + 1] for a in per_step]
            y_t, *st = flat(base, reset[t:t + 1])(*step, *fixed, *st)
            outs.append(y_t)
            st = [s.detach() for s in st]
        torch.testing.assert_close(y, torch.cat(outs), rtol=0, atol=1e-14)
        for got, want in zip(_grads(y, inputs), _grads(torch.cat(outs), inputs)):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-14)
