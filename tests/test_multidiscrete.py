"""MultiDiscrete action spaces: the factored categorical policy (agents/action_dist.py).

An action layout ``(n_1, ..., n_K)`` cuts the logits into K blocks, one categorical per
component; ``log pi = sum_k log pi_k`` (so V-trace's importance ratio is the product of
the components' ratios) and the entropy is the sum of the components' entropies. These
tests check the functions against hand computations, check that a one-component layout
is bit for bit the code that existed before layouts, and run the whole system (env
wrapper, rollout buffers, learner, checkpoint, evaluation) on a MultiDiscrete env.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agents import action_dist
from learner import vtrace
from learner.losses import entropy_loss, impala_loss, policy_gradient_loss

LAYOUT = (3, 2)


def _hand_log_softmax(xs):
    m = max(xs)
    z = math.log(sum(math.exp(x - m) for x in xs)) + m
    return [x - z for x in xs]


# -- the distribution against hand computations ----------------------------------------------

def test_log_prob_is_the_sum_of_component_log_softmaxes():
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0, 0.25],
                           [0.0, 0.0, 0.0, 3.0, -2.0]], dtype=torch.float64)      # [2, 5]
    actions = torch.tensor([[1, 0], [2, 1]])                                      # [2, 2]
    got = action_dist.log_prob(logits, actions, LAYOUT)                           # [2]
    want = [_hand_log_softmax([1.0, 2.0, 0.5])[1] + _hand_log_softmax([-1.0, 0.25])[0],
            _hand_log_softmax([0.0, 0.0, 0.0])[2] + _hand_log_softmax([3.0, -2.0])[1]]
    # written out: log(e^2 / (e + e^2 + e^0.5)) + log(e^-1 / (e^-1 + e^0.25)), log(1/3) + log(e^-2 / (e^3 + e^-2))
    assert want[1] == pytest.approx(math.log(1 / 3) + (-2.0 - math.log(math.exp(3.0) + math.exp(-2.0))), abs=1e-12)
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    # the joint probability is the product of the components'
    p = torch.softmax(logits[0, :3], -1)[1] * torch.softmax(logits[0, 3:], -1)[0]
    assert float(got[0].exp()) == pytest.approx(float(p), abs=1e-12)


def test_entropy_is_the_sum_of_component_entropies():
    logits = torch.tensor([1.0, 2.0, 0.5, -1.0, 0.25], dtype=torch.float64)
    h = 0.0
    for block in ([1.0, 2.0, 0.5], [-1.0, 0.25]):
        lp = _hand_log_softmax(block)
        h -= sum(math.exp(l) * l for l in lp)
    assert float(action_dist.entropy(logits, LAYOUT)) == pytest.approx(h, abs=1e-12)
    # uniform logits: ln 3 + ln 2 = ln 6, the entropy of the uniform joint policy over 6 actions
    assert float(action_dist.entropy(torch.zeros(5, dtype=torch.float64), LAYOUT)) == pytest.approx(math.log(6))
    # the loss is the negative entropy summed over [T, B]
    lg = logits.expand(2, 3, 5)
    assert float(entropy_loss(lg, action_dims=LAYOUT)) == pytest.approx(-6 * h, abs=1e-10)


def test_vtrace_inputs_are_summed_component_log_ratios():
    """log rho = sum_k (log pi_k(a_k) - log mu_k(a_k)), by hand, and the targets built from it."""
    target = torch.tensor([[[0.5, -0.5, 1.0, 0.0, 2.0]], [[0.0, 1.0, 0.0, -1.0, 1.0]]],
                          dtype=torch.float64)                                    # [T=2, B=1, 5]
    behaviour = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 0.0]], [[1.0, 0.0, -1.0, 0.5, 0.5]]],
                             dtype=torch.float64)
    actions = torch.tensor([[[2, 1]], [[1, 0]]])                                  # [2, 1, 2]
    hand = []
    for t, (a0, a1) in enumerate([(2, 1), (1, 0)]):
        tl, bl = target[t, 0].tolist(), behaviour[t, 0].tolist()
        hand.append(_hand_log_softmax(tl[:3])[a0] + _hand_log_softmax(tl[3:])[a1]
                    - _hand_log_softmax(bl[:3])[a0] - _hand_log_softmax(bl[3:])[a1])
    # t = 0: the behaviour is uniform, log mu = log(1/3) + log(1/2)
    assert hand[0] == pytest.approx(_hand_log_softmax([0.5, -0.5, 1.0])[2] + _hand_log_softmax([0.0, 2.0])[1]
                                    - math.log(1 / 6), abs=1e-12)
    discounts = torch.tensor([[0.9], [0.9]], dtype=torch.float64)
    rewards = torch.tensor([[1.0], [0.5]], dtype=torch.float64)
    values = torch.tensor([[0.2], [0.4]], dtype=torch.float64)
    boot = torch.tensor([0.3], dtype=torch.float64)
    out = vtrace.from_logits(behaviour, target, actions, discounts, rewards, values, boot,
                             clip_rho_threshold=None, clip_pg_rho_threshold=None, clip_c_threshold=None,
                             action_dims=LAYOUT)
    assert out.log_rhos[:, 0].tolist() == pytest.approx(hand, abs=1e-12)
    # the V-trace recursion by hand, unclipped: v_1 = V1 + rho1 (r1 + g V_T - V1), v_0 = ...
    rho = [math.exp(h) for h in hand]
    v1 = 0.4 + rho[1] * (0.5 + 0.9 * 0.3 - 0.4)
    v0 = 0.2 + rho[0] * (1.0 + 0.9 * 0.4 - 0.2) + 0.9 * rho[0] * (v1 - 0.4)
    assert out.vs[:, 0].tolist() == pytest.approx([v0, v1], abs=1e-12)
    assert out.pg_advantages[:, 0].tolist() == pytest.approx(
        [rho[0] * (1.0 + 0.9 * v1 - 0.2), rho[1] * (0.5 + 0.9 * 0.3 - 0.4)], abs=1e-12)
    # the policy-gradient loss uses the same summed log-probabilities
    adv = torch.tensor([[2.0], [-1.0]], dtype=torch.float64)
    pg = policy_gradient_loss(target, actions, adv, action_dims=LAYOUT)
    assert float(pg) == pytest.approx(-(2.0 * float(out.target_action_log_probs[0, 0])
                                        - 1.0 * float(out.target_action_log_probs[1, 0])), abs=1e-12)


def test_impala_loss_with_a_layout_checks_the_action_shape():
    T1, B = 4, 3
    gen = torch.Generator().manual_seed(0)
    outputs = {"policy_logits": torch.randn(T1, B, 5, generator=gen), "baseline": torch.randn(T1, B, generator=gen)}
    batch = {"policy_logits": torch.randn(T1, B, 5, generator=gen), "reward": torch.randn(T1, B, generator=gen),
             "done": torch.zeros(T1, B, dtype=torch.bool),
             "action": torch.stack([torch.randint(0, 3, (T1, B), generator=gen),
                                    torch.randint(0, 2, (T1, B), generator=gen)], dim=-1)}
    losses = impala_loss(outputs, batch, action_dims=LAYOUT)
    assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match=r"batch\['action'\] must be \[4, 3, 2\]"):
        impala_loss(outputs, dict(batch, action=batch["action"][..., 0]), action_dims=LAYOUT)
    with pytest.raises(ValueError, match=r"action layout \(3, 3\) needs 6"):
        impala_loss(outputs, batch, action_dims=(3, 3))
    bad = batch["action"].clone()
    bad[0, 0, 1] = 2
    with pytest.raises(ValueError, match=r"actions component 1 must lie in \[0, 2\).*got values in \[0, 2\]"):
        impala_loss(outputs, dict(batch, action=bad), action_dims=LAYOUT)


def test_greedy_and_sample_per_component():
    logits = torch.tensor([[0.0, 5.0, 1.0, 2.0, -2.0]])
    assert action_dist.greedy(logits, LAYOUT).tolist() == [[1, 0]]
    assert action_dist.greedy(logits[0], LAYOUT).tolist() == [1, 0]
    gen = torch.Generator().manual_seed(0)
    # component probabilities: [0.2, 0.5, 0.3] and [0.9, 0.1]
    lg = torch.log(torch.tensor([0.2, 0.5, 0.3, 0.9, 0.1], dtype=torch.float64)).expand(20000, 5)
    a = action_dist.sample(lg, LAYOUT, generator=gen)                               # [20000, 2]
    assert a.shape == (20000, 2) and a.dtype == torch.int64
    f0 = torch.bincount(a[:, 0], minlength=3).double() / 20000
    f1 = torch.bincount(a[:, 1], minlength=2).double() / 20000
    assert torch.allclose(f0, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), atol=0.015)
    assert torch.allclose(f1, torch.tensor([0.9, 0.1], dtype=torch.float64), atol=0.01)
    # independent components: the joint frequency of (1, 1) is 0.5 x 0.1
    assert float(((a[:, 0] == 1) & (a[:, 1] == 1)).double().mean()) == pytest.approx(0.05, abs=0.01)
    # [T, B, 5] -> [T, B, 2]; a non-finite component is sampled uniformly
    assert action_dist.sample(torch.zeros(3, 4, 5), LAYOUT).shape == (3, 4, 2)
    nan = torch.tensor([[float("nan"), 0.0, 0.0, 0.0, 0.0]])
    assert action_dist.sample(nan.expand(100, 5), LAYOUT)[:, 0].unique().numel() > 1


def test_layout_validation():
    assert action_dist.as_action_dims(4) == (4,)
    assert action_dist.as_action_dims(np.array([3, 2]).tolist()) == (3, 2)
    for bad in (0, (), (3, 0), (2.0,), True):
        with pytest.raises(ValueError, match="action layout"):
            action_dist.as_action_dims(bad)
    with pytest.raises(ValueError, match=r"logits have 4 entries.*layout \(3, 2\) needs 5"):
        action_dist.log_prob(torch.zeros(4), torch.tensor([0, 0]), LAYOUT)


# -- one component is the code that existed before layouts, bit for bit ----------------------

def _old_action_log_probs(policy_logits, actions):
    log_probs = F.log_softmax(policy_logits, dim=-1)
    return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def _old_neg_entropy(logits):
    log_pi = F.log_softmax(logits, dim=-1)
    return (log_pi.exp() * log_pi).sum(dim=-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_component_equals_the_old_formulas_exactly(dtype):
    gen = torch.Generator().manual_seed(3)
    T, B, A = 7, 5, 6
    logits = (3 * torch.randn(T, B, A, generator=gen)).to(dtype).requires_grad_()
    actions = torch.randint(0, A, (T, B), generator=gen)
    old_lp = _old_action_log_probs(logits, actions)
    new_lp = vtrace.action_log_probs(logits, actions, (A,))
    assert torch.equal(old_lp, new_lp) and torch.equal(new_lp, vtrace.action_log_probs(logits, actions))
    (g_old,) = torch.autograd.grad(old_lp.sum(), logits)
    (g_new,) = torch.autograd.grad(new_lp.sum(), logits)
    assert torch.equal(g_old, g_new)
    old_ent = _old_neg_entropy(logits).sum()
    new_ent = entropy_loss(logits)
    assert torch.equal(old_ent, new_ent) and torch.equal(new_ent, entropy_loss(logits, action_dims=(A,)))
    assert torch.equal(-_old_neg_entropy(logits), action_dist.entropy(logits, (A,)))
    (g_old,) = torch.autograd.grad(old_ent, logits)
    (g_new,) = torch.autograd.grad(new_ent, logits)
    assert torch.equal(g_old, g_new)
    assert torch.equal(logits.argmax(-1), action_dist.greedy(logits, (A,)))


def test_one_component_sampling_draws_what_the_old_code_drew():
    """The agent's sampling (float32, global generator) and the evaluation's (float64,
    one generator per episode, one row at a time) consume the generators as before."""
    gen = torch.Generator().manual_seed(5)
    logits = 2 * torch.randn(3, 4, 6, generator=gen)                               # [T, B, A]
    torch.manual_seed(11)
    probs = F.softmax(logits.detach().reshape(12, -1).float(), dim=-1)
    old = torch.multinomial(probs, 1).view(3, 4)
    torch.manual_seed(11)
    new = action_dist.sample(logits.detach().float(), (6,))
    assert torch.equal(old, new)
    rows = logits.reshape(12, 6).double()
    old_gens = [torch.Generator().manual_seed(i) for i in range(12)]
    new_gens = [torch.Generator().manual_seed(i) for i in range(12)]
    for _ in range(5):
        p = torch.softmax(rows, dim=-1)
        old = [int(torch.multinomial(p[i], 1, generator=g)) for i, g in enumerate(old_gens)]
        new = [int(action_dist.sample(rows[i], (6,), generator=g)) for i, g in enumerate(new_gens)]
        assert old == new


# -- the env wrapper, the env description, the agent ------------------------------------------

ENV_MODULE = "tests.multidiscrete_envs"
MATCH = f"gym:{ENV_MODULE}:FwrlMultiMatch-v0"
SMALL = dict(hidden_size=16, num_layers=1, num_heads=2, head_size=8, d_ff=32,
             feature_size=16)


def test_describe_env_carries_the_layout_and_the_wrapper_steps_int_arrays():
    from envs import EnvConfig, describe_env, make_vec_env
    desc = describe_env(EnvConfig(env=MATCH))
    obs_spec, num_actions, tasks = desc                          # still the 3-tuple callers unpack
    assert (obs_spec.shape, num_actions, desc.action_dims) == ((5,), 5, (3, 2))
    assert tasks == [f"{ENV_MODULE}:FwrlMultiMatch-v0"] and desc.task_names == tasks
    assert describe_env(EnvConfig(env="memory")).action_dims == (describe_env(EnvConfig(env="memory"))[1],)
    env = make_vec_env(EnvConfig(env=MATCH, seed=1), 3)
    assert env.action_dims == (3, 2) and env.num_actions == 5
    obs = env.reset()                                            # one-hot target [3 | 2]
    target = np.stack([obs[:, :3].argmax(1), obs[:, 3:].argmax(1)], axis=1)   # [3, 2]
    act = target.copy()
    act[2, 1] = 1 - act[2, 1]                                    # env 2 gets one component wrong
    _, reward, done, _ = env.step(act)
    assert reward.tolist() == [1.0, 1.0, 0.0] and not done.any()
    with pytest.raises(ValueError, match=r"actions have shape \(3,\), expected \(3, 2\) for the action layout"):
        env.step(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"action component 1 is 2, out of range \[0, 2\)"):
        env.step(np.array([[0, 0], [0, 2], [1, 1]]))
    env.close()


@pytest.mark.parametrize("other,space", [("FwrlMultiMatchFlat-v0", r"Discrete\(5\)"),
                                         ("FwrlMultiMatchSwapped-v0", r"MultiDiscrete\(\[2 3\]\)")])
def test_a_multitask_set_with_another_action_layout_is_refused_naming_both(other, space):
    from envs import EnvConfig, describe_env
    with pytest.raises(ValueError) as e:
        describe_env(EnvConfig(env=f"{MATCH},{ENV_MODULE}:{other}"))
    msg = str(e.value)
    assert "\n" not in msg
    assert f"tasks '{ENV_MODULE}:FwrlMultiMatch-v0' and '{ENV_MODULE}:{other}' have different action spaces" in msg
    import re
    assert re.search(rf"MultiDiscrete\(\[3 2\]\) vs {space}", msg), msg


def test_agent_acts_with_the_layout_and_records_it_in_its_architecture():
    from agents.model import ModelConfig, build_agent
    from envs import ObsSpec
    from learner.checkpoint import CheckpointError, check_architecture
    cfg = ModelConfig(core="lstm", **SMALL)
    torch.manual_seed(0)
    agent = build_agent(cfg, ObsSpec((5,), "float32"), 5, 1, (3, 2))
    inputs = {"obs": torch.randn(4, 6, 5), "reward": torch.zeros(4, 6), "done": torch.zeros(4, 6, dtype=torch.bool)}
    out, _ = agent(inputs, agent.initial_state(6), actions="sample")
    assert out["action"].shape == (4, 6, 2) and out["policy_logits"].shape == (4, 6, 5)
    assert out["action"][..., 0].max() < 3 and out["action"][..., 1].max() < 2
    out, _ = agent(inputs, agent.initial_state(6), actions="greedy")
    assert torch.equal(out["action"], action_dist.greedy(out["policy_logits"], (3, 2)))
    arch = agent.architecture()
    assert arch["action_dims"] == [3, 2] and arch["num_actions"] == 5
    # one head: no key, so checkpoints written before layouts (which lack it) still match
    flat = build_agent(cfg, ObsSpec((5,), "float32"), 5, 1).architecture()
    assert "action_dims" not in flat and flat == build_agent(cfg, ObsSpec((5,), "float32"), 5, 1, (5,)).architecture()
    assert {k: v for k, v in arch.items() if k != "action_dims"} == flat
    check_architecture(flat, build_agent(cfg, ObsSpec((5,), "float32"), 5).architecture())
    with pytest.raises(CheckpointError, match="differs in 'action_dims'"):
        check_architecture(flat, arch)
    with pytest.raises(ValueError, match=r"layout \(3, 3\) has 6 logits, not num_actions = 5"):
        build_agent(cfg, ObsSpec((5,), "float32"), 5, 1, (3, 3))


def test_inference_server_and_learner_rerun_with_a_layout():
    """--inference learner: the server's sampled actions [N, 2] reach the env and the
    rollout buffers; the learner's re-run reproduces the acting logits; the loss runs."""
    from actors.actor import UnrollWriter
    from actors.buffers import BufferLayout, RolloutBuffers
    from actors.config import ActorConfig
    from actors.inference import InferenceServer
    from agents.model import ModelConfig, build_agent
    from envs import EnvConfig, describe_env, make_vec_env
    torch.set_num_threads(1)
    obs_spec, A, tasks = desc = describe_env(EnvConfig(env=MATCH))
    torch.manual_seed(0)
    agent = build_agent(ModelConfig(core="lstm", **SMALL), obs_spec, A, 1, desc.action_dims)
    N, T, U = 3, 5, 3
    actor_cfg = ActorConfig(num_actors=1, envs_per_actor=N, batch_size=1, inference="learner",
                            inference_timeout_ms=2.0, heartbeat_timeout_s=30.0)
    layout = BufferLayout(1, U, N, T)
    bufs = RolloutBuffers(layout, obs_spec.shape, obs_spec.dtype, A, agent.state_spec(), share_memory=False,
                          action_dims=desc.action_dims)
    assert bufs.data["action"].shape == (N * U, T + 1, 2)
    server = InferenceServer(actor_cfg, agent, device="cpu", buffers=bufs)
    env = make_vec_env(EnvConfig(env=MATCH), N)
    server.start()
    try:
        client = server.client()
        client.connect(0, N)
        writer = UnrollWriter(env, client, T)
        for g in range(U):
            views, init = bufs.group_view(g)
            writer.fill(views, init, group=g)
    finally:
        server.stop()
        env.close()
    rows = torch.arange(N * U)
    batch, state = bufs.gather(rows)
    assert batch["action"].shape == (T + 1, N * U, 2)
    action_dist.check_actions(batch["action"], (3, 2))
    with torch.no_grad():
        out, _ = agent({k: batch[k] for k in ("obs", "reward", "done", "task")}, state)
    torch.testing.assert_close(out["policy_logits"], batch["policy_logits"], rtol=1e-5, atol=1e-5)
    losses = impala_loss(out, batch, action_dims=desc.action_dims)
    assert all(bool(torch.isfinite(v)) for v in losses.values())


