"""The cue-recall memory task: ``memory``, ``memory:DELAY``, ``memory:DELAY:K``.

A T-maze-style recall test in the spirit of the memory probes used for fast-weight
memories (Schlag et al., 2021; Irie et al., ICML 2022): a cue, one of K, is shown only
at the first step of an episode, then DELAY steps of blank observations follow; the
last of them carries an "answer now" flag and the action taken there must equal the cue.

Timeline of one episode (DELAY + 1 agent steps, t = step within the episode)::

    t = 0          obs = [one_hot(cue), flag = (DELAY == 0)]
    t = 1..DELAY   obs = [0 ... 0,      flag = (t == DELAY)]
    reward(t)      = 1.0 if t == DELAY and action == cue else 0.0
    after t = DELAY the episode ends; the next observation shows a new cue (done = True)

Wrong answers score 0, not a penalty, so a return is the probability of a correct
answer: a memoryless policy scores 1/K on average (it cannot see the cue when it must
answer, for DELAY >= 1), a policy that remembers the cue scores 1. Observations are
float32 [K + 1]; K actions. Defaults: DELAY = 10, K = 4. DELAY = 0 shows the cue and
the flag together (a sanity setting that needs no memory). Fully numpy-vectorised.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from envs.base import ObsSpec, VecEnv
from envs.checks import check_actions
from envs.config import EnvConfig
from envs.episodes import EpisodeTracker
from envs.registry import EnvBuild, EnvFamily, register_env_family

DEFAULT_DELAY = 10
DEFAULT_NUM_CUES = 4
MAX_NUM_CUES = 1024


def parse_memory_arg(items: Sequence[str]) -> Tuple[int, int]:
    """Spec items after ``memory:`` -> (delay, num_cues)."""
    if not items:
        return DEFAULT_DELAY, DEFAULT_NUM_CUES
    if len(items) != 1:
        raise ValueError(f"memory spec takes one argument DELAY or DELAY:K, got {','.join(items)!r}")
    parts = items[0].split(":")
    if len(parts) > 2:
        raise ValueError(f"memory spec argument {items[0]!r} is not DELAY or DELAY:K")
    try:
        delay = int(parts[0])
        cues = int(parts[1]) if len(parts) == 2 else DEFAULT_NUM_CUES
    except ValueError:
        raise ValueError(f"memory spec argument {items[0]!r} is not DELAY or DELAY:K with integers") from None
    if delay < 0:
        raise ValueError(f"memory DELAY={delay} is negative")
    if not 2 <= cues <= MAX_NUM_CUES:
        raise ValueError(f"memory K={cues} cues is outside [2, {MAX_NUM_CUES}]")
    return delay, cues


def memory_task_name(delay: int, cues: int) -> str:
    return f"memory:{delay}:{cues}"


class MemoryVecEnv(VecEnv):
    """N independent cue-recall episodes; see the module docstring."""

    def __init__(self, build: EnvBuild, delay: int, num_cues: int):
        self.delay = delay
        self.num_cues = num_cues
        self.num_envs = build.num_envs
        self.obs_spec = ObsSpec(shape=(num_cues + 1,), dtype="float32")
        self.num_actions = num_cues
        self.task_names = list(build.tasks)
        self.task_ids = build.task_ids.copy()
        self._rng = np.random.default_rng(build.seed())
        self._t = np.zeros(self.num_envs, dtype=np.int64)    # [N] step within the episode
        self._cue = np.zeros(self.num_envs, dtype=np.int64)  # [N]
        self._rows = np.arange(self.num_envs)
        self._tracker = EpisodeTracker(self.task_ids, self.task_names)
        self._started = False

    def _obs(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, self.num_cues + 1), dtype=np.float32)  # [N, K+1]
        show = self._t == 0
        obs[self._rows[show], self._cue[show]] = 1.0
        obs[:, self.num_cues] = self._t == self.delay
        return obs

    @property
    def cues(self) -> np.ndarray:
        """int64 [N]: the cue of every slot's current episode (for scripted policies in tests)."""
        return self._cue.copy()

    def reset(self) -> np.ndarray:
        self._t[:] = 0
        self._cue[:] = self._rng.integers(self.num_cues, size=self.num_envs)
        self._tracker.reset()
        self._started = True
        return self._obs()

    def step(self, actions: np.ndarray):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = check_actions(actions, self.num_envs, self.num_actions)
        answering = self._t == self.delay                                   # [N]
        reward = (answering & (actions == self._cue)).astype(np.float32)   # [N]
        done = answering                                                    # the answer ends it
        self._t += 1
        n_new = int(done.sum())
        if n_new:
            self._t[done] = 0
            self._cue[done] = self._rng.integers(self.num_cues, size=n_new)
        finished = self._tracker.update(reward, done)
        return self._obs(), reward, done, finished


@register_env_family("memory")
class MemoryFamily(EnvFamily):
    """``memory[:DELAY[:K]]``: the cue-recall task, float32 [K + 1] observations, K actions."""

    def parse_tasks(self, items: Sequence[str]) -> List[str]:
        return [memory_task_name(*parse_memory_arg(items))]

    def describe(self, cfg: EnvConfig, tasks: List[str]) -> Tuple[ObsSpec, int]:
        _, cues = _from_name(tasks[0])
        return ObsSpec(shape=(cues + 1,), dtype="float32"), cues

    def make(self, build: EnvBuild) -> VecEnv:
        return MemoryVecEnv(build, *_from_name(build.tasks[0]))


def _from_name(task: str) -> Tuple[int, int]:
    _, delay, cues = task.split(":")
    return int(delay), int(cues)
