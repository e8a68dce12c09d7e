"""The whole-unroll PyTorch forms (``backend="torch"``) against the per-step references:
outputs, final states and every gradient (inputs, initial state, slow weights), with
resets in the sequence and in ``detach_each_step`` mode."""

import pytest
import torch

from agents.kernels import SRWM_KEYS, delta_rule, linear_attention, srwm

F64 = torch.float64
PATTERNS = ["none", "all", "t0", "consecutive", "last", "random"]
# every reset pattern at T = 7; the long unroll with the patterns that differ there
CASES = [(1, "none"), (1, "all")] + [(7, p) for p in PATTERNS] + [(63, "random"), (63, "consecutive"), (63, "last")]


def make_reset(pattern, T, B, seed=0):
    r = torch.zeros(T, B, dtype=torch.bool)
    if pattern == "all":
        r[:] = True
    elif pattern == "t0":
        r[0] = True
    elif pattern == "consecutive":
        r[T // 2: T // 2 + 2, 0] = True
    elif pattern == "last":
        r[-1] = True
    elif pattern == "random":
        r = torch.rand(T, B, generator=torch.Generator().manual_seed(seed)) < 0.3
    return r


def grads(loss, tensors):
    g = torch.autograd.grad(loss, tensors, allow_unused=True)
    return [torch.zeros_like(t) if x is None else x for t, x in zip(tensors, g)]


@pytest.mark.parametrize("T,pattern", CASES)
@pytest.mark.parametrize("detach", [False, True])
def test_delta_rule_torch_matches_reference(T, pattern, detach):
    B, H, Dk, Dv = 2, 2, 4, 5
    g = torch.Generator().manual_seed(T)
    q = torch.softmax(torch.randn(T, B, H, Dk, generator=g, dtype=F64), -1).requires_grad_()
    k = torch.softmax(torch.randn(T, B, H, Dk, generator=g, dtype=F64), -1).requires_grad_()
    v = torch.randn(T, B, H, Dv, generator=g, dtype=F64).requires_grad_()
    beta = torch.rand(T, B, H, generator=g, dtype=F64).requires_grad_()
    s0 = torch.randn(B, H, Dk, Dv, generator=g, dtype=F64).requires_grad_()
    reset = make_reset(pattern, T, B)
    w_o = torch.randn(T, B, H, Dv, generator=g, dtype=F64)
    w_s = torch.randn(B, H, Dk, Dv, generator=g, dtype=F64)
    res = {}
    for backend in ("reference", "torch"):
        o, s = delta_rule(q, k, v, beta, s0, reset, detach_each_step=detach, backend=backend)
        loss = (o * w_o).sum() + (s * w_s).sum()
        res[backend] = [o, s] + grads(loss, [q, k, v, beta, s0])
    for a, b in zip(res["reference"], res["torch"]):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("T,pattern", CASES)
@pytest.mark.parametrize("detach", [False, True])
def test_linear_attention_torch_matches_reference(T, pattern, detach):
    B, H, Dk, Dv = 2, 2, 4, 5
    g = torch.Generator().manual_seed(T)
    q = torch.softmax(torch.randn(T, B, H, Dk, generator=g, dtype=F64), -1).requires_grad_()
    k = torch.softmax(torch.randn(T, B, H, Dk, generator=g, dtype=F64), -1).requires_grad_()
    v = torch.randn(T, B, H, Dv, generator=g, dtype=F64).requires_grad_()
    s0 = torch.randn(B, H, Dk, Dv, generator=g, dtype=F64).requires_grad_()
    reset = make_reset(pattern, T, B)
    w_o = torch.randn(T, B, H, Dv, generator=g, dtype=F64)
    w_s = torch.randn(B, H, Dk, Dv, generator=g, dtype=F64)
    res = {}
    for backend in ("reference", "torch"):
        o, s = linear_attention(q, k, v, s0, reset, detach_each_step=detach, backend=backend)
        loss = (o * w_o).sum() + ((s * w_s).sum() if s.requires_grad else 0)
        res[backend] = [o, s] + grads(loss, [q, k, v, s0])
    for a, b in zip(res["reference"], res["torch"]):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("T,pattern", CASES)
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("Dy", [4, 13])          # 13 = 3d + 1: the SR-Delta layout
def test_srwm_torch_matches_reference(T, pattern, detach, Dy):
    B, H, D = 2, 2, 4
    g = torch.Generator().manual_seed(T + Dy)
    x = torch.softmax(torch.randn(T, B, H, D, generator=g, dtype=F64), -1).requires_grad_()
    shapes = {"y": (H, Dy, D), "q": (H, D, D), "k": (H, D, D), "b": (H, 4, D)}
    W = {n: torch.randn(*s, generator=g, dtype=F64).requires_grad_() for n, s in shapes.items()}
    d0 = {n: (0.3 * torch.randn(B, *s, generator=g, dtype=F64)).requires_grad_() for n, s in shapes.items()}
    reset = make_reset(pattern, T, B)
    w_y = torch.randn(T, B, H, Dy, generator=g, dtype=F64)
    w_s = {n: torch.randn(B, *s, generator=g, dtype=F64) for n, s in shapes.items()}
    inputs = [x] + [W[n] for n in SRWM_KEYS] + [d0[n] for n in SRWM_KEYS]
    res = {}
    for backend in ("reference", "torch"):
        y, s = srwm(x, W, d0, reset, detach_each_step=detach, backend=backend)
        loss = (y * w_y).sum() + sum((s[n] * w_s[n]).sum() for n in SRWM_KEYS)
        res[backend] = [y] + [s[n] for n in SRWM_KEYS] + grads(loss, inputs)
    for a, b in zip(res["reference"], res["torch"]):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    if detach and T > 1:
        gW = res["torch"][6:10]          # W_y, W_q, W_k, W_b
        assert all(float(t.abs().max()) == 0.0 for t in gW[1:]), "detach: W^q, W^k, W^b must get no gradient"


def test_float32_inputs_keep_their_dtype_and_match():
    T, B, H, D = 9, 3, 2, 8
    x = torch.softmax(torch.randn(T, B, H, D), -1)
    W = {"y": torch.randn(H, D, D), "q": torch.randn(H, D, D), "k": torch.randn(H, D, D), "b": torch.randn(H, 4, D)}
    d0 = {n: torch.zeros(B, *w.shape) for n, w in W.items()}
    reset = make_reset("random", T, B)
    y_ref, s_ref = srwm(x, W, d0, reset, backend="reference")
    y, s = srwm(x, W, d0, reset, backend="torch")
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    for n in SRWM_KEYS:
        torch.testing.assert_close(s[n], s_ref[n], rtol=1e-5, atol=1e-6)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="nope"):
        delta_rule(*[torch.zeros(1, 1, 1, 2)] * 3, torch.zeros(1, 1, 1), torch.zeros(1, 1, 2, 2),
                   torch.zeros(1, 1, dtype=torch.bool), backend="nope")


