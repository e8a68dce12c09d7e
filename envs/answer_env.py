"""What the project's two synthetic memory tasks share: fixed-length episodes that end
with one question.

``memory`` (cue recall, :mod:`envs.memory_env`) and ``majority`` (majority vote,
:mod:`envs.majority_env`) have the same episode shape: steps ``t = 0 .. L`` with
float32 ``[K + 1]`` observations (a one-hot symbol part and an "answer now" flag), K
actions, and one step, ``t = L``, where the action is scored (reward 1.0 if it equals
the episode's answer, else 0.0) and the episode ends; the next observation starts the
next episode in that slot. :class:`AnswerAtEndVecEnv` owns that shape (the clock,
scoring, done, episode bookkeeping, resets); a task says only how an episode is drawn
(:meth:`~AnswerAtEndVecEnv.draw`) and what its symbol part shows at step ``t``
(:meth:`~AnswerAtEndVecEnv.symbols`).

The spec argument of both families is ``A`` or ``A:K`` with integers;
:func:`parse_int_pair` parses it with each family's names and defaults.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from envs.base import ObsSpec, VecEnv
from envs.checks import check_actions
from envs.episodes import EpisodeTracker
from envs.registry import EnvBuild


def parse_int_pair(family: str, items: Sequence[str], names: Tuple[str, str],
                   defaults: Tuple[int, int]) -> Tuple[int, int]:
    """Spec items after ``family:`` -> two integers; ``names`` like ("DELAY", "K"). Range
    checks are the caller's."""
    first, second = names
    if not items:
        return defaults
    if len(items) != 1:
        raise ValueError(f"{family} spec takes one argument {first} or {first}:{second}, got {','.join(items)!r}")
    parts = items[0].split(":")
    if len(parts) > 2:
        raise ValueError(f"{family} spec argument {items[0]!r} is not {first} or {first}:{second}")
    try:
        a = int(parts[0])
        b = int(parts[1]) if len(parts) == 2 else defaults[1]
    except ValueError:
        raise ValueError(f"{family} spec argument {items[0]!r} is not {first} or {first}:{second} "
                         "with integers") from None
    return a, b


class AnswerAtEndVecEnv(VecEnv):
    """N independent episodes of ``answer_step + 1`` steps with ``num_symbols`` actions;
    the action at ``t = answer_step`` is scored against the episode's answer.

    Subclasses implement :meth:`draw` and :meth:`symbols`.
    """

    def __init__(self, build: EnvBuild, answer_step: int, num_symbols: int):
        self.answer_step = answer_step
        self.num_symbols = num_symbols
        self.num_envs = build.num_envs
        self.obs_spec = ObsSpec(shape=(num_symbols + 1,), dtype="float32")
        self.num_actions = num_symbols
        self.task_names = list(build.tasks)
        self.task_ids = build.task_ids.copy()
        self._rng = np.random.default_rng(build.seed())
        self._t = np.zeros(self.num_envs, dtype=np.int64)        # [N] step within the episode
        self._answer = np.zeros(self.num_envs, dtype=np.int64)   # [N]
        self._rows = np.arange(self.num_envs)
        self._tracker = EpisodeTracker(self.task_ids, self.task_names)
        self._started = False

    # -- what a task defines ---------------------------------------------------------
    def draw(self, rows: np.ndarray) -> np.ndarray:
        """Draw new episodes for ``rows`` (int64 [n]) from ``self._rng``; store what
        :meth:`symbols` needs and return their answers, int64 [n]."""
        raise NotImplementedError

    def symbols(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The symbol shown (int64 [n]) at steps ``t`` (0 .. ``answer_step``) of ``rows``,
        or -1 where the step shows none."""
        raise NotImplementedError

    # -- the shared episode shape -----------------------------------------------------
    def _new(self, rows: np.ndarray) -> None:
        self._answer[rows] = self.draw(rows)
        self._t[rows] = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, self.num_symbols + 1), dtype=np.float32)   # [N, K+1]
        sym = self.symbols(self._rows, self._t)
        shown = sym >= 0
        obs[self._rows[shown], sym[shown]] = 1.0
        obs[:, self.num_symbols] = self._t == self.answer_step
        return obs

    def reset(self) -> np.ndarray:
        self._new(self._rows)
        self._tracker.reset()
        self._started = True
        return self._obs()

    def step(self, actions: np.ndarray):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = check_actions(actions, self.num_envs, self.num_actions)
        answering = self._t == self.answer_step                                # [N]
        reward = (answering & (actions == self._answer)).astype(np.float32)   # [N]
        done = answering                                                       # the answer ends it
        self._t += 1
        if done.any():
            self._new(self._rows[done])
        finished = self._tracker.update(reward, done)
        return self._obs(), reward, done, finished