def test_the_factored_policy_learns_both_components():
    """train_sync (the real actor and learner pieces, one process): reward 1 needs both
    components right; chance is 1/6 per step, one component alone gives at most 1/2.
    Measured (seeds 0-3, 10k steps, 6-17 s on 2 loaded cores): 0.80-0.98 per step."""
    from launch.sync_train import train_sync
    ret = train_sync("ff", 10_000, env=MATCH, last=100)
    per_step = ret / 8                                            # 8 steps per episode
    assert per_step > 0.6, ret


# -- the whole system: trainer, actor processes, checkpoint, evaluation ------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
TRAIN_ARGS = ["--env", MATCH, "--core", "ff", "--hidden-size", "16", "--feature-size", "16",
              "--envs-per-actor", "2", "--batch-size", "4", "--unroll-length", "10",
              "--learner-threads", "1", "--no-progress", "--log-interval-s", "0.5"]


def _train(tmp_path, *args, timeout=500):
    import os
    import subprocess
    import sys
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "launch.train", "--runs-dir", str(tmp_path), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_two_local_actors_then_evaluate(tmp_path):
    """launch.train with 2 actor processes on the MultiDiscrete env, its final evaluation,
    then the checkpoint loaded again and evaluated greedily in this process; evaluating
    it on an env of another action layout is refused in one line."""
    import json
    p = _train(tmp_path, "--name", "multi", *TRAIN_ARGS, "--num-actors", "2", "--total-steps", "400",
               "--eval-episodes", "4")
    assert p.returncode == 0, p.stderr[-3000:]
    run = tmp_path / "multi"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] >= 400
    episodes = (run / "episodes.csv").read_text().splitlines()[1:]
    assert len(episodes) > 10 and all(l.endswith(",8") for l in episodes)
    (ev_dir,) = (run / "eval").iterdir()
    assert len((ev_dir / "episodes.csv").read_text().splitlines()[1:]) == 4

    from learner.checkpoint import load_latest
    from learner.evaluation.loading import load_policy
    from learner.evaluation.plan import EvaluationInputError, resolve_tasks
    from learner.evaluation.runner import RunnerSettings, run_episodes
    from learner.evaluation.plan import NO_LEVELS, EpisodeJob
    payload, _ = load_latest(run)
    assert payload["architecture"]["action_dims"] == [3, 2]
    loaded = load_policy(run)
    assert loaded.action_dims == (3, 2) and loaded.agent.action_dims == (3, 2)
    tasks, family = resolve_tasks("", loaded)
    assert family == "gym" and [t.name for t in tasks] == [f"{ENV_MODULE}:FwrlMultiMatch-v0"]
    jobs = [EpisodeJob(index=i, game=tasks[0].name, split="", episode=i, env_spec=tasks[0].env_spec,
                       task_id=0, seed=i, level=NO_LEVELS) for i in range(3)]
    for greedy in (True, False):
        results = run_episodes(jobs, loaded, RunnerSettings(env_config=loaded.env, num_envs=2, greedy=greedy))
        assert [r.length for r in results] == [8, 8, 8]
        assert all(0 <= r.episode_return <= 8 for r in results)
    with pytest.raises(EvaluationInputError, match=r"has the action layout \(5,\) but the checkpoint's agent "
                                                   r"has \(3, 2\)"):
        resolve_tasks(f"gym:{ENV_MODULE}:FwrlMultiMatchFlat-v0", loaded)
    # launch.inspect_policy plays random actions of the layout and reports the summed entropy
    from launch.inspect_policy import main as inspect_main
    assert inspect_main([str(run), "--steps", "20", "--envs", "2"]) == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("transport", [["--backend", "ray"], ["--inference", "learner"]],
                         ids=["ray", "inference-learner"])
