"""The inference server's batching planner (actors/inference/planner.py), without sockets or a clock."""

from __future__ import annotations

from dataclasses import dataclass

from actors.inference.planner import deadline, forwards_to_run, pack


@dataclass
class Req:
    arrival: float
    done: int = 0


def rows_of(forwards):
    """{actor: sorted rows} covered by the forwards; also checks no row appears twice."""
    out = {}
    for fwd in forwards:
        for a, lo, hi in fwd:
            assert 0 <= lo < hi
            rows = out.setdefault(a, [])
            assert not set(rows) & set(range(lo, hi))
            rows.extend(range(lo, hi))
    return {a: sorted(r) for a, r in out.items()}


def test_pack_fills_forwards_to_the_cap_in_actor_order():
    waiting = {0: Req(0.0), 1: Req(0.0, done=1), 2: Req(0.0)}
    fwds = pack(waiting, [0, 1, 2], envs_per_actor=3, max_batch=4)
    assert fwds == [[(0, 0, 3), (1, 1, 2)], [(1, 2, 3), (2, 0, 3)]]
    assert [sum(hi - lo for _, lo, hi in f) for f in fwds] == [4, 4]


def test_everyone_waiting_runs_all_rows_at_once():
    waiting = {2: Req(5.0), 0: Req(5.1)}
    fwds = forwards_to_run(waiting, connected=2, now=5.1, envs_per_actor=3, max_batch=6, timeout_s=1.0)
    assert fwds == [[(0, 0, 3), (2, 0, 3)]]          # one forward, rows sorted by actor


def test_a_partial_batch_waits_until_the_timeout():
    waiting = {1: Req(10.0)}
    kw = dict(connected=3, envs_per_actor=2, max_batch=6, timeout_s=0.5)
    assert forwards_to_run(waiting, now=10.2, **kw) == []
    assert deadline(waiting, 0.5) == 10.5
    assert forwards_to_run(waiting, now=10.5, **kw) == [[(1, 0, 2)]]


def test_full_forwards_run_at_once_and_the_rest_waits():
    # 4 of 5 actors waiting, 3 rows each, max_batch 4: 12 rows make three full forwards now
    waiting = {0: Req(3.0), 1: Req(1.0), 2: Req(2.0), 3: Req(4.0)}
    kw = dict(connected=5, envs_per_actor=3, max_batch=4, timeout_s=9.0)
    fwds = forwards_to_run(waiting, now=4.0, **kw)
    assert [sum(hi - lo for _, lo, hi in f) for f in fwds] == [4, 4, 4]
    # 3 waiting of 5, 9 rows: two full forwards from the oldest three, packed in actor order;
    # the one row left (of the last actor in that order) waits for more company
    del waiting[3]
    fwds = forwards_to_run(waiting, now=4.0, **kw)
    assert [sum(hi - lo for _, lo, hi in f) for f in fwds] == [4, 4]
    assert rows_of(fwds) == {0: [0, 1, 2], 1: [0, 1, 2], 2: [0, 1]}
    # 2 of the 3 (the oldest) fill one full forward: the newest (0) does not run at all
    waiting = {0: Req(3.0), 1: Req(1.0), 2: Req(2.0)}
    kw["max_batch"] = 6
    assert forwards_to_run(waiting, now=4.0, **kw) == [[(1, 0, 3), (2, 0, 3)]]


def test_a_straddling_request_continues_where_it_stopped():
    waiting = {0: Req(0.0, done=2)}
    fwds = forwards_to_run(waiting, connected=1, now=0.0, envs_per_actor=3, max_batch=4, timeout_s=1.0)
    assert fwds == [[(0, 2, 3)]]


def test_forwards_are_split_at_the_max_batch_size_and_cover_every_row_once():
    waiting = {a: Req(0.0) for a in range(5)}
    fwds = forwards_to_run(waiting, connected=5, now=0.0, envs_per_actor=3, max_batch=4, timeout_s=1.0)
    assert [sum(hi - lo for _, lo, hi in f) for f in fwds] == [4, 4, 4, 3]
    assert rows_of(fwds) == {a: [0, 1, 2] for a in range(5)}


def test_nothing_waiting_plans_nothing():
    assert forwards_to_run({}, connected=2, now=0.0, envs_per_actor=3, max_batch=4, timeout_s=1.0) == []
    assert deadline({}, 1.0) is None
