"""The fast-weight state copy: the learner's re-run from ``initial_core_state``
reproduces what the actor computed, step for step (torchbeast's counting-env idea).

The counting env's observation encodes the step count within the episode, so any
off-by-one in the unroll layout (entry 0 = entry T of the last unroll, the state
before entry 0, the done-resets) shows up as different logits.
"""

import pytest
import torch

from actors.actor import UnrollWriter
from actors.buffers import BufferLayout, RolloutBuffers
from actors.policy import LocalPolicy
from agents.core import list_cores
from agents.model import ModelConfig, build_agent
from envs import EnvConfig, describe_env, make_vec_env
from learner.vtrace import from_logits

SMALL = dict(hidden_size=16, num_layers=2, num_heads=2, head_size=8, d_ff=32,
             feature_size=16)


def _collect(core: str, unrolls: int = 4, T: int = 5, N: int = 3, episode_len: int = 7):
    torch.manual_seed(0)
    env_cfg = EnvConfig(env=f"counting:{episode_len}")
    obs_spec, num_actions, tasks = describe_env(env_cfg)
    agent = build_agent(ModelConfig(core=core, **SMALL), obs_spec, num_actions, len(tasks))
    env = make_vec_env(env_cfg, N)
    policy = LocalPolicy(agent, N)
    layout = BufferLayout(1, unrolls, N, T)
    bufs = RolloutBuffers(layout, obs_spec.shape, obs_spec.dtype, num_actions, agent.state_spec(),
                          share_memory=False)
    writer = UnrollWriter(env, policy, T)
    for g in range(unrolls):
        views, init = bufs.group_view(g)
        writer.fill(views, init)
    env.close()
    return agent, bufs, layout


@pytest.mark.parametrize("core", list_cores())
def test_learner_rerun_reproduces_actor_outputs(core):
    agent, bufs, layout = _collect(core)
    agent.train()      # the learner's mode; dropout is 0 in these configs
    done_seen = False
    for g in range(layout.num_groups):
        rows = torch.tensor(list(layout.rows(g)))
        batch, state = bufs.gather(rows)
        done_seen |= bool(batch["done"][1:].any())
        with torch.no_grad():
            out, _ = agent({k: batch[k] for k in ("obs", "reward", "done", "task")}, state)
        torch.testing.assert_close(out["policy_logits"], batch["policy_logits"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out["baseline"], batch["baseline"], atol=1e-5, rtol=1e-5)
        vt = from_logits(batch["policy_logits"][:-1], out["policy_logits"][:-1], batch["action"][:-1],
                         0.99 * (~batch["done"][1:]).float(), batch["reward"][1:], out["baseline"][:-1],
                         out["baseline"][-1])
        assert vt.log_rhos.abs().max() < 1e-5
    assert done_seen, "the test must cross episode resets inside unrolls"


def test_unrolls_chain_entry_T_to_entry_0():
    _, bufs, layout = _collect("lstm")
    for g in range(layout.num_groups - 1):
        a, _ = bufs.group_view(g)
        b, _ = bufs.group_view(g + 1)
        for key in a:
            assert torch.equal(a[key][:, -1], b[key][:, 0]), key


def test_counting_env_observations_follow_the_step_count():
    """Entry t of consecutive unrolls sees consecutive steps: the layout has no gaps."""
    T, U, N, L = 4, 3, 2, 5
    _, bufs, layout = _collect("ff", unrolls=U, T=T, N=N, episode_len=L)
    # entries 0..T of the first unroll, then 1..T of every later one (entry 0 repeats entry T)
    views = [bufs.group_view(g)[0] for g in range(U)]
    obs = torch.cat([v["obs"][:, (0 if g == 0 else 1):] for g, v in enumerate(views)], dim=1)   # [N, S, 3]
    done = torch.cat([v["done"][:, (0 if g == 0 else 1):] for g, v in enumerate(views)], dim=1)  # [N, S]
    steps = torch.arange(U * T + 1)
    for n in range(N):
        # the counting env's observation is (step in episode, env slot, episode number)
        assert obs[n, :, 0].tolist() == (steps % L).tolist(), f"env {n}: a gap or a repeat in the steps"
        assert obs[n, :, 1].tolist() == [float(n)] * len(steps)
        assert obs[n, :, 2].tolist() == (steps // L).tolist()
        assert done[n].tolist() == (steps % L == 0).tolist(), f"env {n}: done is not on episode starts"


def test_no_carry_core_starts_every_unroll_from_the_episode_start_state():
    agent, bufs, layout = _collect("srwm_no_carry")
    assert agent.carries_state is False
    for g in range(layout.num_groups):
        _, init = bufs.group_view(g)
        assert all(float(v.abs().max()) == 0.0 for v in init.values())
    # while a carrying core hands over a non-zero state
    _, bufs2, layout2 = _collect("srwm")
    _, init2 = bufs2.group_view(layout2.num_groups - 1)
    assert any(float(v.abs().max()) > 0.0 for v in init2.values())
