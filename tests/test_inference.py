"""The inference server (``--inference learner``) on the CPU.

Reference: :class:`actors.policy.LocalPolicy` (actor-side inference) with the same
parameters and observations. Covered: identical actions, logits, baselines and core
states; several actors batched into one forward; partial batches closing on the
timeout or on the maximum batch size; forwards split at the maximum batch size;
state reset on ``done``; parameter updates; the learner re-running unrolls written
through the server from their ``initial_core_state``; an actor killed and restarted
(a fresh process) while the server keeps serving another actor; bad input.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from actors.actor import UnrollWriter
from actors.buffers import BufferLayout, RolloutBuffers
from actors.config import ActorConfig
from actors.inference import InferenceServer, InferenceServerError
from actors.policy import LocalPolicy
from agents.model import ModelConfig, build_agent
from envs.base import EpisodeInfo, ObsSpec, VecEnv

torch.set_num_threads(1)

OBS_DIM, NUM_ACTIONS = 6, 4
SMALL = dict(hidden_size=16, num_layers=2, num_heads=2, head_size=8, d_ff=32,
             feature_size=16)


def make_agent(core="srwm", seed=0):
    torch.manual_seed(seed)
    return build_agent(ModelConfig(core=core, **SMALL), ObsSpec((OBS_DIM,), "float32"), NUM_ACTIONS, 1)


def make_cfg(num_actors=1, envs=3, max_batch=0, timeout_ms=2.0):
    """The server's configuration: the actor section of the run's (nothing else of it)."""
    return ActorConfig(num_actors=num_actors, envs_per_actor=envs, batch_size=1, inference="learner",
                       inference_max_batch=max_batch, inference_timeout_ms=timeout_ms, heartbeat_timeout_s=30.0)


def make_inputs(rng, n, done_p=0.2):
    obs = rng.standard_normal((n, OBS_DIM)).astype(np.float32)
    reward = rng.standard_normal(n).astype(np.float32)
    done = rng.random(n) < done_p
    task = np.zeros(n, np.int64)
    return obs, reward, done, task


class Server:
    """An InferenceServer started for a test and always stopped."""

    def __init__(self, agent, buffers=None, **cfg):
        self.server = InferenceServer(make_cfg(**cfg), agent, device="cpu", buffers=buffers)

    def __enter__(self):
        self.server.start()
        return self.server

    def __exit__(self, *exc):
        self.server.stop()


def act_concurrently(clients, inputs):
    """Every client acts at once from its own thread; returns their results in order."""
    results = [None] * len(clients)
    errors = []

    def run(i):
        try:
            results[i] = clients[i].act(*inputs[i])
        except BaseException as e:   # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]
    return results


def assert_states_equal(a, b):
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------------
# one actor: identical to actor-side inference
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("core", ["srwm", "lstm", "ff"])
def test_one_actor_matches_local_policy_exactly(core):
    agent = make_agent(core)
    local = LocalPolicy(make_agent(core), 3)
    rng = np.random.default_rng(1)
    with Server(agent, envs=3) as server:
        client = server.client()
        client.connect(0, 3)
        assert_states_equal(server.actor_state(0), local.state_snapshot())
        for step in range(12):
            inputs = make_inputs(rng, 3, done_p=1.0 if step == 0 else 0.25)
            torch.manual_seed(100 + step)          # the same sampling noise on both sides
            a_srv, l_srv, b_srv = client.act(*inputs)
            torch.manual_seed(100 + step)
            a_loc, l_loc, b_loc = local.act(*inputs)
            np.testing.assert_array_equal(a_srv, a_loc)
            assert torch.equal(l_srv, l_loc) and torch.equal(b_srv, b_loc)
            assert a_srv.dtype == np.int64 and l_srv.shape == (3, NUM_ACTIONS) and b_srv.shape == (3,)
            if step % 4 == 3:
                assert_states_equal(server.actor_state(0), local.state_snapshot())
        client.close()
        stats = server.take_stats()
    assert stats["requests"] == 12 and stats["forwards"] == 12 and stats["batch_rows"] == {3: 12}


def test_image_observations_match_local_policy():
    """ProcGen-shaped frames [3, 64, 64] uint8, given as the channels-first view of HWC frames
    that the simulator produces (the server stores them channels-last)."""
    torch.manual_seed(0)
    spec = ObsSpec((3, 64, 64), "uint8")
    cfg = ModelConfig(core="srwm", **SMALL)
    agent = build_agent(cfg, spec, 15, 1)
    local = LocalPolicy(build_agent(cfg, spec, 15, 1), 2)
    local.agent.load_state_dict(agent.state_dict())
    rng = np.random.default_rng(10)
    with Server(agent, envs=2) as server:
        client = server.client()
        client.connect(0, 2)
        for step in range(3):
            frames = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8).transpose(0, 3, 1, 2)
            reward, done = np.zeros(2, np.float32), np.full(2, step == 0)
            task = np.zeros(2, np.int64)
            _, l_srv, b_srv = client.act(frames, reward, done, task)
            _, l_loc, b_loc = local.act(frames, reward, done, task)
            torch.testing.assert_close(l_srv, l_loc, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(b_srv, b_loc, rtol=1e-5, atol=1e-5)
        assert_close_states(server.actor_state(0), local.state_snapshot())


def test_done_resets_the_resident_state():
    agent = make_agent("srwm")
    rng = np.random.default_rng(2)
    with Server(agent, envs=3) as server:
        client = server.client()
        client.connect(0, 3)
        for _ in range(5):
            client.act(*make_inputs(rng, 3, done_p=0.0))
        before = server.actor_state(0)
        obs, reward, _, task = make_inputs(rng, 3)
        done = np.array([True, False, True])
        client.act(obs, reward, done, task)
        after = server.actor_state(0)
    # rows 0 and 2 restarted: one step from the episode-start state on the same inputs
    fresh = LocalPolicy(make_agent("srwm"), 3)
    fresh.act(obs, reward, np.ones(3, bool), task)
    # row 1 continued: one step from its carried state
    carried = LocalPolicy(make_agent("srwm"), 3)
    carried.state = {k: v.clone() for k, v in before.items()}
    carried.act(obs, reward, np.zeros(3, bool), task)
    for k in after:
        assert torch.equal(after[k][[0, 2]], fresh.state[k][[0, 2]]), k
        assert torch.equal(after[k][1], carried.state[k][1]), k
        assert not torch.equal(after[k][1], fresh.state[k][1]), k


def test_update_params_switches_to_the_learners_parameters():
    learner_agent = make_agent("srwm", seed=0)
    rng = np.random.default_rng(3)
    with Server(learner_agent, envs=2) as server:
        client = server.client()
        client.connect(0, 2)
        assert client.sync() == 0
        with torch.no_grad():                       # the learner updates in place ...
            for p in learner_agent.parameters():
                p.add_(0.1 * torch.randn_like(p))
        inputs = make_inputs(rng, 2, done_p=1.0)
        _, l_old, _ = client.act(*inputs)           # ... the server acts with its own copy
        ref_old = LocalPolicy(make_agent("srwm", seed=0), 2)
        assert torch.equal(l_old, ref_old.act(*inputs)[1])
        server.update_params(learner_agent, 7)
        assert client.sync() == 7
        inputs2 = make_inputs(rng, 2, done_p=0.0)
        _, l_new, b_new = client.act(*inputs2)
    ref = LocalPolicy(make_agent("srwm", seed=0), 2)
    ref.agent.load_state_dict(learner_agent.state_dict())
    ref.act(*inputs)                                # new parameters for both steps
    _, l_ref, _ = ref.act(*inputs2)
    # row state after step 1 came from the old parameters; step 2 uses the new ones
    ref_mixed = LocalPolicy(make_agent("srwm", seed=0), 2)
    ref_mixed.act(*inputs)
    ref_mixed.agent.load_state_dict(learner_agent.state_dict())
    _, l_mix, b_mix = ref_mixed.act(*inputs2)
    assert torch.equal(l_new, l_mix) and torch.equal(b_new, b_mix)
    assert not torch.equal(l_new, l_ref)


# ---------------------------------------------------------------------------------------
# several actors: dynamic batching
# ---------------------------------------------------------------------------------------

def test_concurrent_actors_share_one_forward_and_match_local_policy():
    E, A = 2, 3
    agent = make_agent("srwm")
    local = LocalPolicy(make_agent("srwm"), A * E)   # the same rows, concatenated in actor order
    rng = np.random.default_rng(4)
    with Server(agent, num_actors=A, envs=E, timeout_ms=10_000) as server:
        clients = [server.client() for _ in range(A)]
        for i, c in enumerate(clients):
            c.connect(i, E)
        for step in range(6):
            inputs = [make_inputs(rng, E, done_p=1.0 if step == 0 else 0.3) for _ in range(A)]
            torch.manual_seed(step)
            t0 = time.perf_counter()
            results = act_concurrently(clients, inputs)
            assert time.perf_counter() - t0 < 5.0, "a full batch must not wait for the timeout"
            cat = [np.concatenate([inp[j] for inp in inputs]) for j in range(4)]
            torch.manual_seed(step)
            a_loc, l_loc, b_loc = local.act(*cat)
            for i, (a, l, b) in enumerate(results):
                rows = slice(i * E, (i + 1) * E)
                np.testing.assert_array_equal(a, a_loc[rows])
                assert torch.equal(l, l_loc[rows]) and torch.equal(b, b_loc[rows])
        snaps = [server.actor_state(i) for i in range(A)]
        stats = server.take_stats()
    for k, v in local.state.items():
        assert torch.equal(torch.cat([s[k] for s in snaps]), v), k
    assert stats["forwards"] == 6 and stats["batch_rows"] == {A * E: 6} and stats["requests"] == 6 * A


def test_partial_batch_closes_on_the_timeout():
    agent = make_agent("ff")
    rng = np.random.default_rng(5)
    with Server(agent, num_actors=2, envs=2, timeout_ms=300) as server:
        c0, c1 = server.client(), server.client()
        c0.connect(0, 2)
        c1.connect(1, 2)                            # connected but silent
        server.take_stats()
        t0 = time.perf_counter()
        c0.act(*make_inputs(rng, 2))
        waited = time.perf_counter() - t0
        stats = server.take_stats()
    assert 0.28 <= waited < 3.0, waited
    assert stats["forwards"] == 1 and stats["batch_rows"] == {2: 1}
    assert stats["time_wait_batch"] >= 0.28


def test_partial_batch_closes_at_the_max_batch_size():
    agent = make_agent("ff")
    rng = np.random.default_rng(6)
    with Server(agent, num_actors=2, envs=2, max_batch=2, timeout_ms=20_000) as server:
        c0, c1 = server.client(), server.client()
        c0.connect(0, 2)
        c1.connect(1, 2)
        t0 = time.perf_counter()
        c0.act(*make_inputs(rng, 2))                # 2 rows = max batch: no waiting for actor 1
        assert time.perf_counter() - t0 < 5.0


def _check_against_local(results, inputs, local, E):
    cat = [np.concatenate([inp[j] for inp in inputs]) for j in range(4)]
    _, l_loc, b_loc = local.act(*cat)
    for i, (_, l, b) in enumerate(results):
        rows = slice(i * E, (i + 1) * E)
        torch.testing.assert_close(l, l_loc[rows], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b, b_loc[rows], rtol=1e-5, atol=1e-6)


def test_forwards_are_split_at_the_max_batch_size():
    E, A = 3, 2
    agent = make_agent("srwm")
    local = LocalPolicy(make_agent("srwm"), A * E)
    rng = np.random.default_rng(7)
    with Server(agent, num_actors=A, envs=E, max_batch=4, timeout_ms=20_000) as server:
        clients = [server.client() for _ in range(A)]
        for i, c in enumerate(clients):
            c.connect(i, E)
        for step in range(3):
            inputs = [make_inputs(rng, E, done_p=1.0 if step == 0 else 0.3) for _ in range(A)]
            results = act_concurrently(clients, inputs)
            _check_against_local(results, inputs, local, E)   # actor 1's rows straddle two forwards
        stats = server.take_stats()
    assert stats["batch_rows"] == {4: 3, 2: 3} and stats["requests"] == 3 * A


def test_full_forwards_run_at_once_and_the_remainder_waits():
    """max_batch 3, actors 0 and 1 (2 envs each) ask, actor 2 is silent: one full forward of
    3 rows answers actor 0 at once; actor 1's last row waits for the timeout."""
    E, A, timeout = 2, 3, 1.5
    agent = make_agent("srwm")
    local = LocalPolicy(make_agent("srwm"), 2 * E)
    rng = np.random.default_rng(9)
    with Server(agent, num_actors=A, envs=E, max_batch=3, timeout_ms=timeout * 1000) as server:
        clients = [server.client() for _ in range(A)]
        for i, c in enumerate(clients):
            c.connect(i, E)
        inputs = [make_inputs(rng, E, done_p=1.0) for _ in range(2)]
        latency = [0.0, 0.0]
        results = [None, None]

        def run(i):
            t0 = time.perf_counter()
            results[i] = clients[i].act(*inputs[i])
            latency[i] = time.perf_counter() - t0

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        stats = server.take_stats()
    _check_against_local(results, inputs, local, E)
    assert stats["batch_rows"] == {3: 1, 1: 1}, stats
    assert latency[0] < timeout - 0.5 and latency[1] >= timeout - 0.05, latency