# ----------------------------------------------------------------------------- gated delta rule, RDN, Delta RNN

def _compare_backends(run, inputs, rtol=1e-10, atol=1e-12):
    """run(backend) -> list of outputs (tensors, some possibly without grad); compare the
    outputs and the gradients of every input between reference and torch."""
    g = torch.Generator().manual_seed(99)
    res = {}
    for backend in ("reference", "torch"):
        outs = run(backend)
        if backend == "reference":
            weights = [torch.randn(o.shape, generator=g, dtype=F64) for o in outs]
        loss = sum((o * w).sum() for o, w in zip(outs, weights) if o.requires_grad)
        res[backend] = list(outs) + grads(loss, inputs)
    for i, (a, b) in enumerate(zip(res["reference"], res["torch"])):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=lambda m: f"item {i}: {m}")


@pytest.mark.parametrize("T,pattern", CASES)
@pytest.mark.parametrize("detach", [False, True])
def test_gated_delta_rule_torch_matches_reference(T, pattern, detach):
    B, H, Dk, Dv = 2, 2, 4, 5
    g = torch.Generator().manual_seed(T + 1)
    q = torch.nn.functional.normalize(torch.randn(T, B, H, Dk, generator=g, dtype=F64), dim=-1).requires_grad_()
    k = torch.nn.functional.normalize(torch.randn(T, B, H, Dk, generator=g, dtype=F64), dim=-1).requires_grad_()
    v = torch.randn(T, B, H, Dv, generator=g, dtype=F64).requires_grad_()
    beta = torch.rand(T, B, H, generator=g, dtype=F64).requires_grad_()
    alpha = torch.rand(T, B, H, generator=g, dtype=F64).requires_grad_()
    s0 = torch.randn(B, H, Dk, Dv, generator=g, dtype=F64).requires_grad_()
    reset = make_reset(pattern, T, B)
    _compare_backends(lambda be: delta_rule(q, k, v, beta, s0, reset, alpha=alpha, detach_each_step=detach,
                                            backend=be), [q, k, v, beta, s0, alpha])


