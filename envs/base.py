"""The one vectorised environment interface every env family implements.

``done[i]`` follows docs/design.md#data-conventions: true when ``obs[i]`` is the *first*
observation of a new episode (the env was reset after the previous step). The
reward returned with it is the last reward of the episode that just ended.

Every finished episode is reported once as an :class:`EpisodeInfo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np


@dataclass
class EpisodeInfo:
    """One finished episode."""

    task_id: int          # index into VecEnv.task_names
    task: str             # task name, e.g. "bigfish" or "Pong"
    episode_return: float # sum of the env's own (unclipped) rewards
    length: int           # agent steps in the episode
    level_seed: int = -1  # ProcGen level seed; -1 where the env has none
    env_index: int = -1   # slot in the vector env


@dataclass
class ObsSpec:
    """Observation layout: ``shape`` without the env dimension, numpy dtype name."""

    shape: Tuple[int, ...]
    dtype: str = "uint8"


class VecEnv:
    """N environments stepped together.

    Attributes set by subclasses:
      num_envs:     N
      obs_spec:     ObsSpec (ProcGen [3, 64, 64] uint8; Atari [4, 84, 84] uint8; vectors float32)
      num_actions:  size of the Discrete action space (for a MultiDiscrete one: the sum of
                    the component sizes, the width of the policy's logits)
      task_names:   names of the tasks in this env's task set (global task-set order)
      task_ids:     int64 [N], task id of every slot

    ``action_dims`` is the action layout: ``(num_actions,)`` for a Discrete space (every
    family but ``gym``/``popgym`` with a MultiDiscrete space, which override it with
    ``tuple(nvec)``); docs/design.md#data-conventions.
    """

    num_envs: int
    obs_spec: ObsSpec
    num_actions: int
    task_names: List[str]
    task_ids: np.ndarray

    @property
    def action_dims(self) -> Tuple[int, ...]:
        """The action layout: one entry per action component, its number of choices."""
        return (int(self.num_actions),)

    def random_actions(self, rng: np.random.Generator) -> np.ndarray:
        """Uniformly random actions of every env: int64 [N], or [N, K] for a layout of K > 1."""
        dims = self.action_dims
        if len(dims) == 1:
            return rng.integers(0, dims[0], self.num_envs)
        return rng.integers(0, dims, (self.num_envs, len(dims)))

    def reset(self) -> np.ndarray:
        """Reset every env; returns obs [N, *obs_spec.shape]. ``done`` is implicitly all true."""
        raise NotImplementedError

    def step(self, actions: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[EpisodeInfo]]:
        """actions int [N] ([N, K] for a layout of K > 1 components) -> (obs [N, ...],
        reward float32 [N], done bool [N], finished episodes)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
