"""The cue-recall memory task: exact observation timeline, a remembering policy scores
full marks, memoryless policies score chance (1/K) with a fixed seed."""

import numpy as np
import pytest

from envs import EnvConfig, make_vec_env


def test_observation_timeline_rewards_and_dones_golden():
    env = make_vec_env(EnvConfig(env="memory:2:3"), 1)
    assert env.obs_spec.shape == (4,) and env.num_actions == 3
    obs = env.reset()
    cue = int(np.argmax(obs[0, :3]))
    assert obs.tolist() == [[1.0 * (k == cue) for k in range(3)] + [0.0]]   # t = 0: cue only
    obs, rew, done, fin = env.step(np.array([cue]))
    assert obs.tolist() == [[0, 0, 0, 0]] and rew.tolist() == [0] and not done[0] and fin == []
    obs, rew, done, fin = env.step(np.array([cue]))
    assert obs.tolist() == [[0, 0, 0, 1]] and rew.tolist() == [0] and not done[0]  # t = 2: answer now
    obs, rew, done, fin = env.step(np.array([cue]))                               # the answer
    new_cue = int(np.argmax(obs[0, :3]))
    assert done[0] and rew.tolist() == [1.0]  # the answer's reward arrives with the new episode's first obs
    assert obs.tolist() == [[1.0 * (k == new_cue) for k in range(3)] + [0.0]]
    assert [(e.episode_return, e.length, e.task) for e in fin] == [(1.0, 3, "memory:2:3")]
    # a wrong answer scores 0
    for _ in range(2):
        env.step(np.array([0]))
    _, rew, done, fin = env.step(np.array([(new_cue + 1) % 3]))
    assert done[0] and rew.tolist() == [0.0] and fin[0].episode_return == 0.0


def test_zero_delay_shows_cue_and_flag_together():
    env = make_vec_env(EnvConfig(env="memory:0:2"), 4)
    obs = env.reset()
    assert (obs[:, 2] == 1).all() and (obs[:, :2].sum(axis=1) == 1).all()
    _, rew, done, _ = env.step(np.argmax(obs[:, :2], axis=1))
    assert done.all() and (rew == 1).all()


def _play(policy, spec="memory:5:4", n=16, steps=1200, seed=0):
    env = make_vec_env(EnvConfig(env=spec, seed=seed), n)
    obs = env.reset()
    remembered = np.zeros(n, dtype=np.int64)
    rng = np.random.default_rng(seed + 100)
    episodes = []
    k = env.num_actions
    for _ in range(steps):
        shown = obs[:, :k].sum(axis=1) == 1
        remembered[shown] = np.argmax(obs[shown, :k], axis=1)
        obs, _, _, fin = env.step(policy(obs, remembered, rng, k))
        episodes += fin
    return np.array([e.episode_return for e in episodes]), np.array([e.length for e in episodes])


def test_remembering_policy_scores_full_marks():
    returns, lengths = _play(lambda obs, mem, rng, k: mem)
    assert len(returns) == 16 * 1200 // 6 and (returns == 1.0).all() and (lengths == 6).all()


@pytest.mark.parametrize("name,policy", [
    ("random guess", lambda obs, mem, rng, k: rng.integers(0, k, obs.shape[0])),
    # the best a memoryless policy can do: its input at the answer step is the same for every cue
    ("constant answer", lambda obs, mem, rng, k: np.zeros(obs.shape[0], dtype=np.int64)),
])
def test_memoryless_policies_score_chance(name, policy):
    returns, _ = _play(policy)
    n, p = len(returns), 1 / 4
    assert n == 3200
    assert abs(returns.mean() - p) < 4 * np.sqrt(p * (1 - p) / n), f"{name}: {returns.mean():.3f}"


def test_cues_are_uniform_and_seeded():
    def cues(**kw):
        env = make_vec_env(EnvConfig(env="memory:1:4", **kw), 500)
        return np.argmax(env.reset()[:, :4], axis=1)

    c = cues()
    assert np.array_equal(c, cues())
    assert not np.array_equal(c, cues(seed=1))
    counts = np.bincount(c, minlength=4)
    assert (abs(counts - 125) < 4 * np.sqrt(500 * 0.25 * 0.75)).all()
