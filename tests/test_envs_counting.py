"""The deterministic counting env: golden observations, rewards and episode boundaries."""

import numpy as np
import pytest

from envs import EnvConfig, make_vec_env
from envs.counting_env import counting_reward


def test_golden_stream():
    # actor 2 of 3 with 2 slots: global slots 4 and 5; episodes of 3 steps
    env = make_vec_env(EnvConfig(env="counting:3"), 2, actor_index=2, num_actors=3)
    assert env.obs_spec.shape == (3,) and env.num_actions == 4 and env.task_names == ["counting:3"]
    obs = env.reset()
    assert obs.tolist() == [[0, 4, 0], [0, 5, 0]]
    actions = [[0, 1], [1, 1], [2, 0], [3, 3]]
    expected_obs = [[[1, 4, 0], [1, 5, 0]], [[2, 4, 0], [2, 5, 0]], [[0, 4, 1], [0, 5, 1]], [[1, 4, 1], [1, 5, 1]]]
    expected_rew = [[1, 0], [1, 1], [1, 0], [0, 0]]       # 1 when action == step % 4
    expected_done = [[0, 0], [0, 0], [1, 1], [0, 0]]
    for a, o, r, d in zip(actions, expected_obs, expected_rew, expected_done):
        obs, rew, done, fin = env.step(np.array(a))
        assert obs.tolist() == o and rew.tolist() == r and done.tolist() == d
        assert obs.dtype == np.float32 and rew.dtype == np.float32 and done.dtype == bool
        if any(d):
            assert [(e.env_index, e.episode_return, e.length) for e in fin] == [(0, 3.0, 3), (1, 1.0, 3)]
        else:
            assert fin == []


def test_counting_reward_function():
    assert counting_reward(np.array([0, 1, 5, 6]), np.array([0, 0, 1, 3])).tolist() == [1, 0, 1, 0]


def test_deterministic_and_scripted_policy_scores_episode_length():
    def run():
        env = make_vec_env(EnvConfig(env="counting:7"), 3)
        obs = env.reset()
        out, eps = [], []
        for _ in range(30):
            obs, rew, done, fin = env.step(obs[:, 0].astype(np.int64) % 4)  # a = t % 4
            out.append((obs.copy(), rew.copy(), done.copy()))
            eps += fin
        return out, eps

    a, eps = run()
    b, _ = run()
    assert all(np.array_equal(x, y) for s, t in zip(a, b) for x, y in zip(s, t))
    assert len(eps) == 3 * 4 and all(e.episode_return == 7.0 and e.length == 7 for e in eps)


def test_bad_actions():
    env = make_vec_env(EnvConfig(env="counting"), 2)
    env.reset()
    with pytest.raises(ValueError, match=r"action 4 out of range \[0, 4\)"):
        env.step(np.array([0, 4]))