# ---------------------------------------------------------------------------------------
# unrolls written through the server: the learner re-runs them from initial_core_state
# ---------------------------------------------------------------------------------------

class CountingVecEnv(VecEnv):
    """Observations encode (step in episode, env slot); episodes of fixed, per-env lengths."""

    def __init__(self, n, lengths=(4, 5, 7)):
        self.num_envs = n
        self.obs_spec = ObsSpec((OBS_DIM,), "float32")
        self.num_actions = NUM_ACTIONS
        self.task_names = ["count"]
        self.task_ids = np.zeros(n, np.int64)
        self.lengths = np.array([lengths[i % len(lengths)] for i in range(n)])
        self.t = np.zeros(n, np.int64)

    def _obs(self):
        o = np.zeros((self.num_envs, OBS_DIM), np.float32)
        o[:, 0] = self.t / 10.0
        o[:, 1] = np.arange(self.num_envs)
        o[:, 2] = np.sin(self.t)
        return o

    def reset(self):
        self.t[:] = 0
        return self._obs()

    def step(self, actions):
        reward = (np.asarray(actions) == self.t % NUM_ACTIONS).astype(np.float32)
        self.t += 1
        done = self.t >= self.lengths
        self.t[done] = 0
        eps = [EpisodeInfo(0, "count", 0.0, int(self.lengths[i]), env_index=i) for i in np.flatnonzero(done)]
        return self._obs(), reward, done, eps


