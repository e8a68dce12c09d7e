"""The counting env: a deterministic test env, ``counting`` or ``counting:EPISODE_LEN``.

After torchbeast's tiny counting env (Küttler et al., "TorchBeast", 2019): every value is
a known function of the step, so runtime tests can check that unrolls line up, that
``done`` falls where it should and that the core state carried across unroll boundaries
is the right one.

Slot ``i`` of actor ``a`` (global slot ``g = a * num_envs + i``), episode ``e`` of that
slot (0, 1, ...), step ``t`` within the episode (0 .. L-1, L = EPISODE_LEN)::

    obs[i]        = float32 [t, g, e]
    reward(t, a)  = 1.0 if a == t % NUM_ACTIONS else 0.0     (action a taken at step t)
    after the action at t = L-1 the episode ends: next obs is [0, g, e+1], done = True

so every episode lasts exactly L agent steps and a policy playing ``a = t % 4`` scores L.
Defaults: L = 7 (coprime with the usual unroll lengths, so episode ends fall at every
position of an unroll), NUM_ACTIONS = 4. No randomness: no seed is used.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from envs.base import ObsSpec, VecEnv
from envs.checks import check_actions
from envs.config import EnvConfig
from envs.episodes import EpisodeTracker
from envs.registry import EnvBuild, EnvFamily, register_env_family

DEFAULT_EPISODE_LEN = 7
COUNTING_NUM_ACTIONS = 4
COUNTING_OBS = ObsSpec(shape=(3,), dtype="float32")


def counting_reward(step, action):
    """Reward of ``action`` taken at step ``step`` of an episode (scalars or arrays)."""
    return (np.asarray(action) == np.asarray(step) % COUNTING_NUM_ACTIONS).astype(np.float32)


def parse_counting_arg(items: Sequence[str]) -> int:
    if not items:
        return DEFAULT_EPISODE_LEN
    if len(items) != 1:
        raise ValueError(f"counting spec takes one argument EPISODE_LEN, got {','.join(items)!r}")
    try:
        length = int(items[0])
    except ValueError:
        raise ValueError(f"counting EPISODE_LEN {items[0]!r} is not an integer") from None
    if length < 1:
        raise ValueError(f"counting EPISODE_LEN={length} must be at least 1")
    return length


class CountingVecEnv(VecEnv):
    """N deterministic counting slots; see the module docstring."""

    def __init__(self, build: EnvBuild, episode_len: int):
        self.episode_len = episode_len
        self.num_envs = build.num_envs
        self.obs_spec = COUNTING_OBS
        self.num_actions = COUNTING_NUM_ACTIONS
        self.task_names = list(build.tasks)
        self.task_ids = build.task_ids.copy()
        self._slot = np.array([build.global_slot(i) for i in range(self.num_envs)], dtype=np.int64)
        self._t = np.zeros(self.num_envs, dtype=np.int64)        # [N]
        self._episode = np.zeros(self.num_envs, dtype=np.int64)  # [N]
        self._tracker = EpisodeTracker(self.task_ids, self.task_names)
        self._started = False

    def _obs(self) -> np.ndarray:
        return np.stack([self._t, self._slot, self._episode], axis=1).astype(np.float32)  # [N, 3]

    def reset(self) -> np.ndarray:
        self._t[:] = 0
        self._episode[:] = 0
        self._tracker.reset()
        self._started = True
        return self._obs()

    def step(self, actions: np.ndarray):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = check_actions(actions, self.num_envs, self.num_actions)
        reward = counting_reward(self._t, actions)  # [N]
        self._t += 1
        done = self._t == self.episode_len          # [N]
        self._t[done] = 0
        self._episode[done] += 1
        finished = self._tracker.update(reward, done)
        return self._obs(), reward, done, finished


@register_env_family("counting")
class CountingFamily(EnvFamily):
    """``counting[:EPISODE_LEN]``: float32 [3] observations, 4 actions, fixed-length episodes."""

    def parse_tasks(self, items: Sequence[str]) -> List[str]:
        return [f"counting:{parse_counting_arg(items)}"]

    def describe(self, cfg: EnvConfig, tasks: List[str]) -> Tuple[ObsSpec, int]:
        return COUNTING_OBS, COUNTING_NUM_ACTIONS

    def make(self, build: EnvBuild) -> VecEnv:
        return CountingVecEnv(build, int(build.tasks[0].split(":")[1]))
