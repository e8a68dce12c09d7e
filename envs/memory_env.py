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
the flag together (a sanity setting that needs no memory). Fully numpy-vectorised; the
episode shape is :class:`envs.answer_env.AnswerAtEndVecEnv`'s.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from envs.answer_env import AnswerAtEndVecEnv, parse_int_pair
from envs.base import ObsSpec, VecEnv
from envs.config import EnvConfig
from envs.registry import EnvBuild, EnvFamily, register_env_family

DEFAULT_DELAY = 10
DEFAULT_NUM_CUES = 4
MAX_NUM_CUES = 1024


def parse_memory_arg(items: Sequence[str]) -> Tuple[int, int]:
    """Spec items after ``memory:`` -> (delay, num_cues)."""
    delay, cues = parse_int_pair("memory", items, ("DELAY", "K"), (DEFAULT_DELAY, DEFAULT_NUM_CUES))
    if delay < 0:
        raise ValueError(f"memory DELAY={delay} is negative")
    if not 2 <= cues <= MAX_NUM_CUES:
        raise ValueError(f"memory K={cues} cues is outside [2, {MAX_NUM_CUES}]")
    return delay, cues


def memory_task_name(delay: int, cues: int) -> str:
    return f"memory:{delay}:{cues}"


class MemoryVecEnv(AnswerAtEndVecEnv):
    """N independent cue-recall episodes; see the module docstring."""

    def __init__(self, build: EnvBuild, delay: int, num_cues: int):
        self.delay = delay
        self.num_cues = num_cues
        super().__init__(build, answer_step=delay, num_symbols=num_cues)

    def draw(self, rows: np.ndarray) -> np.ndarray:
        return self._rng.integers(self.num_cues, size=rows.size)

    def symbols(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.where(t == 0, self._answer[rows], -1)

    @property
    def cues(self) -> np.ndarray:
        """int64 [N]: the cue of every slot's current episode (for scripted policies in tests)."""
        return self._answer.copy()


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
