"""Generic gymnasium envs against a reference loop over single ``gym.make`` envs with the
same seeds, reset by hand when an episode ends (what SAME_STEP autoreset must do)."""

import gymnasium as gym
import numpy as np
import pytest

from envs import EnvConfig, make_vec_env
from envs.registry import derive_seed


def _reference(env_id, n, actions, one_hot=None):
    envs = [gym.make(env_id) for _ in range(n)]
    obs = [e.reset(seed=derive_seed(0, 0, 0, i))[0] for i, e in enumerate(envs)]
    conv = (lambda o: np.eye(one_hot, dtype=np.float32)[o]) if one_hot else (lambda o: np.asarray(o, np.float32))
    steps = [(np.stack([conv(o) for o in obs]), None, None)]
    for a in actions:
        obs_t, rew_t, done_t = [], [], []
        for i, e in enumerate(envs):
            o, r, term, trunc, _ = e.step(int(a[i]))
            if term or trunc:
                o, _ = e.reset()  # the new episode's first obs comes with the old episode's reward
            obs_t.append(conv(o))
            rew_t.append(r)
            done_t.append(term or trunc)
        steps.append((np.stack(obs_t), np.array(rew_t, dtype=np.float32), np.array(done_t)))
    return steps


@pytest.mark.parametrize("env_id,one_hot", [("CartPole-v1", None), ("FrozenLake-v1", 16)])
def test_matches_single_envs_with_same_step_autoreset(env_id, one_hot):
    n, steps = 3, 120
    env = make_vec_env(EnvConfig(env=f"gym:{env_id}"), n)
    actions = np.random.default_rng(0).integers(0, env.num_actions, (steps, n))
    ref = _reference(env_id, n, actions, one_hot)
    obs = env.reset()
    assert obs.dtype == np.float32 and np.array_equal(obs, ref[0][0])
    ret, length = np.zeros(n), np.zeros(n, dtype=int)
    expected, got = [], []
    for t, a in enumerate(actions):
        obs, rew, done, finished = env.step(a)
        ref_obs, ref_rew, ref_done = ref[t + 1]
        assert np.array_equal(obs, ref_obs) and np.array_equal(rew, ref_rew) and np.array_equal(done, ref_done)
        ret += ref_rew
        length += 1
        for i in np.flatnonzero(ref_done):
            expected.append((int(i), float(ret[i]), int(length[i])))
            ret[i], length[i] = 0, 0
        got += [(e.env_index, e.episode_return, e.length) for e in finished]
    assert len(expected) >= 3 and got == expected
    if one_hot:
        assert (obs.sum(axis=1) == 1).all()
    env.close()


def test_cartpole_shapes():
    env = make_vec_env(EnvConfig(env="gym:CartPole-v1"), 2)
    assert env.obs_spec.shape == (4,) and env.num_actions == 2 and env.task_names == ["CartPole-v1"]
    assert env.reset().shape == (2, 4)
    env.close()
