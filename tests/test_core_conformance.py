"""Conformance suite for every registered memory core (docs/design.md#core-contract).

Parametrised over ``list_cores()``, so a newly registered core inherits it, plus the
example core of the README's "Adding a memory core" section (its code block is executed here, so doc
and test cannot drift). Small sizes (hidden 16, 2 heads of 8, d_ff 32) in float64.

The second half checks the fast-weight cores' layer equations against a naive
per-step, per-row, per-head implementation written from docs/design.md#core-equations.
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import agents.core as core_module
from agents.core import StateSpec, core_option_names, list_cores, make_core

torch.set_num_threads(1)
F64 = torch.float64
INPUT_SIZE = 5
SMALL = dict(hidden_size=16, num_layers=2, num_heads=2, head_size=8, d_ff=32, dropout=0.0)
DOC = Path(__file__).resolve().parents[1] / "README.md"


def _load_doc_example_cores() -> dict:
    """Execute the example code block of the README's core section; return {name: class}.

    The global registry is restored afterwards, so the example core is only visible to
    the tests below (through :func:`registered`), not to other test modules.
    """
    text = DOC.read_text()
    m = re.search(r"<!-- conformance-example.*?-->\s*```python\n(.*?)```", text, re.S)
    assert m, f"{DOC} has no '<!-- conformance-example -->' python block"
    builtin = list_cores()                                     # load the built-in cores first
    before = dict(core_module._CORES)
    try:
        exec(compile(m.group(1), str(DOC), "exec"), {"__name__": "docs_adding_a_core_example"})
        added = {n: c for n, c in core_module._CORES.items() if n not in before}
    finally:
        core_module._CORES.clear()
        core_module._CORES.update(before)
    assert added and not set(added) & set(builtin), f"doc example registered {sorted(added)}"
    return added


DOC_CORES = _load_doc_example_cores()
CORES = list_cores() + sorted(DOC_CORES)


@contextlib.contextmanager
def registered(name: str):
    """Make the doc example core visible to make_core() for the duration of a test."""
    if name not in DOC_CORES:
        yield
        return
    core_module._CORES[name] = DOC_CORES[name]
    try:
        yield
    finally:
        core_module._CORES.pop(name, None)


def build(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    with registered(name):
        core = make_core(name, INPUT_SIZE, strict=False, **{**SMALL, **overrides})
    return core.to(F64).eval()


def has_memory(core) -> bool:
    return len(core.state_spec()) > 0


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def random_state(core, batch_size: int, seed: int = 1) -> dict:
    """A non-trivial state: the state after a warm-up unroll."""
    x = randn(6, batch_size, INPUT_SIZE, seed=seed)
    with torch.no_grad():
        _, state = core(x, core.initial_state(batch_size), torch.zeros(6, batch_size, dtype=torch.bool))
    return state


def run_steps(core, x, state, reset):
    """Call the core one step at a time, carrying the state."""
    outs = []
    for t in range(x.shape[0]):
        y, state = core(x[t:t + 1], state, reset[t:t + 1])
        outs.append(y)
    return torch.cat(outs), state


def assert_states_close(a: dict, b: dict, **tol):
    assert set(a) == set(b)
    for n in a:
        torch.testing.assert_close(a[n], b[n], msg=lambda m: f"state {n!r}: {m}", **tol)


# ============================================================================ contract

@pytest.mark.parametrize("name", CORES)
def test_state_matches_spec(name):
    core = build(name)
    spec = core.state_spec()
    assert isinstance(spec, StateSpec)
    state0 = core.initial_state(3)
    spec.check(state0, batch_size=3)
    y, state = core(randn(4, 3, INPUT_SIZE), state0, torch.zeros(4, 3, dtype=torch.bool))
    assert y.shape == (4, 3, core.output_size) and y.dtype == F64
    spec.check(state, batch_size=3)
    for n, t in state.items():
        assert t.dtype == F64, f"state {n!r} is {t.dtype}, parameters are float64"


@pytest.mark.parametrize("name", CORES)
def test_state_passed_in_is_not_modified(name):
    core = build(name)
    state = random_state(core, 3)
    copy = {n: t.clone() for n, t in state.items()}
    reset = torch.tensor([[True, False, False]] * 5)
    core(randn(5, 3, INPUT_SIZE), state, reset)
    for n in state:
        assert torch.equal(state[n], copy[n]), f"forward() modified state {n!r} in place"


@pytest.mark.parametrize("name", CORES)
def test_sequence_equals_step_by_step(name):
    core = build(name)
    T, B = 9, 3
    x = randn(T, B, INPUT_SIZE, seed=2)
    reset = torch.rand(T, B, generator=torch.Generator().manual_seed(3)) < 0.25
    reset[0, 0] = reset[4, 1] = True
    state = random_state(core, B)
    y_seq, s_seq = core(x, state, reset)
    y_step, s_step = run_steps(core, x, state, reset)
    torch.testing.assert_close(y_seq, y_step, rtol=1e-10, atol=1e-10)
    assert_states_close(s_seq, s_step, rtol=1e-10, atol=1e-10)


RESET_PATTERNS = {
    "t0": [0],
    "last": [7],
    "consecutive": [2, 3, 4],
    "random": None,
}


@pytest.mark.parametrize("pattern", RESET_PATTERNS)
@pytest.mark.parametrize("name", CORES)
def test_reset_equals_fresh_run(name, pattern):
    """After a reset at t the outputs equal a fresh run from the initial state starting at t."""
    core = build(name)
    T, B = 8, 3
    x = randn(T, B, INPUT_SIZE, seed=4)
    reset = torch.zeros(T, B, dtype=torch.bool)
    if RESET_PATTERNS[pattern] is None:
        reset = torch.rand(T, B, generator=torch.Generator().manual_seed(5)) < 0.3
        reset[1, 2] = True
    else:
        reset[RESET_PATTERNS[pattern], 1] = True                  # row 1 resets; rows 0, 2 do not
    state = random_state(core, B)
    y, final = core(x, state, reset)
    zeros_T = torch.zeros(T, 1, dtype=torch.bool)
    for b in range(B):
        starts = reset[:, b].nonzero().flatten().tolist()
        bounds = starts + [T]
        # Before the first reset: the continuation of the incoming state.
        first = bounds[0]
        if first > 0:
            row_state = {n: t[b:b + 1] for n, t in state.items()}
            want, _ = core(x[:first, b:b + 1], row_state, zeros_T[:first])
            torch.testing.assert_close(y[:first, b:b + 1], want, rtol=1e-10, atol=1e-10)
        # Every segment that starts with a reset equals a fresh run.
        for s, e in zip(starts, bounds[1:]):
            want, want_state = core(x[s:e, b:b + 1], core.initial_state(1), zeros_T[: e - s])
            torch.testing.assert_close(y[s:e, b:b + 1], want, rtol=1e-10, atol=1e-10,
                                       msg=lambda m: f"row {b}, segment [{s}, {e}): {m}")
            if e == T:
                assert_states_close({n: t[b:b + 1] for n, t in final.items()}, want_state,
                                    rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", CORES)
def test_state_carried_across_unroll_boundary(name):
    """T = 80 in one call equals 2 x 40 with the state carried (the learner's unrolls).

    Every core's forward() uses the state it is given, srwm_no_carry included: its reset
    at unroll starts is the runtime's job (tests/test_state_copy.py, tests/test_inference.py)."""
    core = build(name)
    T, B = 80, 2
    x = randn(T, B, INPUT_SIZE, seed=6)
    reset = torch.zeros(T, B, dtype=torch.bool)
    reset[0, :] = True
    reset[23, 0] = reset[61, 1] = True
    y_all, s_all = core(x, core.initial_state(B), reset)
    y1, s1 = core(x[:40], core.initial_state(B), reset[:40])
    y2, s2 = core(x[40:], s1, reset[40:])
    torch.testing.assert_close(y1, y_all[:40], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y2, y_all[40:], rtol=1e-10, atol=1e-10)
    assert_states_close(s2, s_all, rtol=1e-10, atol=1e-10)
    if has_memory(core):   # the carried state matters: the second half differs from a fresh start
        fresh, _ = core(x[40:], core.initial_state(B), reset[40:])
        assert not torch.allclose(y2[:21, 1], fresh[:21, 1]), "the carried state was not used"


def test_no_carry_core_is_flagged_for_the_runtime():
    """srwm_no_carry equals srwm inside a call; the runtime resets it at unroll starts."""
    assert build("srwm_no_carry").carries_state_across_unrolls is False
    assert build("srwm").carries_state_across_unrolls is True


# ============================================================================ gradients

@pytest.mark.parametrize("name", CORES)
def test_gradients_finite_and_reach_every_parameter(name):
    core = build(name).train()
    T, B = 6, 2
    x = randn(T, B, INPUT_SIZE, seed=8).requires_grad_(True)
    reset = torch.zeros(T, B, dtype=torch.bool)
    reset[3, 1] = True
    y, _ = core(x, random_state(core, B), reset)
    (y * randn(*y.shape, seed=9)).sum().backward()
    assert torch.isfinite(x.grad).all()
    for pname, p in core.named_parameters():
        assert p.grad is not None, f"parameter {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"parameter {pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"parameter {pname} got an all-zero gradient"


@pytest.mark.parametrize("name", CORES)
def test_gradient_stays_within_the_episode(name):
    """out[t] depends on inputs earlier in its episode (memory cores) and on nothing
    before a reset or in another batch row."""
    core = build(name)
    T, B, t_reset, t_out = 7, 2, 3, 6
    x = randn(T, B, INPUT_SIZE, seed=10).requires_grad_(True)
    reset = torch.zeros(T, B, dtype=torch.bool)
    reset[t_reset, 0] = True
    y, _ = core(x, random_state(core, B), reset)
    y[t_out, 0].sum().backward()
    g = x.grad.abs().sum(-1)                                    # [T, B]
    assert torch.all(g[:, 1] == 0), "gradient leaked into another batch row"
    assert torch.all(g[:t_reset, 0] == 0), "gradient crossed the episode boundary"
    assert g[t_out, 0] > 0
    if has_memory(core):
        assert torch.all(g[t_reset:t_out, 0] > 0), "no gradient to earlier steps of the same episode"
    else:
        assert torch.all(g[t_reset:t_out, 0] == 0), "a stateless core propagated gradient across steps"


@pytest.mark.parametrize("name", CORES)
def test_detach_each_step_cuts_gradient_across_steps(name):
    with registered(name):
        takes_option = "detach_each_step" in core_option_names(name)
    core = build(name, detach_each_step=True) if takes_option else build(name)
    if takes_option:
        assert core(randn(1, 1, INPUT_SIZE), core.initial_state(1),
                    torch.zeros(1, 1, dtype=torch.bool))[0].requires_grad
    elif has_memory(core):
        pytest.skip(f"core {name!r} does not take detach_each_step")
    T, B = 6, 2
    x = randn(T, B, INPUT_SIZE, seed=11).requires_grad_(True)
    y, _ = core(x, random_state(core, B), torch.zeros(T, B, dtype=torch.bool))
    y[-1].sum().backward()
    g = x.grad.abs().sum(-1)                                    # [T, B]
    assert torch.all(g[:-1] == 0), "gradient flowed across steps"
    assert torch.all(g[-1] > 0)


# ============================================================================ registry and options

def test_make_core_unknown_name_lists_known_cores():
    with pytest.raises(ValueError, match=r"unknown core 'nope'; known cores: .*deltanet.*srwm"):
        make_core("nope", INPUT_SIZE)


def test_builtin_cores_are_registered():
    assert {"ff", "lstm", "linear_transformer", "deltanet", "srwm", "fake_sr", "sr_delta",
            "srwm_no_carry", "srwm_paper"} <= set(list_cores())


@pytest.mark.parametrize("name", [n for n in list_cores()
                                  if {"hidden_size", "num_heads", "head_size"} <= set(core_option_names(n))])
def test_heads_times_head_size_must_equal_hidden_size(name):
    with pytest.raises(ValueError, match=r"num_heads x head_size must equal hidden_size, got 3 x 8 = 24 != 16"):
        make_core(name, INPUT_SIZE, hidden_size=16, num_heads=3, head_size=8)


@pytest.mark.parametrize("name", list_cores())
def test_bad_sizes_raise(name):
    with pytest.raises(ValueError, match=r"hidden_size must be a positive integer, got 0"):
        make_core(name, INPUT_SIZE, strict=False, hidden_size=0, num_heads=2, head_size=0)


def test_options_follow_the_paper_defaults():
    srwm = make_core("srwm", 257)
    assert srwm.output_size == 128 and len(srwm.layers) == 2
    layer = srwm.layers[0]
    assert (layer.num_heads, layer.head_size, layer.ff.fc1.out_features) == (8, 16, 512)
    assert make_core("lstm", 257).output_size == 256
    assert core_option_names("lstm") == ["hidden_size", "lstm_forget_bias", "lstm_input_norm"]
    assert "detach_each_step" not in core_option_names("fake_sr")
    # The IDSIA RL layer (srwm_paper): slow weights ~ N(0, 1/d), std over 4 * 8 * 16 * 16 entries,
    # x = softmax(h) with no LayerNorm.
    paper = make_core("srwm_paper", 257).layers[0]
    w = torch.cat([paper.W_y.flatten(), paper.W_q.flatten(), paper.W_k.flatten()])
    assert abs(w.std().item() - 1 / math.sqrt(16)) < 0.01
    assert abs(paper.W_b.mean().item()) < 0.05 and paper.norm is None
    # srwm's default (docs/srwm.md): LayerNorm before the input softmax, W^q and W^k 4x larger.
    assert layer.norm is not None and abs(layer.W_y.std().item() - 1 / math.sqrt(16)) < 0.02
    assert abs(torch.cat([layer.W_q.flatten(), layer.W_k.flatten()]).std().item() - 4 / math.sqrt(16)) < 0.05
    assert make_core("srwm", 257, srwm_input_norm="none", srwm_qk_init_scale=1.0).layers[0].norm is None


# ============================================================================ layer equations
# A naive implementation of docs/design.md#core-equations, one time step, batch row and head at a
# time, reading the core's parameters; it shares no code with agents/cores or the kernels.

def _ln(layer_norm, h):
    return F.layer_norm(h, h.shape, layer_norm.weight, layer_norm.bias, layer_norm.eps)


def _phi_norm(z):
    phi = F.elu(z) + 1
    return phi / (phi.sum() + 1e-5)


def _delta_write(S, k, v, beta):
    """S [d_k, d_v]; returns S + k (beta (v - S^T k))^T."""
    return S + torch.outer(k, beta * (v - S.t() @ k))


def naive_core(name, core, x, state, reset):
    T, B, _ = x.shape
    h_all = x @ core.input_proj.weight.t() + core.input_proj.bias          # [T, B, d_model]
    st = {n: t.clone() for n, t in state.items()}
    for li, layer in enumerate(core.layers):
        H, d = layer.num_heads, layer.head_size
        out = torch.empty_like(h_all)
        for t in range(T):
            for b in range(B):
                if reset[t, b]:
                    for n in st:
                        if n.startswith(f"layer{li}."):
                            st[n][b] = 0
                h = h_all[t, b]                                             # [d_model]
                heads = []
                for i in range(H):
                    hi = h[i * d:(i + 1) * d]                               # [d]
                    if name in ("deltanet", "linear_transformer"):
                        z = layer.slow.weight @ _ln(layer.norm, h)
                        per = z.shape[0] // H
                        zi = z[i * per:(i + 1) * per]
                        q, k, v = _phi_norm(zi[:d]), _phi_norm(zi[d:2 * d]), zi[2 * d:3 * d]
                        S = st[f"layer{li}.S"][b, i]
                        if name == "deltanet":
                            S = _delta_write(S, k, v, torch.sigmoid(zi[3 * d]))
                        else:
                            S = S + torch.outer(k, v)
                        st[f"layer{li}.S"][b, i] = S
                        heads.append(S.t() @ q)                             # read after write
                    elif name == "fake_sr":
                        heads.append(layer.W_y[i] @ hi)
                    else:                                                   # srwm(_paper, _no_carry), sr_delta
                        if getattr(layer, "norm", None) is not None:        # srwm_input_norm=layernorm
                            hi = _ln(layer.norm, h)[i * d:(i + 1) * d]
                        if layer.input_log_scale is not None:               # srwm_learn_input_scale
                            hi = hi * layer.input_log_scale[i].exp()
                        else:                                               # srwm_input_scale
                            hi = hi * layer.input_scale
                        xi = torch.softmax(hi, 0)
                        W = {m: getattr(layer, "W_" + m)[i] + st[f"layer{li}.W_{m}"][b, i] for m in "yqkb"}
                        y = W["y"] @ xi                                     # read before write
                        q = torch.softmax(W["q"] @ xi, 0)
                        k = torch.softmax(W["k"] @ xi, 0)
                        rates = torch.sigmoid(W["b"] @ xi)
                        for j, m in enumerate("yqkb"):
                            st[f"layer{li}.W_{m}"][b, i] += rates[j] * torch.outer(W[m] @ (q - k), k)
                        if name == "sr_delta":
                            qd, kd = torch.softmax(y[:d], 0), torch.softmax(y[d:2 * d], 0)
                            S = _delta_write(st[f"layer{li}.S"][b, i], kd, y[2 * d:3 * d], torch.sigmoid(y[3 * d]))
                            st[f"layer{li}.S"][b, i] = S
                            y = S.t() @ qd
                        heads.append(y)
                o = h + layer.out_proj.weight @ torch.cat(heads)
                ff = layer.ff
                z = torch.relu(ff.fc1.weight @ _ln(ff.norm, o) + ff.fc1.bias)
                out[t, b] = o + ff.fc2.weight @ z + ff.fc2.bias
        h_all = out
    return h_all, st


FAST_WEIGHT_CORES = ["deltanet", "linear_transformer", "srwm", "sr_delta", "fake_sr", "srwm_no_carry",
                     "srwm_paper"]
# Every srwm_* option (agents/cores/srwm.py), away from its default, on every SRWM-family core.
SRWM_OPTION_CASES = [dict(srwm_input_norm="none", srwm_qk_init_scale=1.0),
                     dict(srwm_input_scale=2.5, srwm_beta_init=-1.0),
                     dict(srwm_input_norm="none", srwm_learn_input_scale=True, srwm_input_scale=0.5)]


@pytest.mark.parametrize("options", [{}] + SRWM_OPTION_CASES,
                         ids=["default"] + [",".join(f"{k}={v}" for k, v in o.items()) for o in SRWM_OPTION_CASES])
@pytest.mark.parametrize("name", FAST_WEIGHT_CORES)
def test_layer_equations_match_naive_implementation(name, options):
    if options and name not in ("srwm", "sr_delta", "srwm_no_carry"):
        pytest.skip("srwm_* options are options of the SRWM family")
    core = build(name, seed=12, **options)
    if options.get("srwm_learn_input_scale"):
        with torch.no_grad():                                   # a learned scale away from its start
            for layer in core.layers:
                layer.input_log_scale.add_(randn(*layer.input_log_scale.shape, seed=19))
    T, B = 4, 2
    x = randn(T, B, INPUT_SIZE, seed=13)
    reset = torch.tensor([[False, True], [False, False], [True, False], [False, False]])
    state = random_state(core, B)
    y, final = core(x, state, reset)
    want_y, want_state = naive_core(name, core, x, state, reset)
    torch.testing.assert_close(y, want_y, rtol=1e-10, atol=1e-10)
    assert_states_close(final, want_state, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["srwm", "sr_delta", "srwm_paper"])
def test_srwm_state_is_a_difference_so_slow_weight_updates_show_at_once(name):
    """A learner update of the slow weights changes the very next step of a running episode."""
    core = build(name, seed=14)
    x = randn(6, 2, INPUT_SIZE, seed=15)
    no_reset = torch.zeros(3, 2, dtype=torch.bool)
    _, carried = core(x[:3], core.initial_state(2), no_reset)
    assert any(t.abs().sum() > 0 for n, t in carried.items() if ".W_" in n)
    with torch.no_grad():                                       # the "learner update"
        for layer in core.layers:
            for w in (layer.W_y, layer.W_q, layer.W_k, layer.W_b):
                w.add_(0.05 * randn(*w.shape, seed=16))
    y, _ = core(x[3:], carried, no_reset)
    want, _ = naive_core(name, core, x[3:], carried, no_reset)  # W = new slow weights + carried DW
    torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("norm", ["layernorm", "none"])
def test_lstm_matches_lstm_cell_loop(norm):
    """The LSTM over an unroll with resets equals an LSTMCell stepped one time step at a
    time, after a LayerNorm written out here (a random gain and shift) or with none."""
    core = build("lstm", seed=17, lstm_input_norm=norm)
    T, B = 5, 3
    x = randn(T, B, INPUT_SIZE, seed=18)
    if norm == "layernorm":
        with torch.no_grad():
            core.input_norm.weight.copy_(1 + 0.3 * randn(INPUT_SIZE, seed=19))
            core.input_norm.bias.copy_(0.3 * randn(INPUT_SIZE, seed=20))
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        x_in = (x - mean) / torch.sqrt(var + core.input_norm.eps) * core.input_norm.weight.detach() \
            + core.input_norm.bias.detach()
    else:
        assert not list(core.input_norm.parameters())          # 'none' adds no weights
        x_in = x
    reset = torch.tensor([[False, True, False], [False, False, False], [True, False, False],
                          [False, False, True], [False, True, False]])
    state = random_state(core, B)
    y, final = core(x, state, reset)
    cell = torch.nn.LSTMCell(INPUT_SIZE, core.hidden_size).to(F64)
    lstm = core.lstm
    with torch.no_grad():
        cell.weight_ih.copy_(lstm.weight_ih_l0); cell.weight_hh.copy_(lstm.weight_hh_l0)
        cell.bias_ih.copy_(lstm.bias_ih_l0); cell.bias_hh.copy_(lstm.bias_hh_l0)
    h, c = state["h"], state["c"]
    for t in range(T):
        keep = (~reset[t]).to(F64).unsqueeze(-1)
        h, c = cell(x_in[t], (h * keep, c * keep))
        torch.testing.assert_close(y[t], h, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(final["c"], c, rtol=1e-10, atol=1e-10)


def test_lstm_forget_gate_bias_starts_at_the_option():
    """Gate order i, f, g, o: the forget rows of b_ih + b_hh equal the option; the other
    gates keep PyTorch's uniform(-1/sqrt(H), 1/sqrt(H)) draws."""
    H = 32
    for value in (1.0, 0.0, -0.5):
        lstm = make_core("lstm", INPUT_SIZE, hidden_size=H, lstm_forget_bias=value).lstm
        total = lstm.bias_ih_l0 + lstm.bias_hh_l0                          # [4H]
        assert torch.equal(total[H:2 * H], torch.full((H,), value))
        others = torch.cat([total[:H], total[2 * H:]])
        assert others.abs().max() <= 2 / H ** 0.5 and others.std() > 0.05
    torch.manual_seed(3)
    a = make_core("lstm", INPUT_SIZE, hidden_size=H).lstm
    torch.manual_seed(3)
    b = torch.nn.LSTM(INPUT_SIZE, H)                                        # the same draws, untouched
    assert torch.equal(a.weight_ih_l0, b.weight_ih_l0) and torch.equal(a.weight_hh_l0, b.weight_hh_l0)
    assert torch.equal(a.bias_ih_l0[2 * H:], b.bias_ih_l0[2 * H:]) and not torch.equal(a.bias_ih_l0, b.bias_ih_l0)


def test_ff_core_is_relu_linear():
    core = build("ff")
    x = randn(3, 2, INPUT_SIZE)
    y, state = core(x, {}, torch.zeros(3, 2, dtype=torch.bool))
    torch.testing.assert_close(y, torch.relu(x @ core.fc.weight.t() + core.fc.bias), rtol=0, atol=1e-14)
    assert state == {} and core.initial_state(4) == {}


def test_srwm_with_the_paper_options_is_srwm_paper():
    from agents.cores.srwm import SRWM_PAPER_OPTIONS
    a = build("srwm", seed=20, **SRWM_PAPER_OPTIONS)
    b = build("srwm_paper", seed=20)
    assert a.state_dict().keys() == b.state_dict().keys()
    for n, t in a.state_dict().items():
        assert torch.equal(t, b.state_dict()[n]), n


@pytest.mark.parametrize("bad, match", [(dict(srwm_input_norm="rms"), "input_norm must be one of"),
                                        (dict(srwm_input_scale=0.0), "input_scale must be a positive"),
                                        (dict(srwm_qk_init_scale=-1.0), "qk_init_scale must be a positive"),
                                        (dict(srwm_beta_init=float("nan")), "beta_init must be a finite")])
def test_bad_srwm_options_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        make_core("srwm", INPUT_SIZE, **SMALL, **bad)


@pytest.mark.parametrize("name", ["srwm", "sr_delta"])
def test_srwm_options_act_outside_the_kernels(name):
    """The srwm_* options change the kernels' input x and the initialisation only: the
    default core gives the same outputs and gradients on the reference and the fused
    PyTorch kernels (the Triton kernels are checked against the same reference in
    tests/test_triton_kernels.py, on any x)."""
    results = []
    for backend in ("reference", "torch"):
        core = build(name, seed=21, srwm_learn_input_scale=True)
        for layer in core.layers:
            layer.kernel_backend = backend
        x = randn(5, 2, INPUT_SIZE, seed=22)
        reset = torch.tensor([[False, True], [False, False], [True, False], [False, False], [False, False]])
        y, state = core(x, random_state(core, 2), reset)
        grads = torch.autograd.grad(y.square().sum(), list(core.parameters()))
        results.append((y, state, grads))
    (y0, s0, g0), (y1, s1, g1) = results
    torch.testing.assert_close(y0, y1, rtol=1e-10, atol=1e-10)
    assert_states_close(s0, s1, rtol=1e-10, atol=1e-10)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
# ============================================================================ maths check
# A core that declares a per-step slow reference (MemoryCore.reference_forward: its
# equations one step at a time, without the fast ops) is compared with its fast path:
# outputs, final state and the gradients of the input, the initial state and every
# parameter, through resets (at t = 0, consecutive, at the last step, random).

REFERENCE_CORES = [n for n in CORES if n not in DOC_CORES and core_module.get_core_class(n).has_reference()]


def check_against_reference(core, seed: int = 30, T: int = 9, B: int = 3, rtol: float = 1e-9) -> None:
    """Raise AssertionError when the fast path and the core's per-step reference differ."""
    x = randn(T, B, INPUT_SIZE, seed=seed)
    reset = torch.zeros(T, B, dtype=torch.bool)
    reset[0, 0] = reset[4, 0] = reset[5, 0] = True              # t = 0 and two consecutive
    reset[T - 1, 1] = True                                      # the last step
    reset[:, 2] = torch.rand(T, generator=torch.Generator().manual_seed(seed)) < 0.3
    state0 = random_state(core, B)
    gen = torch.Generator().manual_seed(seed + 1)
    results = {}
    for path in ("fast", "reference"):
        xs = x.clone().requires_grad_(True)
        st = {n: t.clone().requires_grad_(True) for n, t in state0.items()}
        fn = core if path == "fast" else core.reference_forward
        y, fin = fn(xs, st, reset)
        if path == "fast":
            w_y = torch.randn(y.shape, generator=gen, dtype=F64)
            w_s = {n: torch.randn(t.shape, generator=gen, dtype=F64) for n, t in fin.items()}
        loss = (y * w_y).sum() + sum((t * w_s[n]).sum() for n, t in fin.items() if t.requires_grad)
        names = ["x"] + [f"state {n}" for n in st] + [f"parameter {n}" for n, _ in core.named_parameters()]
        tensors = [xs] + list(st.values()) + [p for _, p in core.named_parameters()]
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
        results[path] = {"output": y, **{f"final {n}": t for n, t in fin.items()},
                         **{f"grad of {n}": (torch.zeros_like(t) if g is None else g)
                            for n, t, g in zip(names, tensors, grads)}}
    fast, ref = results["fast"], results["reference"]
    assert set(fast) == set(ref), f"fast and reference paths give different states: {sorted(set(fast) ^ set(ref))}"
    for n in ref:
        torch.testing.assert_close(fast[n], ref[n], rtol=rtol, atol=rtol,
                                   msg=lambda m: f"{n}: fast path differs from the per-step reference: {m}")


@pytest.mark.parametrize("detach", [False, True], ids=["bptt", "detach_each_step"])
@pytest.mark.parametrize("name", REFERENCE_CORES)
def test_fast_path_matches_per_step_reference(name, detach):
    core = build(name, seed=21, detach_each_step=detach)
    check_against_reference(core)


def test_new_atari_paper_cores_declare_a_reference():
    assert {"gated_deltanet", "rec_delta", "delta_rnn"} <= set(REFERENCE_CORES)


def _buggy_gated_delta_rule(bug: str):
    """The gated delta rule with one planted bug (per step, plain PyTorch)."""
    def op(q, k, v, beta, state, reset, *, alpha, detach_each_step=False, backend="auto"):
        S, outs = state, []
        for t in range(q.shape[0]):
            S = torch.where(reset[t].view(-1, 1, 1, 1), torch.zeros_like(S), S)
            a = alpha[t][..., None, None]
            decayed = S * ((2 - a) if bug == "decay_above_1" else a)
            v_old = torch.einsum("bhkv,bhk->bhv", S if bug == "v_old_undecayed" else decayed, k[t])
            new = decayed + k[t].unsqueeze(-1) * (beta[t].unsqueeze(-1) * (v[t] - v_old)).unsqueeze(-2)
            outs.append(torch.einsum("bhkv,bhk->bhv", decayed if bug == "read_before_write" else new, q[t]))
            S = new
        return torch.stack(outs), S
    return op


@pytest.mark.parametrize("bug", ["v_old_undecayed", "decay_above_1", "read_before_write"])
def test_maths_check_catches_planted_bugs(bug, monkeypatch):
    """The bugs a user planted in a gated delta rule that the contract checks alone missed."""
    import agents.cores.gated_deltanet as gdn
    core = build("gated_deltanet", seed=22)
    check_against_reference(core)                                  # the real op passes
    monkeypatch.setattr(gdn, "delta_rule", _buggy_gated_delta_rule(bug))
    with pytest.raises(AssertionError, match="fast path differs from the per-step reference"):
        check_against_reference(core)