def unwritten_buffers(layout, agent, share_memory=False):
    """Rollout buffers whose initial_core_state rows are NaN until something writes them."""
    bufs = RolloutBuffers(layout, (OBS_DIM,), "float32", NUM_ACTIONS, agent.state_spec(), share_memory=share_memory)
    for v in bufs.initial_core_state.values():
        v.fill_(float("nan"))
    return bufs


def written_unrolls(policy, bufs, groups, T, seed):
    """Fill ``groups`` in turn through ``policy`` (the counting env, sampling seeded); returns
    copies of each unroll's rows and initial_core_state rows just after its fill."""
    torch.manual_seed(seed)          # the server samples on the same (process-wide) generator
    writer = UnrollWriter(CountingVecEnv(bufs.layout.envs_per_actor), policy, T)
    out = []
    for g in groups:
        views, init = bufs.group_view(g)
        writer.fill(views, init, group=g)
        out.append(({k: v.clone() for k, v in views.items()}, {k: v.clone() for k, v in init.items()}))
    return out


@pytest.mark.parametrize("core", ["srwm", "lstm", "srwm_no_carry"])
@pytest.mark.parametrize("actor_index", [0, 1])
def test_server_writes_the_same_initial_core_state_rows_as_the_local_policy(core, actor_index):
    """``--inference learner`` against ``--inference actor``, same parameters and seeds: the
    actor loop of actor ``actor_index`` (of 2, 3 groups each, filled round and round) writes
    the same unrolls and the same initial_core_state rows; the server writes them from its
    resident state straight into the shared buffers' rows of the group named, and no other
    rows. Bit for bit for actor 0; actor 1's rows sit at an offset in the server's resident
    tensors, where the CPU kernels may round the last bit differently (1e-7 measured)."""
    A, G, N, T = 2, 3, 3, 5
    layout = BufferLayout(A, G, N, T)
    groups = [layout.group_id(actor_index, s % G) for s in range(2 * G + 1)]
    agent = make_agent(core)
    local_bufs = unwritten_buffers(layout, agent)
    want = written_unrolls(LocalPolicy(make_agent(core), N), local_bufs, groups, T, seed=5)
    bufs = unwritten_buffers(layout, agent, share_memory=True)        # as the trainer's
    with Server(agent, buffers=bufs, num_actors=A, envs=N) as server:
        client = server.client()
        client.connect(actor_index, N)
        got = written_unrolls(client, bufs, groups, T, seed=5)
        stats = server.take_stats()
    assert stats["initial_states"] == len(groups) and stats["errors"] == 0
    same = (lambda a, b: torch.equal(a, b)) if actor_index == 0 else (
        lambda a, b: torch.allclose(a, b, rtol=1e-5, atol=1e-6))
    for u, ((views, init), (want_views, want_init)) in enumerate(zip(got, want)):
        for k in want_views:
            exact = k not in ("policy_logits", "baseline")  # what the env and the sampled actions give
            assert (torch.equal if exact else same)(views[k], want_views[k]), f"unroll {u}: {k}"
        assert set(init) == set(want_init)
        for k in init:
            assert same(init[k], want_init[k]), f"unroll {u}: initial_core_state[{k!r}]"
    others = [r for g in range(layout.num_groups) if layout.actor_of(g) != actor_index for r in layout.rows(g)]
    for k, v in bufs.initial_core_state.items():
        assert bool(v[others].isnan().all()), f"the server wrote {k} rows of another actor"
    inits = [init for _, init in got]
    assert all(float(v.abs().max()) == 0.0 for v in inits[0].values())       # the episode-start state
    if core == "srwm_no_carry":       # every unroll starts from the episode-start state
        assert all(float(v.abs().max()) == 0.0 for init in inits for v in init.values())
    else:                             # carried over from the unroll before
        assert all(any(float(v.abs().max()) > 0.0 for v in init.values()) for init in inits[1:])


