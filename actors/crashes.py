"""The crash-rate limit shared by the actor backends (local processes, Ray)."""

from __future__ import annotations

import time
from collections import deque
from typing import Callable


class ActorCrashLoop(RuntimeError):
    """Too many actor crashes in a minute."""


class CrashWindow:
    """Counts actor crashes over the last ``window_s`` seconds; more than ``limit`` stop the run."""

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.times: deque = deque()

    def record(self, actor: int, reason: str) -> None:
        """Count a crash of ``actor``; ActorCrashLoop (naming it and ``reason``) past the limit."""
        now = self.clock()
        self.times.append(now)
        while self.times and now - self.times[0] > self.window_s:
            self.times.popleft()
        if len(self.times) > self.limit:
            raise ActorCrashLoop(f"{len(self.times)} actor crashes within a minute "
                                 f"(limit {self.limit}); last: actor {actor}: {reason}")

    def __len__(self) -> int:
        return len(self.times)
