"""Vectorised environments behind one interface (:class:`envs.base.VecEnv`).

Families (spec prefix -> module):

- ``procgen`` -> :mod:`envs.procgen_env`: ProcGen through ``procgen.ProcgenGym3Env``,
  [3, 64, 64] uint8 (a channels-first view), 15 actions, level seeds reported.
- ``atari`` -> :mod:`envs.atari_env`: ALE games with the IMPALA preprocessing,
  [4, 84, 84] uint8; per-life training episodes, whole-game evaluation episodes.
- ``gym`` -> :mod:`envs.gym_env`: any gymnasium env (``gym:MODULE:ID`` imports MODULE
  first; comma lists are multi-task sets) with Box, Discrete, MultiDiscrete or Tuple/Dict
  observations (flattened, float32) and Discrete or MultiDiscrete actions.
- ``popgym`` -> :mod:`envs.popgym_env`: POPGym envs by short name.
- ``memory`` -> :mod:`envs.memory_env`: the cue-recall memory task.
- ``majority`` -> :mod:`envs.majority_env`: the majority-vote (integrate over time) task.
- ``counting`` -> :mod:`envs.counting_env`: the deterministic counting test env.
- ``pixel`` -> :mod:`envs.pixel_env`: image sanity tasks (see a target / recall it) that
  check that an agent learns through the convolutional encoders.

Usage::

    cfg = EnvConfig(env="procgen:bigfish,maze", split="test1")
    validate_env_config(cfg)                       # ValueError before anything starts
    obs_spec, num_actions, tasks = desc = describe_env(cfg)
    desc.action_dims                               # (num_actions,); tuple(nvec) for a MultiDiscrete space
    env = make_vec_env(cfg, num_envs=8, actor_index=3, num_actors=48)
    obs = env.reset()
    obs, reward, done, finished = env.step(actions)  # done: obs is the first of a new episode
    stats = EpisodeStats(env.task_names); stats.add(finished)
"""

from envs.base import EpisodeInfo, ObsSpec, VecEnv
from envs.config import LEVEL_SPLITS, EnvConfig, level_range, parse_env_string
from envs.make import EnvDescription, describe_env, make_vec_env, slot_task_ids, validate_env_config
from envs.registry import EnvFamily, get_env_family, list_env_families, register_env_family
from envs.stats import EpisodeStats, TaskSummary

__all__ = [
    "EnvConfig", "EnvDescription", "EnvFamily", "EpisodeInfo", "EpisodeStats", "LEVEL_SPLITS", "ObsSpec",
    "TaskSummary", "VecEnv", "describe_env", "get_env_family", "level_range",
    "list_env_families", "make_vec_env", "parse_env_string", "register_env_family",
    "slot_task_ids", "validate_env_config",
]