def test_write_initial_state_is_refused_without_buffers_or_for_another_actors_group():
    agent = make_agent("lstm")
    layout = BufferLayout(2, 2, 3, 4)
    bufs = unwritten_buffers(layout, agent)
    with pytest.raises(ValueError, match="laid out for 2 actors x 3 envs, the server for 2 x 2"):
        InferenceServer(make_cfg(num_actors=2, envs=2), agent, device="cpu", buffers=bufs)
    with pytest.raises(ValueError, match="state spec"):
        InferenceServer(make_cfg(num_actors=2, envs=3), agent, device="cpu",
                        buffers=unwritten_buffers(layout, make_agent("srwm")))
    with Server(agent, num_actors=2, envs=3) as server:
        c = server.client()
        c.connect(0, 3)
        with pytest.raises(InferenceServerError, match="no rollout buffers"):
            c.write_initial_state(bufs.group_view(0)[1], 0)
    with Server(agent, buffers=bufs, num_actors=2, envs=3) as server:
        c = server.client()
        with pytest.raises(RuntimeError, match="connect"):
            c.write_initial_state(bufs.group_view(0)[1], 0)
        c.connect(0, 3)
        with pytest.raises(ValueError, match="needs the group"):
            c.write_initial_state(bufs.group_view(0)[1], None)
        for g in (2, 3, 4, -1):        # actor 1's groups, and no group at all
            with pytest.raises(InferenceServerError, match=f"group {g} is not one of actor 0's groups"):
                c.write_initial_state({}, g)
        c.write_initial_state(bufs.group_view(1)[1], 1)
    for k, v in bufs.initial_core_state.items():
        assert float(v[3:6].abs().max()) == 0.0 and bool(v[[0, 1, 2, 6, 7, 8, 9, 10, 11]].isnan().all()), k


