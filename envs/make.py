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
from typing import List, Sequence, Tuple

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


class EnvDescription(tuple):
    """What :func:`describe_env` returns: the 3-tuple ``(obs_spec, num_actions, task_names)``
    (unpack it as such), with the action layout as ``action_dims`` and each part by name.

    ``action_dims`` has one entry per action component, its number of choices:
    ``(num_actions,)`` for a Discrete action space, ``tuple(nvec)`` for a MultiDiscrete
    one; ``num_actions`` is their sum, the width of the policy's logits.
    """

    def __new__(cls, obs_spec: ObsSpec, action_dims: Sequence[int], task_names: Sequence[str]):
        dims = tuple(int(n) for n in action_dims)
        self = super().__new__(cls, (obs_spec, sum(dims), list(task_names)))
        self.action_dims = dims
        return self

    def __getnewargs__(self):
        return self[0], self.action_dims, self[2]

    @property
    def obs_spec(self) -> ObsSpec:
        return self[0]

    @property
    def num_actions(self) -> int:
        return self[1]

    @property
    def task_names(self) -> List[str]:
        return self[2]

    def __repr__(self) -> str:
        return (f"EnvDescription(obs_spec={self[0]!r}, num_actions={self[1]}, task_names={self[2]!r}, "
                f"action_dims={self.action_dims})")


def _action_dims(actions, family: EnvFamily) -> Tuple[int, ...]:
    """A family's ``describe`` actions (an int or a layout) as a layout tuple."""
    dims = (actions,) if isinstance(actions, (int, np.integer)) else tuple(actions)
    if not dims or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1
                           for n in dims):
        raise ValueError(f"env family {family.name!r} describes its actions as {actions!r}; expected a "
                         f"positive int or a tuple of them")
    return tuple(int(n) for n in dims)


def describe_env(cfg: EnvConfig) -> EnvDescription:
    """(observation spec, number of actions, task names) without stepping any env; the
    action layout is the result's ``action_dims`` (see :class:`EnvDescription`)."""
    validate_env_config(cfg)
    family, tasks = _resolve(cfg)
    obs_spec, actions = family.describe(cfg, tasks)
    return EnvDescription(obs_spec, _action_dims(actions, family), tasks)


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
