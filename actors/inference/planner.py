"""The inference server's batching policy, as pure functions (no sockets, no clock).

Requests wait until every connected actor is waiting or until ``timeout_s`` has
passed since the oldest one arrived; then all waiting rows run, in forwards of at
most ``max_batch`` env rows. Before that, whenever ``max_batch`` rows or more are
waiting, the oldest requests run at once in *full* forwards of ``max_batch`` rows and
the remainder keeps waiting for more company (a request may straddle two forwards;
it is answered when its last rows are done). Within a forward the rows are sorted by
actor, so consecutive actors' rows are contiguous and need no gather.

A forward is a list of spans ``(actor, lo, hi)``: rows ``lo:hi`` of the actor's
``envs_per_actor`` env rows.
"""

from __future__ import annotations

from typing import List, Mapping, Optional, Protocol, Sequence, Tuple

Span = Tuple[int, int, int]          # (actor, first env row, end env row)
Forward = List[Span]


class Waiting(Protocol):
    """An act request that waits: when it arrived and how many of its rows already ran."""

    arrival: float
    done: int


def pack(waiting: Mapping[int, Waiting], actors: Sequence[int], envs_per_actor: int,
         max_batch: int) -> List[Forward]:
    """The remaining rows of ``actors`` (in that order) packed into forwards of <= ``max_batch`` rows."""
    E, cap = envs_per_actor, max_batch
    forwards: List[Forward] = []
    cur: Forward = []
    n = 0
    for a in actors:
        lo = waiting[a].done
        while lo < E:
            take = min(E - lo, cap - n)
            cur.append((a, lo, lo + take))
            n += take
            lo += take
            if n == cap:
                forwards.append(cur)
                cur, n = [], 0
    if cur:
        forwards.append(cur)
    return forwards


def forwards_to_run(waiting: Mapping[int, Waiting], connected: int, now: float, *,
                    envs_per_actor: int, max_batch: int, timeout_s: float) -> List[Forward]:
    """The forwards to run now over the ``waiting`` requests ({actor: request}); [] to keep waiting.

    ``connected``: the number of connected actors (the most that can be waiting).
    """
    if not waiting:
        return []
    E = envs_per_actor
    oldest = min(r.arrival for r in waiting.values())
    rows = sum(E - r.done for r in waiting.values())
    if len(waiting) >= connected or now >= oldest + timeout_s:
        return pack(waiting, sorted(waiting), E, max_batch)     # nobody else can come, or time is up
    if rows < max_batch:
        return []
    # only full forwards; the oldest requests first, the rest keeps waiting
    full = rows // max_batch
    chosen, n = [], 0
    for a in sorted(waiting, key=lambda a: waiting[a].arrival):
        chosen.append(a)
        n += E - waiting[a].done
        if n >= full * max_batch:
            break
    return pack(waiting, sorted(chosen), E, max_batch)[:full]


def deadline(waiting: Mapping[int, Waiting], timeout_s: float) -> Optional[float]:
    """When the oldest waiting request's timeout ends (None: nothing waits)."""
    if not waiting:
        return None
    return min(r.arrival for r in waiting.values()) + timeout_s