@pytest.mark.parametrize("core", ["srwm", "deltanet", "lstm"])
def test_learner_rerun_from_server_state_reproduces_the_acting_outputs(core):
    N, T, U = 3, 6, 4
    agent = make_agent(core)
    layout = BufferLayout(1, U, N, T)
    bufs = unwritten_buffers(layout, agent)
    with Server(agent, buffers=bufs, envs=N) as server:
        client = server.client()
        client.connect(0, N)
        writer = UnrollWriter(CountingVecEnv(N), client, T)
        for g in range(U):
            views, init = bufs.group_view(g)
            writer.fill(views, init, group=g)
    done_inside = False
    for g in range(U):
        batch, state = bufs.gather(torch.tensor(list(layout.rows(g))))
        done_inside |= bool(batch["done"][1:].any())
        with torch.no_grad():
            out, _ = agent({k: batch[k] for k in ("obs", "reward", "done", "task")}, state)
        torch.testing.assert_close(out["policy_logits"], batch["policy_logits"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out["baseline"], batch["baseline"], rtol=1e-5, atol=1e-5)
    assert done_inside, "the unrolls must cross episode boundaries"
    first_state = bufs.gather(torch.tensor(list(layout.rows(0))))[1]
    assert all(float(v.abs().max()) == 0.0 for v in first_state.values())   # episode-start state
    later = bufs.gather(torch.tensor(list(layout.rows(U - 1))))[1]
    assert any(float(v.abs().max()) > 0.0 for v in later.values())          # carried, not reset


def test_no_carry_core_starts_every_unroll_from_the_initial_state_through_the_server():
    """srwm_no_carry with --inference learner: every unroll's initial_core_state is the
    episode-start state (zeros), and the learner's re-run reproduces the acting outputs."""
    N, T, U = 3, 6, 4
    agent = make_agent("srwm_no_carry")
    layout = BufferLayout(1, U, N, T)
    bufs = unwritten_buffers(layout, agent)
    with Server(agent, buffers=bufs, envs=N) as server:
        client = server.client()
        client.connect(0, N)
        assert client.carries_state is False
        writer = UnrollWriter(CountingVecEnv(N, lengths=(50,)), client, T)   # no episode ends
        for g in range(U):
            views, init = bufs.group_view(g)
            writer.fill(views, init, group=g)
    for g in range(U):
        batch, state = bufs.gather(torch.tensor(list(layout.rows(g))))
        for name, v in state.items():
            assert float(v.abs().max()) == 0.0, f"unroll {g}: initial_core_state[{name!r}] is not zero"
        with torch.no_grad():
            out, _ = agent({k: batch[k] for k in ("obs", "reward", "done", "task")}, state)
        torch.testing.assert_close(out["policy_logits"], batch["policy_logits"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out["baseline"], batch["baseline"], rtol=1e-5, atol=1e-5)


def test_interfaces_are_the_protocols_and_no_parameters_go_to_shared_memory():
    """The client and the local policy are ActingPolicys; with ``--inference learner`` the
    local source builds the server on its rollout buffers (whose initial_core_state rows
    the server writes), publishes no parameters to shared memory (no actor reads them) and
    logs the server's counters under the columns it declares."""
    import dataclasses
    from actors.policy import ActingPolicy
    from actors.source import LocalRolloutSource, RolloutSource
    from envs import EnvConfig
    agent = make_agent("srwm")
    actor = make_cfg(num_actors=2, envs=3)
    actor.num_buffers, actor.unroll_length = 2, 4
    sections = dict(env=EnvConfig(env="memory"), model=ModelConfig(core="srwm", **SMALL), actor=actor,
                    obs_shape=(OBS_DIM,), obs_dtype="float32", num_actions=NUM_ACTIONS, num_tasks=1)
    src = LocalRolloutSource(agent, **sections)
    server = src.inference_server
    try:
        assert isinstance(src, RolloutSource)
        assert isinstance(server.client(), ActingPolicy) and isinstance(LocalPolicy(agent, 3), ActingPolicy)
        assert server.buffers is src.buffers and src.pool.inference_server is server
        assert src.params is None and src.pool.shared_params is None
        assert src.version == 1 and server.version == 1
        assert src.publish(agent) == 2 and server.version == 2 and int(server.slots.version[0]) == 2
        scalars = src.take_scalars()
        assert list(scalars) == list(src.scalar_columns)
        assert {"inference/batch_rows", "time/server_forward", "queue/full_rows"} <= set(scalars)
    finally:
        src.stop()
    local = LocalRolloutSource(agent, **dict(sections, actor=dataclasses.replace(actor, inference="actor")))
    try:
        assert local.inference_server is None and local.pool.inference_server is None
        assert local.params is not None and local.version == 1 and local.publish(agent) == 2
        assert list(local.take_scalars()) == list(local.scalar_columns)
        assert not any(c.startswith("inference/") for c in local.scalar_columns)
    finally:
        local.stop()


# ---------------------------------------------------------------------------------------
# actor restarts
# ---------------------------------------------------------------------------------------

def _actor_process(client, bufs, actor_index, envs, seed, steps, conn):
    """A stand-in actor: acts on seeded inputs and sends back what it got.

    It writes the initial core state of its group (``actor_index``: one group per actor)
    before its first step, keeps the state before every step (``unroll_start``) and
    writes it again after its last. ``steps`` > 0: that many steps. ``steps`` == 0: one
    step every 20 ms until the test sends "stop"; "running" is sent after 3 steps."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    client.connect(actor_index, envs)
    client.write_initial_state(bufs.group_view(actor_index)[1], actor_index)
    conn.send(("written", None))
    out = []
    while (len(out) < steps) if steps > 0 else not conn.poll():
        inputs = make_inputs(rng, envs, done_p=1.0 if not out else 0.2)
        _, logits, baseline = client.act(*inputs, unroll_start=True)
        out.append((logits.numpy(), baseline.numpy()))
        if steps == 0:
            if len(out) == 3:
                conn.send(("running", None))
            time.sleep(0.02)
    client.write_initial_state(bufs.group_view(actor_index)[1], actor_index)
    conn.send(("done", out))
    client.close()


def _expected(seed, envs, steps):
    """LocalPolicy on the same inputs: the outputs of ``steps`` steps and the state after them."""
    rng = np.random.default_rng(seed)
    local = LocalPolicy(make_agent("srwm"), envs)
    out = []
    for step in range(steps):
        _, logits, baseline = local.act(*make_inputs(rng, envs, done_p=1.0 if step == 0 else 0.2))
        out.append((logits, baseline))
    return out, local.state_snapshot()


def _recv(conn, kind, timeout=90):
    assert conn.poll(timeout), f"no {kind!r} message from the actor process"
    msg = conn.recv()
    assert msg[0] == kind, msg
    if kind == "done":
        return [(torch.from_numpy(l), torch.from_numpy(b)) for l, b in msg[1]]
    return msg[1]


def assert_close_states(a, b):
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


@pytest.mark.timeout(180)
def test_actor_restart_while_the_server_runs():
    """Actor 0 (a process) is SIGKILLed mid-run and restarted as a new process; actor 1 (a
    thread here, to save a process start) acts throughout. The new life's first initial
    core state is the episode-start state, although the old life had kept another."""
    E = 2
    ctx = multiprocessing.get_context("spawn")
    agent = make_agent("srwm")
    bufs = unwritten_buffers(BufferLayout(2, 1, E, 1), agent, share_memory=True)
    procs = []

    def spawn(actor, seed, steps):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_actor_process, args=(server.client(), bufs, actor, E, seed, steps, child),
                        daemon=True)
        p.start()
        procs.append(p)
        return p, parent

    def group_state(g):
        _, init = bufs.group_view(g)
        return {k: v.clone() for k, v in init.items()}

    with Server(agent, buffers=bufs, num_actors=2, envs=E, timeout_ms=5) as server:
        p1, c1 = ctx.Pipe()
        a1 = threading.Thread(target=_actor_process, args=(server.client(), bufs, 1, E, 22, 0, c1), daemon=True)
        a1.start()
        try:
            a0, p0 = spawn(0, 11, 0)
            _recv(p1, "written")
            _recv(p1, "running")
            _recv(p0, "written")
            assert_states_equal(group_state(0), agent.initial_state(E))
            _recv(p0, "running")
            os.kill(a0.pid, signal.SIGKILL)            # actor 0 dies mid-run
            a0.join(10)
            kept = {k: v[:E] for k, v in server.unroll_start_state.items()}
            assert any(float(v.abs().max()) > 0 for v in kept.values())     # the old life kept a state
            for v in bufs.initial_core_state.values():
                v[:E] = float("nan")
            server.reset_actor(0)                      # what the pool does before respawning
            a2, p2 = spawn(0, 33, 10)
            _recv(p2, "written")
            assert_states_equal(group_state(0), agent.initial_state(E))     # starts fresh
            out2 = _recv(p2, "done")
            state2, init2 = server.actor_state(0), group_state(0)
        finally:
            p1.send("stop")
            for p in procs:
                p.join(5)
                if p.is_alive():
                    p.kill()
        out1 = _recv(p1, "done")
        state1, init1 = server.actor_state(1), group_state(1)
        a1.join(10)
        stats = server.take_stats()
    assert stats["errors"] == 0
    for got, state, init, seed in ((out2, state2, init2, 33), (out1, state1, init1, 22)):
        want, want_state = _expected(seed, E, len(got))
        for (l, b), (lw, bw) in zip(got, want):
            torch.testing.assert_close(l, lw, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(b, bw, rtol=1e-5, atol=1e-6)
        assert_close_states(state, want_state)
        assert_close_states(init, _expected(seed, E, len(got) - 1)[1])     # the state before the last step


def test_reconnecting_actor_replaces_its_old_connection():
    """A hung actor's successor connects before the old socket is closed."""
    agent = make_agent("srwm")
    rng = np.random.default_rng(8)
    with Server(agent, envs=2) as server:
        old = server.client()
        old.connect(0, 2)
        for _ in range(3):
            old.act(*make_inputs(rng, 2, done_p=0.0))
        assert any(float(v.abs().max()) > 0 for v in server.actor_state(0).values())
        new = server.client()
        new.connect(0, 2)
        assert_states_equal(server.actor_state(0), agent.initial_state(2))
        with pytest.raises((EOFError, OSError)):
            old.act(*make_inputs(rng, 2))
        new.act(*make_inputs(rng, 2))               # the new incarnation is served


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------

def test_bad_input_is_refused_with_a_clear_error():
    agent = make_agent("ff")
    with pytest.raises(ValueError, match="inference-max-batch"):
        InferenceServer(make_cfg(max_batch=-1), agent)
    with Server(agent, num_actors=2, envs=3) as server:
        with pytest.raises(ValueError, match="num_envs 4"):
            server.client().connect(0, 4)
        with pytest.raises(ValueError, match=r"actor_index must be in \[0, 2\), got 5"):
            server.client().connect(5, 3)
        with pytest.raises(ValueError, match="actor_index"):
            server.reset_actor(2)
        c = server.client()
        with pytest.raises(RuntimeError, match="connect"):
            c.act(*make_inputs(np.random.default_rng(0), 3))
        c.connect(0, 3)
        with pytest.raises(ValueError, match=r"obs must be \[3, 6\], got \[3, 5\]"):
            c.act(np.zeros((3, 5), np.float32), np.zeros(3), np.zeros(3, bool), np.zeros(3, np.int64))
        with pytest.raises(ValueError, match="architecture"):
            server.update_params(make_agent("srwm"), 1)
        # a forward that fails answers with an error instead of hanging the actor (non-finite
        # weights no longer fail: the agent then acts uniformly), and the server goes on serving
        def broken_forward(*args, **kwargs):
            raise RuntimeError("broken forward")

        server.agent.forward = broken_forward
        with pytest.raises(InferenceServerError, match="broken forward"):
            c.act(*make_inputs(np.random.default_rng(1), 3))
        del server.agent.forward
        action, _, _ = c.act(*make_inputs(np.random.default_rng(1), 3))
        assert action.shape == (3,)


# ---------------------------------------------------------------------------------------
# the real runtime: python -m launch.train --inference learner, with an actor crash
# ---------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(300)
def test_training_run_with_learner_inference_survives_an_actor_crash(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    args = ["--env", "memory", "--core", "srwm", "--hidden-size", "16", "--num-heads", "2", "--head-size", "8",
            "--d-ff", "32", "--feature-size", "16", "--num-actors", "2", "--envs-per-actor", "2",
            "--batch-size", "4", "--unroll-length", "10", "--learner-threads", "1", "--no-progress",
            "--log-interval-s", "0.5", "--inference", "learner", "--inference-timeout-ms", "5",
            "--total-steps", "600", "--runs-dir", str(tmp_path), "--name", "inf"]
    p = subprocess.run([sys.executable, "-m", "launch.train", *args], cwd=root, capture_output=True, text=True,
                       timeout=280, env=dict(os.environ, PYTHONUNBUFFERED="1", FWRL_DEBUG_CRASH_AT_STEP="25"))
    assert p.returncode == 0, p.stderr[-4000:]
    summary = json.loads((tmp_path / "inf" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] >= 600, summary
    assert summary["actor_restarts"] >= 1, summary
    assert "injected env failure" in p.stderr
    # the server's counters are in the CSV, as in TensorBoard
    import csv
    with open(tmp_path / "inf" / "logs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert any(float(r["inference/batch_rows"] or 0) > 0 for r in rows), rows[-1]
    assert any(float(r["time/server_forward"] or 0) > 0 for r in rows), rows[-1]
    assert "logged to TensorBoard only" not in p.stderr


def test_bench_command_measures_env_and_learner(tmp_path, capsys):
    """``python -m launch.bench`` (the phases that start no process), figures in its JSON."""
    import json
    from launch.bench import main as bench_main
    out = tmp_path / "bench.json"
    rc = bench_main(["--env", "memory", "--cores", "ff", "lstm", "--phases", "env", "learner", "--seconds", "0.3",
                     "--warmup", "0.1", "--hidden-size", "16", "--num-heads", "2", "--head-size", "8",
                     "--d-ff", "32", "--feature-size", "16", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["env"]["env_sps"] > 0 and [r["core"] for r in res["runs"]] == ["ff", "lstm"]
    for r in res["runs"]:
        assert r["learner"]["learner_sps"] > 0 and r["learner"]["learner_updates"] >= 2
    text = capsys.readouterr().out
    assert "| ff | actor |" in text and "| lstm | actor |" in text
    with pytest.raises(SystemExit):
        bench_main(["--cores", "nope", "--phases", "env"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_server_on_cuda_matches_cpu_policy():
    """The server on the GPU (own stream, pinned staging) against actor-side inference on the CPU;
    the kept state goes from the device straight into the shared rollout buffers."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    agent = make_agent("srwm")
    local = LocalPolicy(make_agent("srwm"), 3)
    rng = np.random.default_rng(11)
    bufs = unwritten_buffers(BufferLayout(2, 2, 3, 4), agent, share_memory=True)
    server = InferenceServer(make_cfg(num_actors=2, envs=3, timeout_ms=10_000), agent.cuda(), device="cuda",
                             buffers=bufs)
    server.start()
    try:
        clients = [server.client() for _ in range(2)]
        for i, c in enumerate(clients):
            c.connect(i, 3)
        for step in range(5):
            inputs = make_inputs(rng, 3, done_p=1.0 if step == 0 else 0.3)
            results = act_concurrently(clients, [inputs, inputs])
            _, l_loc, b_loc = local.act(*inputs)
            for _, l, b in results:
                torch.testing.assert_close(l, l_loc, rtol=1e-4, atol=1e-4)
                torch.testing.assert_close(b, b_loc, rtol=1e-4, atol=1e-4)
        with torch.no_grad():
            for p in agent.parameters():
                p.mul_(1.5)
        server.update_params(agent, 3)
        local.agent.load_state_dict({k: v.cpu() for k, v in agent.state_dict().items()})
        inputs = make_inputs(rng, 3, done_p=0.0)
        kept = local.state_snapshot()
        _, l, _ = clients[0].act(*inputs, unroll_start=True)
        torch.testing.assert_close(l, local.act(*inputs)[1], rtol=1e-4, atol=1e-4)
        assert_close_states(server.actor_state(0), local.state_snapshot())
        clients[0].write_initial_state(bufs.group_view(1)[1], 1)
        assert_close_states(bufs.group_view(1)[1], kept)
        assert all(bool(v[:3].isnan().all()) and bool(v[6:].isnan().all()) for v in bufs.initial_core_state.values())
    finally:
        server.stop()
        torch.backends.cuda.matmul.allow_tf32 = tf32
