"""Fast-weight diagnostics (``--core-diagnostics``): each scalar equals its definition on a
hand-built case (agents/cores/diagnostics.py), and turning them on or off changes nothing
in the outputs, states or gradients of a core, nor in a learner update."""

from __future__ import annotations

import math

import pytest
import torch

from agents.core import list_cores, make_core, set_core_diagnostics
from agents.cores.diagnostics import delta_diagnostics, lstm_diagnostics, srwm_diagnostics

torch.set_num_threads(1)
F64 = torch.float64
SMALL = dict(hidden_size=16, num_layers=2, num_heads=2, head_size=8, d_ff=32)


def test_srwm_scalars_on_a_hand_built_step():
    # One step, one head of D = 2: x uniform, W^y = I, W^q = [[2, 0], [0, 0]], W^k = W^b = 0.
    x = torch.tensor([0.5, 0.5], dtype=F64).view(1, 1, 1, 2)
    W = {"y": torch.eye(2, dtype=F64)[None], "q": torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=F64)[None],
         "k": torch.zeros(1, 2, 2, dtype=F64), "b": torch.zeros(1, 4, 2, dtype=F64)}
    delta = {n: torch.zeros(1, *w.shape, dtype=F64) for n, w in W.items()}
    d = srwm_diagnostics(x, W, delta, torch.zeros(1, 1, dtype=torch.bool))
    s = 1 / (1 + math.exp(-1))                       # q = softmax([1, 0]) = [s, 1 - s]; k = [1/2, 1/2]
    h_q = -(s * math.log(s) + (1 - s) * math.log(1 - s)) / math.log(2)
    # write = 1/2 (M (q - k)) k^T with M = [W^y; W^q; W^k; W^b]: |M (q - k)|^2 = 6 (s - 1/2)^2,
    # |k| = sqrt(1/2), |M|_F = sqrt(6)  ->  write_rel = 1/2 sqrt(1/2) |s - 1/2| (= dW_rel from DW = 0)
    write_rel = 0.5 * math.sqrt(0.5) * (s - 0.5)
    want = {"x_entropy": 1.0, "q_entropy": h_q, "k_entropy": 1.0, "qk_l1": 2 * (s - 0.5),
            "b_y": 0.5, "b_q": 0.5, "b_k": 0.5, "b_b": 0.5, "write_rel": write_rel, "dW_rel": write_rel}
    assert set(d) == set(want)
    for k, v in want.items():
        assert d[k] == pytest.approx(v, rel=1e-12, abs=1e-15), k


def test_srwm_dW_rel_is_the_carried_difference_after_resets():
    # A reset at the only step clears a non-zero incoming difference; W^q = W^k, so nothing is written.
    x = torch.full((1, 2, 1, 2), 0.5, dtype=F64)
    W = {"y": torch.eye(2, dtype=F64)[None], "q": torch.eye(2, dtype=F64)[None],
         "k": torch.eye(2, dtype=F64)[None], "b": torch.ones(1, 4, 2, dtype=F64)}
    delta = {n: torch.ones(2, *w.shape, dtype=F64) for n, w in W.items()}
    d = srwm_diagnostics(x, W, delta, torch.tensor([[True, False]]))
    assert d["qk_l1"] == 0 and d["write_rel"] == 0
    # row 0: reset, DW = 0; row 1: DW = ones (20 entries) against |W_slow|_F = sqrt(2 + 2 + 2 + 8)
    assert d["dW_rel"] == pytest.approx(0.5 * math.sqrt(20) / math.sqrt(14), rel=1e-12)
    # b = sigmoid(W^b x): row 0 (reset) W^b = 1 -> sigmoid(1); row 1 W^b = 1 + 1 -> sigmoid(2)
    assert d["b_y"] == pytest.approx((1 / (1 + math.exp(-1)) + 1 / (1 + math.exp(-2))) / 2, rel=1e-12)


