"""Gymnasium environments (Towers et al., "Gymnasium", 2024): ``gym:ENV_ID``,
``gym:MODULE:ENV_ID`` and comma lists of them as multi-task sets.

``gym:MODULE:ENV_ID`` is gymnasium's own form: ``MODULE`` is imported (it registers its
envs), then ``ENV_ID`` is made. The task name keeps the module, so every process that
builds the env (trainer, each local or Ray actor, evaluation) imports it too. Packages
that register several families can also be imported with ``--env-import MODULE``.

A comma list (``gym:popgym:popgym-RepeatFirstEasy-v0,popgym:popgym-RepeatPreviousEasy-v0``)
is a multi-task set like ``procgen:`` and ``atari:``: slots take tasks round-robin, every
task keeps its own episode statistics and the agent can read the one-hot task id. The
ids must have equal observation and action spaces (so one action layout).

Observations become float32 vectors (or keep their shape for a top-level ``Box``):

* ``Box``: as is (inside a ``Tuple``/``Dict``: flattened);
* ``Discrete(n)``: one-hot [n];
* ``MultiDiscrete(nvec)``: one one-hot per component, concatenated [sum(nvec)];
* ``Tuple`` / ``Dict`` of the above: their flat parts concatenated (``Dict`` in
  gymnasium's key order).

Actions (the action layout, docs/design.md#data-conventions):

* ``Discrete(n)``: layout ``(n,)``, one categorical head; the action of an env is an int;
* ``MultiDiscrete(nvec)``: layout ``tuple(nvec)`` (a multi-dimensional ``nvec`` flattened in C
  order), one categorical head per component; the actions of the N envs are an int array
  [N, K], each env's ``step`` gets its row reshaped to ``nvec.shape`` (plus ``start``).

Any other space is refused in one line naming it.

Vectorised with gymnasium's ``SyncVectorEnv`` in ``AutoresetMode.SAME_STEP``: when an
episode ends (terminated or truncated) the env is reset within the same step, the
returned observation is the first of the new episode (``done[i]`` true) and the reward
is the last one of the finished episode (docs/design.md#data-conventions).
"""

from __future__ import annotations

import difflib
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from envs.base import ObsSpec, VecEnv
from envs.checks import check_actions, check_multi_actions
from envs.config import EnvConfig
from envs.episodes import EpisodeTracker
from envs.imports import import_module
from envs.registry import EnvBuild, EnvFamily, register_env_family

SUPPORTED_OBS = "Box, Discrete, MultiDiscrete and Tuple/Dict of those"
SUPPORTED_ACTIONS = "Discrete and MultiDiscrete"


def split_gym_item(item: str) -> Tuple[str, str]:
    """``"mod.sub:Env-v0"`` -> ``("mod.sub", "Env-v0")``; ``"Env-v0"`` -> ``("", "Env-v0")``."""
    module, sep, env_id = item.partition(":")
    if not sep:
        return "", item
    if not module or not env_id or ":" in env_id:
        raise ValueError(f"gym item {item!r} is not ENV_ID or MODULE:ENV_ID")
    return module, env_id


_SPACES: Dict[str, tuple] = {}


def gym_spaces(make_id: str, label: str = ""):
    """(observation space, action space) of ``gym.make(make_id)``, cached per process;
    ValueError if it cannot be built."""
    if make_id not in _SPACES:
        import gymnasium as gym
        try:
            env = gym.make(make_id)
        except Exception as e:  # missing optional dependency (mujoco, box2d, ...) and the like
            msg = str(e).splitlines()[0] if str(e) else ""
            raise ValueError(f"gymnasium env {label or make_id!r} cannot be built: {type(e).__name__}: {msg}") from None
        _SPACES[make_id] = (env.observation_space, env.action_space)
        env.close()
    return _SPACES[make_id]


Converter = Callable[[object], np.ndarray]   # batched gymnasium obs -> float32 [N, size]


