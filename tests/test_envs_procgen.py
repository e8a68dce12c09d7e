"""ProcGen through the project's interface, checked against the bare ``ProcgenGym3Env``
stepped in lock-step with the same seed and actions (the reference), plus level-range,
distribution-mode and multi-task checks. Games with short random episodes (bigfish,
dodgeball, leaper: about 60 steps) keep it fast.
"""

import numpy as np
import pytest

from envs import EnvConfig, EpisodeStats, make_vec_env, validate_env_config
from envs.procgen_env import import_procgen
from envs.registry import derive_seed


def _bare(game, n, rand_seed, **kw):
    procgen = import_procgen()
    kw.setdefault("distribution_mode", "easy")
    kw.setdefault("num_levels", 200)
    kw.setdefault("start_level", 0)
    return procgen.ProcgenGym3Env(num=n, env_name=game, rand_seed=rand_seed, num_threads=0, **kw)


def test_obs_layout_rewards_dones_and_episodes_match_the_bare_library():
    n, steps = 4, 250
    env = make_vec_env(EnvConfig(env="procgen:bigfish"), n)
    ref = _bare("bigfish", n, derive_seed(0, 0, 0, 0))  # seed of task 0 of actor 0, offset 0
    obs = env.reset()
    _, ref_ob, ref_first = ref.observe()
    assert obs.shape == (n, 3, 64, 64) and obs.dtype == np.uint8
    assert np.array_equal(obs, ref_ob["rgb"].transpose(0, 3, 1, 2))  # channels first, same pixels
    assert ref_first.all()
    # reference episode bookkeeping, written out longhand
    level = [d["level_seed"] for d in ref.get_info()]
    ret, length, expected = [0.0] * n, [0] * n, []
    got = []
    rng = np.random.default_rng(1)
    for _ in range(steps):
        a = rng.integers(0, 15, n)
        obs, rew, done, finished = env.step(a)
        ref.act(a.astype(np.int32))
        ref_rew, ref_ob, ref_first = ref.observe()
        assert np.array_equal(obs, ref_ob["rgb"].transpose(0, 3, 1, 2))
        assert np.array_equal(rew, ref_rew) and rew.dtype == np.float32
        assert np.array_equal(done, ref_first) and done.dtype == bool
        for i in range(n):
            ret[i] += float(ref_rew[i])
            length[i] += 1
            if ref_first[i]:  # the reward that came with it belongs to the finished episode
                expected.append((i, ret[i], length[i], level[i]))
                ret[i], length[i] = 0.0, 0
        level = [d["level_seed"] for d in ref.get_info()]
        got += [(e.env_index, e.episode_return, e.length, e.level_seed) for e in finished]
    assert len(expected) >= 5
    assert got == expected
    env.close()


def test_same_seed_same_first_observations_and_actors_differ():
    cfg = EnvConfig(env="procgen:bigfish", seed=3)
    a = make_vec_env(cfg, 4).reset()
    b = make_vec_env(cfg, 4).reset()
    assert np.array_equal(a, b)
    other_actor = make_vec_env(cfg, 4, actor_index=1, num_actors=2).reset()
    other_offset = make_vec_env(cfg, 4, seed_offset=1).reset()
    other_seed = make_vec_env(EnvConfig(env="procgen:bigfish", seed=4), 4).reset()
    for o in (other_actor, other_offset, other_seed):
        assert not np.array_equal(a, o)


def _level_seeds(cfg, n=8, steps=300, seed=0):
    env = make_vec_env(cfg, n)
    env.reset()
    rng = np.random.default_rng(seed)
    seeds = []
    for _ in range(steps):
        seeds += [e.level_seed for e in env.step(rng.integers(0, 15, n))[3]]
    env.close()
    assert len(seeds) >= 8, "too few finished episodes to check"
    return seeds


def test_level_seeds_stay_inside_start_level_num_levels():
    seeds = _level_seeds(EnvConfig(env="procgen:bigfish", start_level=500, num_levels=5))
    assert set(seeds) <= set(range(500, 505))


@pytest.mark.parametrize("split", ["train", "test1", "test2", "test3"])
def test_level_seeds_stay_inside_each_named_split(split):
    start = {"train": 0, "test1": 1000, "test2": 1200, "test3": 1400}[split]
    # start_level/num_levels are overridden by the split
    seeds = _level_seeds(EnvConfig(env="procgen:bigfish", split=split, start_level=7, num_levels=1))
    assert all(start <= s < start + 200 for s in seeds)
    assert len(set(seeds)) > 1


