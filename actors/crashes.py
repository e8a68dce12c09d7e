"""The crash-rate limit shared by the actor backends (local processes, Ray), and the
fault injection the tests use to make an actor crash.

Fault injection is not a user option: the environment variable ``FWRL_DEBUG_CRASH_AT_STEP=N``
(N > 0) makes actor 0 raise ``RuntimeError("injected env failure at step N")`` at its N-th
env step, in its first life only, so that its restart (fresh envs) goes on without
crashing. It is read here, in one place, by the trainer's process when it builds each
actor's :class:`actors.actor.ActorSpec` (so it reaches local processes and Ray actors
alike); the tests of actor crashes and restarts set it (docs/design.md#fault-injection).
"""

from __future__ import annotations

import os
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


CRASH_AT_STEP_VAR = "FWRL_DEBUG_CRASH_AT_STEP"


def injected_crash_step(actor_index: int, incarnation: int) -> int:
    """The env step at which this actor life must raise (0: never): ``$FWRL_DEBUG_CRASH_AT_STEP``
    for actor 0's first life, 0 for every other actor and life or when the variable is unset.
    ValueError when it is set to anything but a non-negative integer."""
    raw = os.environ.get(CRASH_AT_STEP_VAR, "").strip()
    if not raw:
        return 0
    try:
        step = int(raw)
    except ValueError:
        step = -1
    if step < 0:
        raise ValueError(f"{CRASH_AT_STEP_VAR} must be a non-negative integer (0 = off), got {raw!r}")
    return step if actor_index == 0 and incarnation == 0 else 0
