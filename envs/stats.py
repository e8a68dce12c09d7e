"""Per-task episode statistics for multi-task training logs and evaluation.

:class:`EpisodeStats` accumulates :class:`~envs.base.EpisodeInfo` records per task of a
task set: episode count, mean return and mean length, both over a recent window (the
last ``window`` episodes of the task, for training curves) and cumulative (every
episode since the start, for evaluation).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, Iterable, List, Sequence, Tuple

from envs.base import EpisodeInfo


@dataclass
class TaskSummary:
    """Statistics of one task; means are NaN while the task has no finished episode."""

    count: int              # episodes since the start
    mean_return: float      # over the recent window
    mean_length: float      # over the recent window
    total_mean_return: float
    total_mean_length: float
    window_count: int       # episodes in the recent window


class EpisodeStats:
    """Accumulate finished episodes per task (see the module docstring)."""

    def __init__(self, task_names: Sequence[str], window: int = 100):
        if window < 1:
            raise ValueError(f"window={window} must be at least 1")
        self.task_names = list(task_names)
        self.window = window
        n = len(self.task_names)
        self._recent: List[Deque[Tuple[float, int]]] = [deque(maxlen=window) for _ in range(n)]
        self._count = [0] * n
        self._sum_return = [0.0] * n
        self._sum_length = [0] * n

    def add(self, episodes: Iterable[EpisodeInfo]) -> None:
        """Record finished episodes (e.g. the list a VecEnv step returns)."""
        for ep in episodes:
            tid = ep.task_id
            if not 0 <= tid < len(self.task_names) or self.task_names[tid] != ep.task:
                raise ValueError(f"episode of task {ep.task!r} (id {tid}) does not belong to the "
                                 f"task set {self.task_names}")
            self._recent[tid].append((ep.episode_return, ep.length))
            self._count[tid] += 1
            self._sum_return[tid] += ep.episode_return
            self._sum_length[tid] += ep.length

    def summary(self) -> Dict[str, TaskSummary]:
        """Task name -> :class:`TaskSummary`, in task-set order."""
        out = {}
        for tid, name in enumerate(self.task_names):
            recent, count = self._recent[tid], self._count[tid]
            out[name] = TaskSummary(
                count=count,
                mean_return=_mean(r for r, _ in recent) if recent else math.nan,
                mean_length=_mean(l for _, l in recent) if recent else math.nan,
                total_mean_return=self._sum_return[tid] / count if count else math.nan,
                total_mean_length=self._sum_length[tid] / count if count else math.nan,
                window_count=len(recent),
            )
        return out

    def scalars(self, prefix: str = "episodes") -> Dict[str, float]:
        """Flat ``{"prefix/task/metric": value}`` for tasks with at least one episode (for loggers)."""
        out = {}
        for name, s in self.summary().items():
            if s.count == 0:
                continue
            out[f"{prefix}/{name}/count"] = float(s.count)
            out[f"{prefix}/{name}/return"] = s.mean_return
            out[f"{prefix}/{name}/length"] = s.mean_length
            out[f"{prefix}/{name}/total_return"] = s.total_mean_return
        return out


    def state_dict(self) -> dict:
        """Plain data (for checkpoints): the recent windows and the running sums per task."""
        return {"task_names": list(self.task_names),
                "recent": [[list(x) for x in r] for r in self._recent],
                "count": list(self._count), "sum_return": list(self._sum_return),
                "sum_length": list(self._sum_length)}

    def load_state_dict(self, state: dict) -> None:
        if list(state["task_names"]) != self.task_names:
            raise ValueError(f"episode statistics of tasks {state['task_names']} cannot be loaded "
                             f"into {self.task_names}")
        for tid in range(len(self.task_names)):
            self._recent[tid].clear()
            self._recent[tid].extend((float(r), int(l)) for r, l in state["recent"][tid])
        self._count = [int(c) for c in state["count"]]
        self._sum_return = [float(x) for x in state["sum_return"]]
        self._sum_length = [int(x) for x in state["sum_length"]]


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals)