def test_ray_and_inference_server_paths_train(tmp_path, transport):
    """The Trainer in this process with 2 actors whose unrolls travel through Ray's object
    store, or whose actions come from the inference server (shared-memory slots)."""
    from agents.model import build_agent
    from envs import describe_env
    from launch.config import parse_config, validate_config
    from launch.trainer import Trainer
    torch.set_num_threads(1)
    cfg = parse_config([*TRAIN_ARGS, "--num-actors", "2", "--total-steps", "300", "--runs-dir", str(tmp_path),
                        "--name", "t", *transport])
    validate_config(cfg)
    obs_spec, A, tasks = desc = describe_env(cfg.env)
    torch.manual_seed(0)
    agent = build_agent(cfg.model, obs_spec, A, len(tasks), desc.action_dims)
    trainer = Trainer(cfg, tmp_path / "t", agent=agent, obs_spec=obs_spec, num_actions=A, task_names=tasks)
    summary = trainer.run()
    assert summary["status"] == "finished" and summary["steps"] >= 300, summary
    assert summary["actor_restarts"] == 0, summary


def test_bench_command_on_a_multidiscrete_env(tmp_path):
    """``python -m launch.bench`` env and learner phases: random actions and synthetic
    batches of the layout."""
    import json
    from launch.bench import main as bench_main
    out = tmp_path / "bench.json"
    rc = bench_main(["--env", MATCH, "--cores", "ff", "--phases", "env", "learner", "--seconds", "0.3",
                     "--warmup", "0.1", "--hidden-size", "16", "--feature-size", "16", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["env"]["env_sps"] > 0 and res["runs"][0]["learner"]["learner_updates"] >= 2