@pytest.mark.parametrize("T,pattern", CASES)
@pytest.mark.parametrize("detach", [False, True])
def test_rec_delta_torch_matches_reference(T, pattern, detach):
    from agents.kernels import rec_delta
    B, H, d = 2, 2, 4
    g = torch.Generator().manual_seed(T + 2)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64).requires_grad_()   # noqa: E731
    q, k, v, beta = r(T, B, H, d), r(T, B, H, d), r(T, B, H, d), r(T, B, H)
    R = {"q": r(H, d, d), "k": r(H, d, d), "v": r(H, d, d), "b": r(H, d)}
    state = {"S": r(B, H, d, d), "y": r(B, H, d)}
    reset = make_reset(pattern, T, B)

    def run(be):
        y, fin = rec_delta(q, k, v, beta, R, state, reset, detach_each_step=detach, backend=be)
        return [y, fin["S"], fin["y"]]

    _compare_backends(run, [q, k, v, beta, *R.values(), *state.values()])


@pytest.mark.parametrize("T,pattern", CASES)
@pytest.mark.parametrize("detach", [False, True])
def test_delta_rnn_torch_matches_reference(T, pattern, detach):
    from agents.kernels import delta_rnn
    B, H, d = 2, 2, 4
    g = torch.Generator().manual_seed(T + 3)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64)   # noqa: E731
    z, v = r(T, B, H, d).requires_grad_(), r(T, B, H, d).requires_grad_()
    k = torch.softmax(r(T, B, H, d), -1).requires_grad_()
    beta = torch.rand(T, B, H, generator=g, dtype=F64).requires_grad_()
    state = {"R": r(B, H, d, d).requires_grad_(), "y": r(B, H, d).requires_grad_()}
    reset = make_reset(pattern, T, B)

    def run(be):
        y, fin = delta_rnn(z, k, v, beta, state, reset, detach_each_step=detach, backend=be)
        return [y, fin["R"], fin["y"]]

    _compare_backends(run, [z, k, v, beta, *state.values()])


def test_recurrent_ops_float32_keep_dtype():
    from agents.kernels import delta_rnn, rec_delta
    T, B, H, d = 9, 3, 2, 8
    g = torch.Generator().manual_seed(5)
    r = lambda *s: torch.randn(*s, generator=g)   # noqa: E731
    reset = make_reset("random", T, B)
    x = [r(T, B, H, d), r(T, B, H, d), r(T, B, H, d), r(T, B, H)]
    R = {"q": r(H, d, d), "k": r(H, d, d), "v": r(H, d, d), "b": r(H, d)}
    st = {"S": r(B, H, d, d), "y": r(B, H, d)}
    ref, _ = rec_delta(*x, R, st, reset, backend="reference")
    got, fin = rec_delta(*x, R, st, reset, backend="torch")
    assert got.dtype == torch.float32 and fin["S"].dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    args = [r(T, B, H, d), torch.softmax(r(T, B, H, d), -1), r(T, B, H, d), torch.rand(T, B, H, generator=g)]
    st2 = {"R": r(B, H, d, d), "y": r(B, H, d)}
    ref, _ = delta_rnn(*args, st2, reset, backend="reference")
    got, fin = delta_rnn(*args, st2, reset, backend="torch")
    assert got.dtype == torch.float32 and fin["R"].dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("T,pattern", [(1, "none"), (1, "all"), (7, "random"), (7, "consecutive")])
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("rule", ["delta", "linear"])
def test_torch_backend_without_autograd_equals_its_autograd_forward(T, pattern, gated, rule):
    # acting and evaluation take the no-grad path (nothing saved for a backward): same numbers, bit for bit
    if rule == "linear" and gated:
        pytest.skip("linear attention has no gate")
    B, H, Dk, Dv = 3, 2, 4, 5
    g = torch.Generator().manual_seed(T + 7)
    q = torch.nn.functional.normalize(torch.randn(T, B, H, Dk, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(T, B, H, Dk, generator=g), dim=-1)
    v, beta = torch.randn(T, B, H, Dv, generator=g), torch.rand(T, B, H, generator=g)
    alpha = torch.rand(T, B, H, generator=g) if gated else None
    s0 = torch.randn(B, H, Dk, Dv, generator=g)
    reset = make_reset(pattern, T, B)
    kw = dict(alpha=alpha) if gated else {}
    run = ((lambda *a: delta_rule(*a, backend="torch", **kw)) if rule == "delta"
           else (lambda q, k, v, beta, s, r: linear_attention(q, k, v, s, r, backend="torch")))
    with torch.no_grad():
        o_ng, s_ng = run(q, k, v, beta, s0, reset)
    o, s = run(q.requires_grad_(), k, v, beta, s0, reset)
    assert o.requires_grad and not o_ng.requires_grad
    assert torch.equal(o_ng, o.detach()) and torch.equal(s_ng, s.detach())
