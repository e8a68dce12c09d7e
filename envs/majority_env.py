"""The majority task: ``majority``, ``majority:LEN``, ``majority:LEN:K``.

A memory task where the core must *integrate over time* rather than hold one item:
LEN symbols, each one of K, are shown one per step; then a blank step with an
"answer now" flag asks for the symbol that was shown most often. To answer, a policy
must keep a count per symbol (or, for K = 2, one running sum) over the whole episode;
remembering any single step is not enough.

Timeline of one episode (LEN + 1 agent steps, t = step within the episode)::

    t = 0..LEN-1   obs = [one_hot(symbol_t), flag = 0]
    t = LEN        obs = [0 ... 0,           flag = 1]
    reward(t)      = 1.0 if t == LEN and action == the most frequent symbol else 0.0
    after t = LEN the episode ends; the next observation shows the next episode's first symbol

Sequences are drawn uniformly among those whose most frequent symbol is unique (a
sequence with a tie is redrawn), so the answer is always defined. The answer step
shows nothing of the sequence: a memoryless policy, like a uniformly random one,
scores 1/K on average; a policy that counts scores 1. Observations are float32
[K + 1]; K actions. Defaults: LEN = 9, K = 2 (odd LEN with K = 2 never ties). The episode
shape is :class:`envs.answer_env.AnswerAtEndVecEnv`'s.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from envs.answer_env import AnswerAtEndVecEnv, parse_int_pair
from envs.base import ObsSpec, VecEnv
from envs.config import EnvConfig
from envs.registry import EnvBuild, EnvFamily, register_env_family

DEFAULT_LENGTH = 9
DEFAULT_NUM_SYMBOLS = 2
MAX_NUM_SYMBOLS = 64


def parse_majority_arg(items: Sequence[str]) -> Tuple[int, int]:
    """Spec items after ``majority:`` -> (length, num_symbols)."""
    length, k = parse_int_pair("majority", items, ("LEN", "K"), (DEFAULT_LENGTH, DEFAULT_NUM_SYMBOLS))
    if length < 1:
        raise ValueError(f"majority LEN={length} must be at least 1")
    if not 2 <= k <= MAX_NUM_SYMBOLS:
        raise ValueError(f"majority K={k} symbols is outside [2, {MAX_NUM_SYMBOLS}]")
    if k == 2 and length % 2 == 0 and length < 3:
        raise ValueError(f"majority LEN={length} with K=2 has no sequence without a tie")
    return length, k


def majority_task_name(length: int, k: int) -> str:
    return f"majority:{length}:{k}"


def draw_sequences(rng: np.random.Generator, n: int, length: int, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """(symbols int64 [n, length], answer int64 [n]): uniform among sequences whose most
    frequent symbol is unique."""
    seqs = rng.integers(k, size=(n, length))
    while True:
        counts = np.stack([(seqs == s).sum(axis=1) for s in range(k)], axis=1)   # [n, k]
        top = counts.max(axis=1, keepdims=True)
        tie = (counts == top).sum(axis=1) > 1                                    # [n]
        if not tie.any():
            return seqs, counts.argmax(axis=1)
        seqs[tie] = rng.integers(k, size=(int(tie.sum()), length))


class MajorityVecEnv(AnswerAtEndVecEnv):
    """N independent majority-vote episodes; see the module docstring."""

    def __init__(self, build: EnvBuild, length: int, k: int):
        self.length, self.k = length, k
        self._seq = np.zeros((build.num_envs, length), dtype=np.int64)     # [N, LEN]
        super().__init__(build, answer_step=length, num_symbols=k)

    def draw(self, rows: np.ndarray) -> np.ndarray:
        self._seq[rows], answers = draw_sequences(self._rng, rows.size, self.length, self.k)
        return answers

    def symbols(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        shown = t < self.length                       # t = LEN asks and shows nothing
        return np.where(shown, self._seq[rows, np.minimum(t, self.length - 1)], -1)

    @property
    def answers(self) -> np.ndarray:
        """int64 [N]: the right answer of every slot's current episode (for tests)."""
        return self._answer.copy()


@register_env_family("majority")
class MajorityFamily(EnvFamily):
    """``majority[:LEN[:K]]``: the majority-vote task, float32 [K + 1] observations, K actions."""

    def parse_tasks(self, items: Sequence[str]) -> List[str]:
        return [majority_task_name(*parse_majority_arg(items))]

    def describe(self, cfg: EnvConfig, tasks: List[str]) -> Tuple[ObsSpec, int]:
        _, k = _from_name(tasks[0])
        return ObsSpec(shape=(k + 1,), dtype="float32"), k

    def make(self, build: EnvBuild) -> VecEnv:
        return MajorityVecEnv(build, *_from_name(build.tasks[0]))


def _from_name(task: str) -> Tuple[int, int]:
    _, length, k = task.split(":")
    return int(length), int(k)
