"""Building vector envs from an :class:`~envs.config.EnvConfig`.

Multi-task sets are assigned to env slots round-robin over the global slot index
``g = actor_index * num_envs + i``: slot ``i`` of actor ``actor_index`` plays task
``g % num_tasks``. An actor can therefore hold one task or several, and every task is
covered once ``num_actors * num_envs >= num_tasks``. Every VecEnv exposes the whole
task set as ``task_names`` (same order everywhere) and the task of each slot as
``task_ids`` [N]. Seeds derive from ``(cfg.seed, seed_offset, actor_index, ...)``.
"""

from __future__ import annotations

import warnings
from typing import List, Tuple

import numpy as np

# Importing the family modules registers them; each imports its simulator lazily.
from envs import (atari_env, counting_env, gym_env, majority_env, memory_env,  # noqa: F401
                  pixel_env, popgym_env, procgen_env)
from envs.base import ObsSpec, VecEnv
from envs.config import EnvConfig, parse_env_string
from envs.imports import import_modules
from envs.registry import EnvBuild, EnvFamily, get_env_family


def _resolve(cfg: EnvConfig) -> Tuple[EnvFamily, List[str]]:
    import_modules(cfg.env_import, "--env-import")
    spec = parse_env_string(cfg.env)
    family = get_env_family(spec.family)
    return family, family.parse_tasks(spec.items)


def _validate_common(cfg: EnvConfig) -> None:
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ValueError(f"seed={cfg.seed!r} must be a non-negative integer")
    if cfg.env_threads < 0:
        raise ValueError(f"env_threads={cfg.env_threads} is negative")


def validate_env_config(cfg: EnvConfig) -> None:
    """Raise ValueError with a one-line message naming the bad value; starts nothing."""
    _validate_common(cfg)
    family, tasks = _resolve(cfg)
    family.check(cfg, tasks)


def describe_env(cfg: EnvConfig) -> Tuple[ObsSpec, int, List[str]]:
    """(observation spec, number of actions, task names) without stepping any env."""
    validate_env_config(cfg)
    family, tasks = _resolve(cfg)
    obs_spec, num_actions = family.describe(cfg, tasks)
    return obs_spec, num_actions, tasks


def slot_task_ids(num_tasks: int, num_envs: int, actor_index: int) -> np.ndarray:
    """int64 [num_envs]: round-robin task of each local slot, ``(actor_index*num_envs + i) % num_tasks``."""
    return (actor_index * num_envs + np.arange(num_envs, dtype=np.int64)) % num_tasks


def make_vec_env(cfg: EnvConfig, num_envs: int, *, actor_index: int = 0, num_actors: int = 1,
                 seed_offset: int = 0) -> VecEnv:
    """The vector env of actor ``actor_index`` of ``num_actors``, with ``num_envs`` slots.

    ``seed_offset`` separates runs that share ``cfg.seed`` (e.g. evaluation vs training).
    Call ``reset()`` before the first ``step()``.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs={num_envs} must be at least 1")
    if num_actors < 1:
        raise ValueError(f"num_actors={num_actors} must be at least 1")
    if not 0 <= actor_index < num_actors:
        raise ValueError(f"actor_index={actor_index} is outside [0, {num_actors})")
    if seed_offset < 0:
        raise ValueError(f"seed_offset={seed_offset} is negative")
    validate_env_config(cfg)
    family, tasks = _resolve(cfg)
    if num_actors * num_envs < len(tasks):
        warnings.warn(f"{num_actors} actors x {num_envs} envs = {num_actors * num_envs} slots cannot "
                      f"cover the {len(tasks)} tasks of {cfg.env!r}; tasks "
                      f"{', '.join(tasks[num_actors * num_envs:])} get no slot", stacklevel=2)
    build = EnvBuild(cfg=cfg, tasks=tasks, task_ids=slot_task_ids(len(tasks), num_envs, actor_index),
                     actor_index=actor_index, seed_offset=seed_offset)
    return family.make(build)