def test_memory_mode_runs_for_a_game_that_has_it():
    cfg = EnvConfig(env="procgen:dodgeball", distribution_mode="memory", num_levels=500)
    env = make_vec_env(cfg, 4)
    env.reset()
    ref = _bare("dodgeball", 4, derive_seed(0, 0, 0, 0), distribution_mode="memory", num_levels=500)
    ref.observe()
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 15, 4)
        obs = env.step(a)[0]
        ref.act(a.astype(np.int32))
        assert np.array_equal(obs, ref.observe()[1]["rgb"].transpose(0, 3, 1, 2))
    env.close()


def test_memory_mode_refused_for_a_game_without_it():
    with pytest.raises(ValueError, match="not available for bigfish"):
        make_vec_env(EnvConfig(env="procgen:bigfish", distribution_mode="memory"), 2)


def test_exploration_mode_plays_its_fixed_level():
    from envs.procgen_env import import_procgen
    fixed = import_procgen().env.EXPLORATION_LEVEL_SEEDS["leaper"]
    seeds = _level_seeds(EnvConfig(env="procgen:leaper", distribution_mode="exploration"), n=4, steps=200)
    assert set(seeds) == {fixed}


def test_multi_task_slots_seeds_and_per_task_statistics():
    tasks = ["bigfish", "dodgeball", "leaper"]
    cfg = EnvConfig(env="procgen:" + ",".join(tasks))
    n = 5
    env = make_vec_env(cfg, n, actor_index=1, num_actors=2)  # global slots 5..9
    assert env.task_names == tasks
    assert env.task_ids.tolist() == [2, 0, 1, 2, 0]
    obs = env.reset()
    # each task's slots step in one library env seeded from (seed, offset, actor, task)
    refs = {t: _bare(g, int((env.task_ids == t).sum()), derive_seed(0, 0, 1, t)) for t, g in enumerate(tasks)}
    for t, ref in refs.items():
        assert np.array_equal(obs[env.task_ids == t], ref.observe()[1]["rgb"].transpose(0, 3, 1, 2))
    stats = EpisodeStats(env.task_names)
    per_task = {t: [] for t in tasks}
    rng = np.random.default_rng(2)
    for _ in range(150):
        a = rng.integers(0, 15, n)
        obs, rew, done, finished = env.step(a)
        for t, ref in refs.items():
            m = env.task_ids == t
            ref.act(a[m].astype(np.int32))
            ref_rew, ref_ob, ref_first = ref.observe()
            assert np.array_equal(obs[m], ref_ob["rgb"].transpose(0, 3, 1, 2))
            assert np.array_equal(rew[m], ref_rew) and np.array_equal(done[m], ref_first)
        for e in finished:
            assert e.task_id == env.task_ids[e.env_index] and e.task == tasks[e.task_id]
            per_task[e.task].append(e.episode_return)
        stats.add(finished)
    summary = stats.summary()
    for t in tasks:
        assert summary[t].count == len(per_task[t]) > 0
        assert summary[t].total_mean_return == pytest.approx(np.mean(per_task[t]))
    env.close()


def test_reset_mid_run_starts_new_episodes_and_drops_the_cut_ones():
    env = make_vec_env(EnvConfig(env="procgen:bigfish"), 3)
    env.reset()
    for _ in range(5):
        env.step(np.zeros(3, dtype=np.int64))
    obs = env.reset()
    assert obs.shape == (3, 3, 64, 64)
    obs, rew, done, finished = env.step(np.zeros(3, dtype=np.int64))
    assert not done.any() and finished == []


def test_bad_actions_and_order_of_calls():
    env = make_vec_env(EnvConfig(env="procgen:bigfish"), 2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, dtype=np.int64))
    env.reset()
    with pytest.raises(ValueError, match=r"action 15 out of range \[0, 15\)"):
        env.step(np.array([0, 15]))
    with pytest.raises(ValueError, match="action -1 out of range"):
        env.step(np.array([-1, 0]))
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(2,\)"):
        env.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="dtype float64"):
        env.step(np.zeros(2))
    env.close()


def test_validate_accepts_the_paper_configurations():
    validate_env_config(EnvConfig())
    validate_env_config(EnvConfig(env="procgen:dodgeball,heist,maze,miner", distribution_mode="memory",
                                  num_levels=500))


def test_returned_observations_stay_valid_after_later_steps():
    env = make_vec_env(EnvConfig(env="procgen:bigfish,leaper"), 2)
    first = env.reset()
    kept = first.copy()
    rng = np.random.default_rng(3)
    for _ in range(10):
        later = env.step(rng.integers(0, 15, 2))[0]
    assert np.array_equal(first, kept) and not np.array_equal(first, later)
    env.close()
