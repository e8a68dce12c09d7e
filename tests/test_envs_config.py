"""EnvConfig, spec strings, validation errors, describe_env and round-robin task assignment.

Nothing here steps a simulator; validation must refuse bad input before anything starts.
"""

import dataclasses
import re
import warnings

import numpy as np
import pytest

from envs import (LEVEL_SPLITS, EnvConfig, ObsSpec, describe_env, level_range, list_env_families,
                  make_vec_env, parse_env_string, slot_task_ids, validate_env_config)
from envs.config import INT32_MAX
from envs.procgen_env import PROCGEN_GAMES


def test_every_config_field_has_help():
    for f in dataclasses.fields(EnvConfig):
        assert f.metadata.get("help"), f"EnvConfig.{f.name} has no help text"


def test_defaults_match_the_issue():
    cfg = EnvConfig()
    assert cfg.env == "procgen:bigfish,fruitbot,maze,leaper,plunder,starpilot"
    assert (cfg.distribution_mode, cfg.num_levels, cfg.start_level, cfg.split) == ("easy", 200, 0, "")
    assert (cfg.seed, cfg.sticky_action_prob, cfg.full_action_space) == (0, 0.0, False)
    assert (cfg.noop_max, cfg.eval_mode, cfg.max_episode_frames) == (30, False, 108_000)


def test_parse_env_string():
    s = parse_env_string(" Procgen:bigfish, maze ")
    assert s.family == "procgen" and s.items == ("bigfish", "maze")
    assert parse_env_string("memory").items == ()
    assert parse_env_string("memory:12:2").items == ("12:2",)
    with pytest.raises(ValueError, match="empty name"):
        parse_env_string("procgen:bigfish,,maze")
    with pytest.raises(ValueError, match="empty environment spec"):
        parse_env_string("  ")


def test_level_splits_follow_design_section_7():
    assert LEVEL_SPLITS == {"train": (0, 200), "test1": (1000, 200), "test2": (1200, 200),
                            "test3": (1400, 200)}
    assert level_range(EnvConfig(start_level=7, num_levels=3)) == (7, 3)
    assert level_range(EnvConfig(start_level=7, num_levels=3, split="test2")) == (1200, 200)


def test_slot_task_ids_round_robin_over_global_slots():
    # g = actor_index * num_envs + i, task = g % num_tasks (golden values)
    assert slot_task_ids(6, 4, 0).tolist() == [0, 1, 2, 3]
    assert slot_task_ids(6, 4, 1).tolist() == [4, 5, 0, 1]
    assert slot_task_ids(6, 4, 2).tolist() == [2, 3, 4, 5]
    assert slot_task_ids(6, 1, 7).tolist() == [1]
    assert slot_task_ids(1, 3, 5).tolist() == [0, 0, 0]
    # over all actors every task gets the same number of slots when it divides evenly
    allslots = np.concatenate([slot_task_ids(6, 4, a) for a in range(3)])
    assert np.bincount(allslots).tolist() == [2] * 6


@pytest.mark.parametrize("spec,obs,num_actions,tasks", [
    ("procgen:bigfish,Maze", ObsSpec((3, 64, 64), "uint8"), 15, ["bigfish", "maze"]),
    ("atari:pong", ObsSpec((4, 84, 84), "uint8"), 6, ["Pong"]),
    ("atari:SPACE_INVADERS", ObsSpec((4, 84, 84), "uint8"), 6, ["SpaceInvaders"]),
    ("gym:CartPole-v1", ObsSpec((4,), "float32"), 2, ["CartPole-v1"]),
    ("gym:FrozenLake-v1", ObsSpec((16,), "float32"), 4, ["FrozenLake-v1"]),
    ("memory", ObsSpec((5,), "float32"), 4, ["memory:10:4"]),
    ("memory:3:2", ObsSpec((3,), "float32"), 2, ["memory:3:2"]),
    ("counting:5", ObsSpec((3,), "float32"), 4, ["counting:5"]),
])
def test_describe_env(spec, obs, num_actions, tasks):
    assert describe_env(EnvConfig(env=spec)) == (obs, num_actions, tasks)


def test_describe_atari_full_action_space():
    assert describe_env(EnvConfig(env="atari:Pong,Breakout", full_action_space=True))[1] == 18


def test_families_registered():
    assert list_env_families() == ["atari", "counting", "gym", "majority", "memory", "pixel", "popgym",
                                   "procgen"]


def _refused(match, **kw):
    with pytest.raises(ValueError, match=match) as info:
        validate_env_config(EnvConfig(**kw))
    assert "\n" not in str(info.value), "error messages are one line"
    return str(info.value)


def test_unknown_family_names_itself_and_lists_families():
    msg = _refused("unknown env family 'retro'", env="retro:Sonic")
    assert "atari, counting, gym, majority, memory, pixel, popgym, procgen" in msg


def test_unknown_procgen_game_lists_valid_games():
    msg = _refused("unknown procgen game 'bigfsh'", env="procgen:bigfish,bigfsh")
    assert all(g in msg for g in PROCGEN_GAMES)


def test_unknown_atari_game_lists_valid_games():
    msg = _refused("unknown Atari game 'Pongg'", env="atari:Pongg")
    assert "Pong" in msg and "SpaceInvaders" in msg and "MontezumaRevenge" in msg


def test_unknown_gym_id_suggests_and_lists():
    msg = _refused("unknown gymnasium env id 'CartPol-v1'", env="gym:CartPol-v1")
    assert "did you mean CartPole-v1" in msg and "Acrobot-v1" in msg