def test_delta_scalars_on_a_hand_built_step():
    q = torch.tensor([1.0, 0.0], dtype=F64).view(1, 1, 1, 2)
    k = torch.tensor([0.6, 0.8], dtype=F64).view(1, 1, 1, 2)        # |k| = 1
    v = torch.tensor([3.0, 4.0], dtype=F64).view(1, 1, 1, 2)        # |v| = 5
    beta = torch.tensor([0.5], dtype=F64).view(1, 1, 1)
    d = delta_diagnostics(q, k, v, beta, torch.zeros(1, 1, 2, 2, dtype=F64), torch.zeros(1, 1, dtype=torch.bool))
    # S = 0: v_old = 0, write = k (beta v)^T with norm 1 * 2.5; S_T = that write
    assert d == pytest.approx({"beta": 0.5, "write_norm": 2.5, "S_norm": 2.5}, rel=1e-12)


def test_lstm_gate_means_on_a_hand_built_case():
    lstm = torch.nn.LSTM(3, 2).to(F64)
    with torch.no_grad():
        for p in lstm.parameters():
            p.zero_()
        lstm.bias_ih_l0.copy_(torch.tensor([1.0, 1.0, 2.0, 2.0, 0.5, 0.5, -1.0, -1.0]))
    x = torch.randn(4, 3, 3, dtype=F64)
    y, _ = lstm(x)
    d = lstm_diagnostics(lstm, x, y, torch.zeros(3, 2, dtype=F64), torch.zeros(4, 3, dtype=torch.bool))
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert d == pytest.approx({"gate_i": sig(1), "gate_f": sig(2), "gate_g": math.tanh(0.5),
                               "gate_o": sig(-1)}, rel=1e-12)


def test_mix_ratio_is_what_the_layer_adds_to_the_residual():
    core = make_core("fake_sr", 4, hidden_size=4, num_layers=1, num_heads=2, head_size=2, d_ff=8).to(F64)
    with torch.no_grad():
        core.input_proj.weight.copy_(torch.eye(4)); core.input_proj.bias.zero_()
        core.layers[0].W_y.copy_(torch.eye(2).expand(2, 2, 2))
        core.layers[0].out_proj.weight.copy_(3 * torch.eye(4))
    set_core_diagnostics(core, True)
    core(torch.randn(5, 2, 4, dtype=F64), {}, torch.zeros(5, 2, dtype=torch.bool))
    assert core.diagnostics() == pytest.approx({"layer0/mix_ratio": 3.0}, rel=1e-12)


def _run(core, x, state, reset):
    y, new = core(x, state, reset)
    loss = y.square().sum() + sum(t.square().sum() for t in new.values())
    grads = torch.autograd.grad(loss, list(core.parameters()) + [x], allow_unused=True)
    return y, new, grads


@pytest.mark.parametrize("name", [n for n in list_cores() if n not in ("ff",)])
def test_diagnostics_change_nothing_and_report_their_names(name):
    torch.manual_seed(0)
    core = make_core(name, 5, strict=False, **SMALL).to(F64)
    T, B = 6, 3
    x = torch.randn(T, B, 5, dtype=F64, requires_grad=True)
    reset = torch.zeros(T, B, dtype=torch.bool)
    reset[2, 1] = True
    state = {n: 0.1 * torch.randn_like(t) for n, t in core.initial_state(B).items()}
    y0, s0, g0 = _run(core, x, state, reset)
    assert core.diagnostics() == {}
    set_core_diagnostics(core, True)
    y1, s1, g1 = _run(core, x, state, reset)
    diag = core.diagnostics()
    assert sorted(diag) == sorted(core.diagnostic_names())
    assert all(math.isfinite(v) for v in diag.values())
    set_core_diagnostics(core, False)
    assert core.diagnostics() == {}
    assert torch.equal(y0, y1)
    for n in s0:
        assert torch.equal(s0[n], s1[n]), n
    for a, b in zip(g0, g1):
        assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("name", ["srwm", "sr_delta"])