def _flat_part(space, label: str, path: str) -> Tuple[int, Converter]:
    """(size, converter to [N, size]) of a space nested in a Tuple/Dict (or a vector space)."""
    from gymnasium.spaces import Box, Dict as DictSpace, Discrete, MultiDiscrete, Tuple as TupleSpace

    where = f" (component {path})" if path else ""
    if isinstance(space, Box):
        size = int(np.prod(space.shape))
        return size, lambda x: np.asarray(x, dtype=np.float32).reshape(len(x), size)
    if isinstance(space, Discrete):
        n, start = int(space.n), int(space.start)
        eye = np.eye(n, dtype=np.float32)
        return n, lambda x: eye[np.asarray(x, dtype=np.int64).reshape(-1) - start]
    if isinstance(space, MultiDiscrete):
        nvec = np.asarray(space.nvec, dtype=np.int64).reshape(-1)            # [k]
        start = np.asarray(space.start, dtype=np.int64).reshape(-1)          # [k]
        offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])                # [k]
        size = int(nvec.sum())

        def one_hot(x):
            idx = np.asarray(x, dtype=np.int64).reshape(-1, nvec.size) - start + offsets   # [N, k]
            out = np.zeros((idx.shape[0], size), dtype=np.float32)
            np.put_along_axis(out, idx, 1.0, axis=1)
            return out
        return size, one_hot
    if isinstance(space, (TupleSpace, DictSpace)):
        keys = list(range(len(space.spaces))) if isinstance(space, TupleSpace) else list(space.spaces)
        parts = [_flat_part(space[k], label, f"{path}[{k!r}]" if isinstance(k, str) else f"{path}[{k}]")
                 for k in keys]
        size = sum(p[0] for p in parts)
        if size == 0:
            raise ValueError(f"gymnasium env {label!r} has an empty observation space {space}")

        def concat(x):
            return np.concatenate([conv(x[k]) for k, (_, conv) in zip(keys, parts)], axis=1)
        return size, concat
    raise ValueError(f"gymnasium env {label!r} has observation space {space}{where}; "
                     f"supported: {SUPPORTED_OBS}")


def obs_layout(obs_space, label: str) -> Tuple[ObsSpec, Converter]:
    """The float32 ObsSpec of ``obs_space`` and the converter of batched observations."""
    from gymnasium.spaces import Box
    if isinstance(obs_space, Box):
        shape = tuple(int(s) for s in obs_space.shape)
        return ObsSpec(shape=shape, dtype="float32"), lambda x: np.asarray(x, dtype=np.float32)
    size, conv = _flat_part(obs_space, label, "")
    return ObsSpec(shape=(size,), dtype="float32"), conv


def action_layout(act_space, label: str) -> Tuple[int, ...]:
    """The action layout of a supported action space: ``(n,)`` for ``Discrete(n)``,
    ``tuple(nvec)`` (flattened) for ``MultiDiscrete(nvec)``; ValueError naming the space otherwise."""
    from gymnasium.spaces import Discrete, MultiDiscrete
    if isinstance(act_space, Discrete):
        return (int(act_space.n),)
    if isinstance(act_space, MultiDiscrete) and act_space.nvec.size > 0:
        return tuple(int(n) for n in np.asarray(act_space.nvec).reshape(-1))
    raise ValueError(f"gymnasium env {label!r} has action space {act_space}; "
                     f"supported: {SUPPORTED_ACTIONS}")


def num_actions_of(act_space, label: str) -> int:
    """The width of the policy's logits for ``act_space``: the sum of its action layout."""
    return sum(action_layout(act_space, label))


def check_task_spaces(labels: Sequence[str], make_ids: Sequence[str]) -> Tuple[ObsSpec, Tuple[int, ...]]:
    """Spaces of every task: supported and equal across the set; (ObsSpec, action layout)."""
    first_obs, first_act = gym_spaces(make_ids[0], labels[0])
    spec, _ = obs_layout(first_obs, labels[0])
    dims = action_layout(first_act, labels[0])
    for label, make_id in zip(labels[1:], make_ids[1:]):
        obs_space, act_space = gym_spaces(make_id, label)
        if obs_space != first_obs:
            raise ValueError(f"tasks {labels[0]!r} and {label!r} have different observation spaces "
                             f"({first_obs} vs {obs_space}); a multi-task set needs equal spaces")
        if act_space != first_act:
            raise ValueError(f"tasks {labels[0]!r} and {label!r} have different action spaces "
                             f"({first_act} vs {act_space}); a multi-task set needs equal spaces")
    return spec, dims


