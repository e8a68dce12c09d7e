"""The env-family registry: one :class:`EnvFamily` per spec prefix (``procgen``, ``atari``, ...).

A family turns the items of a spec string into canonical task names, validates the
options that concern it, describes its observation/action layout without stepping,
and builds a :class:`~envs.base.VecEnv` for a given slot-to-task assignment. New
families plug in with::

    @register_env_family("mygame")
    class MyFamily(EnvFamily):
        ...

Family modules import their simulator lazily, so ``import envs`` stays cheap on
machines that lack procgen or ale-py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple, Type, Union

import numpy as np

from envs.base import ObsSpec, VecEnv
from envs.config import EnvConfig


def derive_seed(*keys: int) -> int:
    """A 31-bit seed mixed from non-negative integer ``keys`` (numpy SeedSequence)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0] & 0x7FFFFFFF)


@dataclass
class EnvBuild:
    """Everything a family needs to build one actor's vector env.

    ``task_ids[i]`` is the task of local slot ``i``; global slot ``g = actor_index *
    num_envs + i`` (the round-robin key). Seeds derive from ``(cfg.seed, seed_offset,
    actor_index, ...)`` so different actors and slots never share one.
    """

    cfg: EnvConfig
    tasks: List[str]          # the whole task set, canonical names, global order
    task_ids: np.ndarray      # int64 [N]
    actor_index: int
    seed_offset: int

    @property
    def num_envs(self) -> int:
        return int(self.task_ids.shape[0])

    def global_slot(self, i: int) -> int:
        return self.actor_index * self.num_envs + i

    def seed(self, *keys: int) -> int:
        return derive_seed(self.cfg.seed, self.seed_offset, self.actor_index, *keys)

    def slots_of(self, task_id: int) -> np.ndarray:
        """int64 [n_k]: local slots of ``task_id`` in slot order."""
        return np.flatnonzero(self.task_ids == task_id)


class EnvFamily:
    """Interface of an env family; subclasses override every method."""

    name: str = ""
    #: whether ``cfg.split`` (ProcGen's level splits) means something to this family
    has_level_splits: bool = False

    def parse_tasks(self, items: Sequence[str]) -> List[str]:
        """Spec items after ``family:`` -> canonical task names; ValueError on unknown names."""
        raise NotImplementedError

    def check(self, cfg: EnvConfig, tasks: List[str]) -> None:
        """The checks every family gets (a level split only where the family has them), then
        :meth:`validate`."""
        if cfg.split and not self.has_level_splits:
            raise ValueError(f"split {cfg.split!r} applies to procgen only, not to {self.name}")
        self.validate(cfg, tasks)

    def validate(self, cfg: EnvConfig, tasks: List[str]) -> None:
        """Raise ValueError (one line, naming the bad value) for options this family refuses
        (default: none beyond :meth:`check`'s)."""

    def describe(self, cfg: EnvConfig, tasks: List[str]) -> Tuple[ObsSpec, Union[int, Tuple[int, ...]]]:
        """(observation spec, actions), without stepping anything: ``actions`` is the number
        of actions of a Discrete space, or the action layout, a tuple with the number of
        choices of each component (``tuple(nvec)`` of a MultiDiscrete space)."""
        raise NotImplementedError

    def make(self, build: EnvBuild) -> VecEnv:
        raise NotImplementedError


_FAMILIES: Dict[str, EnvFamily] = {}


def register_env_family(name: str) -> Callable[[Type[EnvFamily]], Type[EnvFamily]]:
    """Class decorator: register an :class:`EnvFamily` subclass under spec prefix ``name``."""

    def deco(cls: Type[EnvFamily]) -> Type[EnvFamily]:
        if name in _FAMILIES:
            raise ValueError(f"env family {name!r} is already registered")
        inst = cls()
        inst.name = name
        _FAMILIES[name] = inst
        return cls

    return deco


def get_env_family(name: str) -> EnvFamily:
    if name not in _FAMILIES:
        raise ValueError(f"unknown env family {name!r}; valid families: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def list_env_families() -> List[str]:
    return sorted(_FAMILIES)
