"""Per-slot episode bookkeeping shared by every env family.

Follows the done convention of docs/design.md#data-conventions: the reward returned together with
``done[i] = True`` is the last reward of the episode that just ended, so it is added to
that episode's return before the episode is reported and the counters restart.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from envs.base import EpisodeInfo


class EpisodeTracker:
    """Running return and length of every slot; emits one :class:`EpisodeInfo` per finished episode."""

    def __init__(self, task_ids: np.ndarray, task_names: Sequence[str]):
        self.task_ids = np.asarray(task_ids, dtype=np.int64)  # [N]
        self.task_names = list(task_names)
        n = self.task_ids.shape[0]
        self.returns = np.zeros(n, dtype=np.float64)  # [N] sum of the env's own rewards
        self._start = np.zeros(n, dtype=np.int64)     # [N] step count when the episode began
        self._steps = 0                               # steps since the tracker's reset

    @property
    def lengths(self) -> np.ndarray:
        """int64 [N]: agent steps of every slot's episode in progress."""
        return self._steps - self._start

    def reset(self) -> None:
        """Forget the episodes in progress (after a full env reset)."""
        self.returns[:] = 0.0
        self._start[:] = 0
        self._steps = 0

    def update(self, reward: np.ndarray, done: np.ndarray,
               level_seeds: Optional[np.ndarray] = None,
               any_done: Optional[bool] = None) -> List[EpisodeInfo]:
        """Add one step: reward float [N], done bool [N], level_seeds int [N] (read where done).

        ``any_done`` may pass ``done.any()`` when the caller has it already. Kept to a
        handful of numpy calls per step: this runs once per vector step in every actor.
        """
        self.returns += reward
        self._steps += 1
        if not (done.any() if any_done is None else any_done):
            return []
        idx = np.flatnonzero(done)                  # [D]
        returns = self.returns[idx].tolist()
        lengths = (self._steps - self._start[idx]).tolist()
        tids = self.task_ids[idx].tolist()
        seeds = [-1] * len(idx) if level_seeds is None else level_seeds[idx].tolist()
        names = self.task_names
        finished = [
            EpisodeInfo(task_id=t, task=names[t], episode_return=r, length=l, level_seed=s, env_index=i)
            for i, t, r, l, s in zip(idx.tolist(), tids, returns, lengths, seeds)
        ]
        self.returns[idx] = 0.0
        self._start[idx] = self._steps
        return finished