def test_srwm_core_diagnostics_match_a_direct_call(name):
    torch.manual_seed(1)
    core = make_core(name, 5, strict=False, **SMALL).to(F64)
    set_core_diagnostics(core, True)
    T, B = 4, 2
    x = torch.randn(T, B, 5, dtype=F64)
    reset = torch.zeros(T, B, dtype=torch.bool)
    state = core.initial_state(B)
    core(x, state, reset)
    diag = core.diagnostics()
    layer = core.layers[0]
    xin = layer.input_map(core.input_proj(x))
    want = srwm_diagnostics(xin, layer.slow_weights(),
                            {n: state[f"layer0.W_{n}"] for n in "yqkb"}, reset)
    for k, v in want.items():
        assert diag[f"layer0/{k}"] == pytest.approx(v, rel=1e-12), k


def _one_update(core_diagnostics: bool):
    """One learner update of a small srwm agent on a fixed unroll of the memory task:
    (stats, parameters after it, learner, the policy logits [T+1, B, A] it was computed on)."""
    import copy

    from actors.actor import UnrollWriter
    from actors.buffers import BufferLayout, RolloutBuffers
    from actors.params import SharedParams
    from actors.policy import LocalPolicy
    from agents.model import ModelConfig, build_agent
    from envs import EnvConfig, describe_env, make_vec_env
    from learner.learner import Learner, LearnerConfig

    torch.manual_seed(0)
    env_cfg = EnvConfig(env="memory:3:2", seed=0)
    obs_spec, A, tasks = describe_env(env_cfg)
    agent = build_agent(ModelConfig(core="srwm", hidden_size=16, num_layers=1, num_heads=2, head_size=8,
                                    d_ff=32, feature_size=16), obs_spec, A, len(tasks))
    actor = copy.deepcopy(agent)
    env = make_vec_env(env_cfg, 4)
    policy = LocalPolicy(actor, 4, SharedParams(agent))
    bufs = RolloutBuffers(BufferLayout(1, 1, 4, 8), obs_spec.shape, obs_spec.dtype, A, actor.state_spec(),
                          share_memory=False)
    views, init = bufs.group_view(0)
    UnrollWriter(env, policy, 8).fill(views, init)
    env.close()
    batch, state = bufs.gather(torch.arange(4))
    learner = Learner(LearnerConfig(core_diagnostics=core_diagnostics, grad_norm_clip=0.5), agent,
                      total_steps=1000, steps_per_update=32)
    with torch.no_grad():        # the policy the update is computed on, for the entropy check
        logits = agent({k: batch[k] for k in ("obs", "reward", "done", "task")}, state)[0]["policy_logits"]
    stats = learner.step(batch, state)
    return stats, {n: p.detach().clone() for n, p in agent.named_parameters()}, learner, logits


def test_learner_logs_the_mean_policy_entropy_per_step():
    stats, _, _, logits = _one_update(core_diagnostics=False)
    expected = float(torch.distributions.Categorical(logits=logits[:-1]).entropy().mean())
    assert 0 < stats["entropy"] <= math.log(2) + 1e-6
    assert stats["entropy"] == pytest.approx(expected, rel=1e-5)


def test_learner_diagnostics_off_changes_nothing_and_group_norms_add_up():
    stats_off, params_off, learner_off, _ = _one_update(core_diagnostics=False)
    stats_on, params_on, learner_on, _ = _one_update(core_diagnostics=True)
    assert learner_off.diagnostic_columns() == []
    assert sorted(learner_on.diagnostic_columns()) == sorted(k for k in stats_on
                                                             if k.startswith(("core/", "grad_norm/")))
    for n in params_off:
        assert torch.equal(params_off[n], params_on[n]), n
    assert not any(k.startswith(("core/", "grad_norm/")) for k in stats_off)
    for k, v in stats_off.items():
        assert stats_on[k] == v, k
    groups = {k: v for k, v in stats_on.items() if k.startswith("grad_norm/")}
    assert {"grad_norm/encoder", "grad_norm/core.input_proj", "grad_norm/core.layer0.W_q",
            "grad_norm/heads"} <= set(groups)
    # the groups partition the parameters: their norms add up to the global norm before clipping
    assert stats_on["grad_norm"] > 0.5
    assert math.sqrt(sum(v * v for v in groups.values())) == pytest.approx(stats_on["grad_norm"], rel=1e-6)
    assert "core/layer0/q_entropy" in stats_on
