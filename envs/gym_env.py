"""Any registered gymnasium environment (Towers et al., "Gymnasium", 2024) with Box or
Discrete observations and a Discrete action space: ``gym:CartPole-v1``.

Vectorised with gymnasium's ``SyncVectorEnv`` in ``AutoresetMode.SAME_STEP``: when an
episode ends (terminated or truncated) the env is reset within the same step, the
returned observation is the first of the new episode (``done[i]`` true) and the reward
is the last one of the finished episode (DESIGN.md section 2). Observations are float32:
Box observations keep their shape, a Discrete(n) observation becomes a one-hot vector [n].
"""

from __future__ import annotations

import difflib
from typing import List, Sequence, Tuple

import numpy as np

from envs.base import ObsSpec, VecEnv
from envs.checks import check_actions
from envs.config import EnvConfig
from envs.episodes import EpisodeTracker
from envs.registry import EnvBuild, EnvFamily, register_env_family


def _spaces_of(env_id: str):
    """(observation space, action space) of ``env_id``; ValueError if it cannot be built or used."""
    import gymnasium as gym
    from gymnasium.spaces import Box, Discrete

    try:
        env = gym.make(env_id)
    except Exception as e:  # missing optional dependency (mujoco, box2d, ...) and the like
        raise ValueError(f"gymnasium env {env_id!r} cannot be built: {type(e).__name__}: {e}") from None
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    if not isinstance(act_space, Discrete):
        raise ValueError(f"gymnasium env {env_id!r} has action space {act_space}; only Discrete is supported")
    if not isinstance(obs_space, (Box, Discrete)):
        raise ValueError(f"gymnasium env {env_id!r} has observation space {obs_space}; "
                         f"only Box and Discrete are supported")
    return obs_space, act_space


def _obs_spec(obs_space) -> ObsSpec:
    from gymnasium.spaces import Discrete
    if isinstance(obs_space, Discrete):
        return ObsSpec(shape=(int(obs_space.n),), dtype="float32")
    return ObsSpec(shape=tuple(int(s) for s in obs_space.shape), dtype="float32")


class GymVecEnv(VecEnv):
    """N copies of one gymnasium env in a SAME_STEP ``SyncVectorEnv``."""

    def __init__(self, build: EnvBuild):
        import gymnasium as gym
        from gymnasium.spaces import Discrete
        from gymnasium.vector import AutoresetMode, SyncVectorEnv

        env_id = build.tasks[0]
        obs_space, act_space = _spaces_of(env_id)
        self.num_envs = build.num_envs
        self.obs_spec = _obs_spec(obs_space)
        self.num_actions = int(act_space.n)
        self._action_start = int(act_space.start)
        self.task_names = list(build.tasks)
        self.task_ids = build.task_ids.copy()
        # Discrete observations -> one-hot rows of this table.
        self._one_hot = (np.eye(obs_space.n, dtype=np.float32)
                         if isinstance(obs_space, Discrete) else None)
        self._obs_start = int(obs_space.start) if isinstance(obs_space, Discrete) else 0
        self._vec = SyncVectorEnv([lambda: gym.make(env_id)] * self.num_envs,
                                  autoreset_mode=AutoresetMode.SAME_STEP)
        self._seeds = [build.seed(i) for i in range(self.num_envs)]
        self._tracker = EpisodeTracker(self.task_ids, self.task_names)
        self._seeded = False
        self._started = False

    def _convert(self, obs: np.ndarray) -> np.ndarray:
        if self._one_hot is not None:
            return self._one_hot[np.asarray(obs, dtype=np.int64) - self._obs_start]  # [N, n]
        return np.asarray(obs, dtype=np.float32)  # [N, *shape]

    def reset(self) -> np.ndarray:
        obs, _ = self._vec.reset(seed=None if self._seeded else self._seeds)
        self._seeded = True
        self._started = True
        self._tracker.reset()
        return self._convert(obs)

    def step(self, actions: np.ndarray):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = check_actions(actions, self.num_envs, self.num_actions)
        obs, rew, term, trunc, _ = self._vec.step(actions.astype(np.int64) + self._action_start)
        reward = rew.astype(np.float32)
        done = np.logical_or(term, trunc)
        finished = self._tracker.update(reward, done)
        return self._convert(obs), reward, done, finished

    def close(self) -> None:
        self._vec.close()


@register_env_family("gym")
class GymFamily(EnvFamily):
    """``gym:ENV_ID``: one registered gymnasium env id (exact spelling, e.g. CartPole-v1)."""

    def parse_tasks(self, items: Sequence[str]) -> List[str]:
        import gymnasium as gym
        if len(items) != 1:
            raise ValueError(f"gym spec takes exactly one env id, got {','.join(items) or 'none'!r}")
        env_id = items[0]
        if env_id not in gym.registry:
            ids = sorted(gym.registry)
            close = difflib.get_close_matches(env_id, ids, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown gymnasium env id {env_id!r}{hint}; registered ids: {', '.join(ids)}")
        return [env_id]

    def validate(self, cfg: EnvConfig, tasks: List[str]) -> None:
        if cfg.split:
            raise ValueError(f"split {cfg.split!r} applies to procgen only, not to gym")
        _spaces_of(tasks[0])

    def describe(self, cfg: EnvConfig, tasks: List[str]) -> Tuple[ObsSpec, int]:
        obs_space, act_space = _spaces_of(tasks[0])
        return _obs_spec(obs_space), int(act_space.n)

    def make(self, build: EnvBuild) -> VecEnv:
        return GymVecEnv(build)
