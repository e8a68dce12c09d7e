"""Per-slot episode bookkeeping shared by every env family.

Follows the done convention of DESIGN.md section 2: the reward returned together with
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
        self.lengths = np.zeros(n, dtype=np.int64)    # [N] agent steps so far

    def reset(self) -> None:
        """Forget the episodes in progress (after a full env reset)."""
        self.returns[:] = 0.0
        self.lengths[:] = 0

    def update(self, reward: np.ndarray, done: np.ndarray,
               level_seeds: Optional[np.ndarray] = None) -> List[EpisodeInfo]:
        """Add one step: reward float [N], done bool [N], level_seeds int [N] (read where done)."""
        self.returns += reward
        self.lengths += 1
        if not done.any():
            return []
        finished = []
        for i in np.flatnonzero(done).tolist():
            tid = int(self.task_ids[i])
            finished.append(EpisodeInfo(
                task_id=tid,
                task=self.task_names[tid],
                episode_return=float(self.returns[i]),
                length=int(self.lengths[i]),
                level_seed=-1 if level_seeds is None else int(level_seeds[i]),
                env_index=i,
            ))
        self.returns[done] = 0.0
        self.lengths[done] = 0
        return finished