class GymVecEnv(VecEnv):
    """N gymnasium envs (task ``task_ids[i]`` made from ``make_ids[task_ids[i]]``) in one
    SAME_STEP ``SyncVectorEnv``."""

    def __init__(self, build: EnvBuild, make_ids: Sequence[str]):
        import gymnasium as gym
        from gymnasium.vector import AutoresetMode, SyncVectorEnv

        self.task_names = list(build.tasks)
        self.task_ids = build.task_ids.copy()
        self.num_envs = build.num_envs
        self.obs_spec, self._action_dims = check_task_spaces(self.task_names, make_ids)
        self.num_actions = sum(self._action_dims)
        obs_space, act_space = gym_spaces(make_ids[0], self.task_names[0])
        _, self._convert = obs_layout(obs_space, self.task_names[0])
        from gymnasium.spaces import MultiDiscrete
        self._multi = isinstance(act_space, MultiDiscrete)
        if self._multi:
            self._action_shape = tuple(act_space.nvec.shape)                 # per env
            self._action_start = np.asarray(act_space.start, dtype=np.int64).reshape(-1)   # [K]
        else:
            self._action_start = int(act_space.start)
        fns = [(lambda mid=make_ids[int(t)]: gym.make(mid)) for t in self.task_ids]
        self._vec = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
        self._seeds = [build.seed(i) for i in range(self.num_envs)]
        self._tracker = EpisodeTracker(self.task_ids, self.task_names)
        self._seeded = False
        self._started = False

    def reset(self) -> np.ndarray:
        obs, _ = self._vec.reset(seed=None if self._seeded else self._seeds)
        self._seeded = True
        self._started = True
        self._tracker.reset()
        return self._convert(obs)

    def step(self, actions: np.ndarray):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self._multi:
            actions = check_multi_actions(actions, self.num_envs, self._action_dims)     # [N, K]
            actions = (actions.astype(np.int64) + self._action_start).reshape(self.num_envs,
                                                                              *self._action_shape)
        else:
            actions = check_actions(actions, self.num_envs, self.num_actions).astype(np.int64) \
                + self._action_start                                                     # [N]
        obs, rew, term, trunc, _ = self._vec.step(actions)
        reward = np.asarray(rew, dtype=np.float32)
        done = np.logical_or(term, trunc)
        finished = self._tracker.update(reward, done)
        return self._convert(obs), reward, done, finished

    @property
    def action_dims(self) -> Tuple[int, ...]:
        return self._action_dims

    def close(self) -> None:
        self._vec.close()


def _check_registered(env_id: str, item: str) -> None:
    import gymnasium as gym
    if env_id not in gym.registry:
        ids = sorted(gym.registry)
        close = difflib.get_close_matches(env_id, ids, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown gymnasium env id {env_id!r} in {item!r}{hint}; registered ids: "
                         f"{', '.join(ids)}")


@register_env_family("gym")
class GymFamily(EnvFamily):
    """``gym:[MODULE:]ENV_ID[,...]``: registered gymnasium env ids (exact spelling, e.g.
    CartPole-v1), a module to import first, a comma list as a multi-task set."""

    def parse_tasks(self, items: Sequence[str]) -> List[str]:
        if not items:
            raise ValueError("gym spec names no env id; expected e.g. gym:CartPole-v1")
        tasks: List[str] = []
        for item in items:
            module, env_id = split_gym_item(item)
            if module:
                import_module(module, f"gym:{item}")
            _check_registered(env_id, item)
            if item in tasks:
                raise ValueError(f"gym env {item!r} appears twice in the task set")
            tasks.append(item)
        return tasks

    def validate(self, cfg: EnvConfig, tasks: List[str]) -> None:
        check_task_spaces(tasks, tasks)

    def describe(self, cfg: EnvConfig, tasks: List[str]) -> Tuple[ObsSpec, Tuple[int, ...]]:
        return check_task_spaces(tasks, tasks)

    def make(self, build: EnvBuild) -> VecEnv:
        return GymVecEnv(build, build.tasks)