def test_gym_env_without_discrete_actions_refused():
    _refused("Pendulum-v1.*action space Box.*supported: Discrete", env="gym:Pendulum-v1")


def test_duplicate_task_refused():
    _refused("'maze' appears twice", env="procgen:maze,bigfish,Maze")


def test_memory_mode_refused_for_games_without_it():
    msg = _refused("'memory' is not available for bigfish, leaper", env="procgen:maze,bigfish,leaper",
                   distribution_mode="memory")
    assert "games with memory mode: caveflyer, dodgeball, heist, jumper, maze, miner" in msg
    validate_env_config(EnvConfig(env="procgen:dodgeball,heist,maze,miner", distribution_mode="memory"))


def test_exploration_and_extreme_modes_checked_per_game():
    _refused("'exploration' is not available for bigfish", env="procgen:bigfish",
             distribution_mode="exploration")
    _refused("'extreme' is not available for maze", env="procgen:maze", distribution_mode="extreme")
    validate_env_config(EnvConfig(env="procgen:leaper,maze", distribution_mode="exploration"))
    _refused("split 'test1' cannot apply in exploration mode", env="procgen:maze",
             distribution_mode="exploration", split="test1")


def test_unknown_distribution_mode():
    _refused("unknown procgen distribution_mode 'medium'.*easy, hard", env="procgen:maze",
             distribution_mode="medium")


def test_bad_level_ranges_refused():
    _refused("start_level=-1 is negative", env="procgen:maze", start_level=-1)
    _refused("num_levels=-5 is negative", env="procgen:maze", num_levels=-5)
    _refused("unknown level split 'test4'", env="procgen:maze", split="test4")
    _refused(f"start_level\\+num_levels={INT32_MAX + 1} overflows int32", env="procgen:maze",
             start_level=INT32_MAX - 99, num_levels=100)
    validate_env_config(EnvConfig(env="procgen:maze", start_level=INT32_MAX - 100, num_levels=100))
    _refused("start_level=5 has no effect with num_levels=0", env="procgen:maze", start_level=5,
             num_levels=0)


@pytest.mark.parametrize("env, family", [
    ("atari:Pong", "atari"), ("counting", "counting"), ("gym:CartPole-v1", "gym"), ("majority", "majority"),
    ("memory", "memory"), ("pixel:see", "pixel"), ("popgym:RepeatPreviousEasy", "popgym")])
def test_a_level_split_is_refused_by_every_family_without_levels(env, family):
    _refused(f"split 'test1' applies to procgen only, not to {family}$", env=env, split="test1")
    validate_env_config(EnvConfig(env=env))


def test_procgen_accepts_a_level_split():
    validate_env_config(EnvConfig(env="procgen:starpilot", split="test1"))


def test_atari_options_refused():
    _refused("sticky_action_prob=1.5 is outside", env="atari:Pong", sticky_action_prob=1.5)
    _refused("noop_max=-1 is negative", env="atari:Pong", noop_max=-1)
    _refused("max_episode_frames=0", env="atari:Pong", max_episode_frames=0)
    _refused("split 'test1' applies to procgen only", env="atari:Pong", split="test1")
    msg = _refused("different minimal action sets", env="atari:Pong,Breakout")
    assert "Pong=6" in msg and "Breakout=4" in msg and "full_action_space=True" in msg
    validate_env_config(EnvConfig(env="atari:Pong,Breakout", full_action_space=True))


def test_memory_and_counting_arguments_refused():
    _refused("memory DELAY=-1 is negative", env="memory:-1")
    _refused("memory K=1 cues", env="memory:3:1")
    _refused("not DELAY or DELAY:K", env="memory:a")
    _refused("counting EPISODE_LEN=0", env="counting:0")
    _refused("counting EPISODE_LEN 'x' is not an integer", env="counting:x")


def test_common_options_refused():
    _refused("seed=-3 must be a non-negative integer", env="counting", seed=-3)
    _refused("env_threads=-1 is negative", env="counting", env_threads=-1)


def test_make_vec_env_arguments_refused():
    cfg = EnvConfig(env="counting")
    for kw, msg in [(dict(num_envs=0), "num_envs=0"),
                    (dict(num_envs=2, actor_index=3, num_actors=3), re.escape("actor_index=3 is outside [0, 3)")),
                    (dict(num_envs=2, num_actors=0), "num_actors=0"),
                    (dict(num_envs=2, seed_offset=-1), "seed_offset=-1")]:
        with pytest.raises(ValueError, match=msg):
            make_vec_env(cfg, **kw)


def test_too_few_slots_for_the_task_set_warns(monkeypatch):
    from envs.procgen_env import ProcgenFamily
    monkeypatch.setattr(ProcgenFamily, "make", lambda self, build: build)  # no simulator needed
    with pytest.warns(UserWarning, match="tasks leaper, plunder, starpilot get no slot"):
        build = make_vec_env(EnvConfig(), 3)
    assert build.task_ids.tolist() == [0, 1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_vec_env(EnvConfig(env="counting"), 1).close()


def test_seeds_differ_per_actor_slot_and_offset():
    from envs.registry import EnvBuild, derive_seed
    build = EnvBuild(cfg=EnvConfig(seed=1), tasks=["x"], task_ids=np.zeros(4, dtype=np.int64),
                     actor_index=2, seed_offset=3)
    assert build.seed(0) == derive_seed(1, 3, 2, 0)
    seeds = {derive_seed(s, o, a, i) for s in range(2) for o in range(2) for a in range(3) for i in range(4)}
    assert len(seeds) == 2 * 2 * 3 * 4
    assert all(0 <= s < 2**31 for s in seeds)
