"""EpisodeStats (golden numbers) and the episode bookkeeping of every family checked
against a longhand re-count of the stream the interface returns."""

import math

import numpy as np
import pytest

from envs import EnvConfig, EpisodeInfo, EpisodeStats, make_vec_env


def _ep(task_id, task, ret, length):
    return EpisodeInfo(task_id=task_id, task=task, episode_return=ret, length=length)


def test_window_and_cumulative_means_golden():
    stats = EpisodeStats(["a", "b", "c"], window=2)
    stats.add([_ep(0, "a", 1.0, 10), _ep(1, "b", 5.0, 3)])
    stats.add([_ep(0, "a", 2.0, 20), _ep(0, "a", 6.0, 60)])
    s = stats.summary()
    assert list(s) == ["a", "b", "c"]
    assert (s["a"].count, s["a"].window_count) == (3, 2)
    assert s["a"].mean_return == 4.0 and s["a"].mean_length == 40.0          # last 2: (2+6)/2, (20+60)/2
    assert s["a"].total_mean_return == 3.0 and s["a"].total_mean_length == 30.0
    assert (s["b"].count, s["b"].mean_return, s["b"].total_mean_length) == (1, 5.0, 3.0)
    assert s["c"].count == 0 and math.isnan(s["c"].mean_return) and math.isnan(s["c"].total_mean_return)
    assert stats.scalars("eval") == {
        "eval/a/count": 3.0, "eval/a/return": 4.0, "eval/a/length": 40.0, "eval/a/total_return": 3.0,
        "eval/b/count": 1.0, "eval/b/return": 5.0, "eval/b/length": 3.0, "eval/b/total_return": 5.0,
    }


def test_episode_of_another_task_set_refused():
    stats = EpisodeStats(["a", "b"])
    with pytest.raises(ValueError, match="task 'x' \\(id 1\\) does not belong"):
        stats.add([_ep(1, "x", 0.0, 1)])
    with pytest.raises(ValueError, match="id 5"):
        stats.add([_ep(5, "a", 0.0, 1)])
    with pytest.raises(ValueError, match="window=0"):
        EpisodeStats(["a"], window=0)


@pytest.mark.parametrize("spec,kw,steps", [
    ("counting:5", {}, 40),
    ("memory:3:2", {}, 40),
    ("gym:CartPole-v1", {}, 80),
    ("procgen:bigfish,leaper", {}, 150),
    ("atari:Breakout", {"noop_max": 0}, 150),  # training mode: an episode per life
])
def test_done_convention_and_episode_bookkeeping_for_every_family(spec, kw, steps):
    """done[i] marks the first obs of a new episode; the reward returned with it is the last
    reward of the finished episode; each finished episode is reported once, at that step,
    with the sum of its rewards and its step count (re-counted here from the stream)."""
    n = 3
    env = make_vec_env(EnvConfig(env=spec, **kw), n)
    env.reset()
    rng = np.random.default_rng(0)
    ret, length = np.zeros(n), np.zeros(n, dtype=np.int64)
    seen = 0
    for _ in range(steps):
        obs, rew, done, finished = env.step(rng.integers(0, env.num_actions, n))
        assert obs.shape == (n, *env.obs_spec.shape) and obs.dtype == np.dtype(env.obs_spec.dtype)
        assert rew.shape == (n,) and rew.dtype == np.float32 and done.shape == (n,) and done.dtype == bool
        ret += rew
        length += 1
        assert [e.env_index for e in finished] == np.flatnonzero(done).tolist()
        for e in finished:
            i = e.env_index
            assert (e.episode_return, e.length) == (pytest.approx(ret[i]), length[i])
            assert (e.task_id, e.task) == (env.task_ids[i], env.task_names[env.task_ids[i]])
            ret[i], length[i] = 0.0, 0
        seen += len(finished)
    assert seen > 0
    env.close()


def test_state_dict_round_trip_keeps_windows_and_totals():
    stats = EpisodeStats(["a", "b"], window=2)
    stats.add([EpisodeInfo(0, "a", 1.0, 3), EpisodeInfo(0, "a", 2.0, 5), EpisodeInfo(0, "a", 4.0, 7),
               EpisodeInfo(1, "b", -1.0, 2)])
    restored = EpisodeStats(["a", "b"], window=2)
    restored.load_state_dict(stats.state_dict())
    assert restored.summary() == stats.summary()
    a = restored.summary()["a"]
    assert (a.count, a.mean_return, a.total_mean_return) == (3, 3.0, 7.0 / 3)
    with pytest.raises(ValueError, match="cannot be loaded"):
        EpisodeStats(["a", "c"]).load_state_dict(stats.state_dict())
