"""``python -m launch.compare`` and its statistics (:mod:`launch.aggregate`).

The statistics are checked against plain reference computations (loops over the same
random draws; scipy's definition of the trimmed mean, by hand); the compare run on a
tiny grid (two cores, one task, two seeds, 1500 steps) is checked against the runs' own
logs, for resuming after a kill, for not retraining, and for bad input.
"""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from launch.aggregate import bootstrap_ci, iqm, stratified_bootstrap_ci

ROOT = Path(__file__).resolve().parents[1]


# -- statistics ----------------------------------------------------------------------------

def test_iqm_hand_computed():
    # n = 8: int(0.25 * 8) = 2 cut at each end -> mean of the middle 4
    assert iqm([10, 1, 2, 3, 4, 5, 6, -7]) == pytest.approx((2 + 3 + 4 + 5) / 4)
    # n = 7: int(1.75) = 1 cut at each end (scipy.stats.trim_mean(x, 0.25))
    assert iqm([0, 1, 2, 3, 4, 5, 100]) == pytest.approx(15 / 5)
    assert iqm([[1.0, 2.0], [3.0, 4.0]]) == pytest.approx(2.5)


def test_bootstrap_ci_equals_reference_loop():
    sample = np.array([0.1, 0.5, 0.3, 0.9, 0.7])
    lo, hi = bootstrap_ci(sample, "mean", reps=500, seed=3)
    rng = np.random.default_rng(3)
    idx = rng.integers(5, size=(500, 5))
    means = sorted(sum(sample[j] for j in row) / 5 for row in idx)
    # numpy's default percentile: linear interpolation at (reps - 1) * q
    def pct(q):
        pos = (len(means) - 1) * q
        f = math.floor(pos)
        return means[f] + (means[min(f + 1, len(means) - 1)] - means[f]) * (pos - f)
    assert (lo, hi) == pytest.approx((pct(0.025), pct(0.975)), abs=1e-12)
    assert bootstrap_ci([0.4] * 6, reps=100) == pytest.approx((0.4, 0.4))


def test_stratified_bootstrap_resamples_runs_within_each_task():
    scores = np.array([[0.0, 1.0, 10.0], [0.2, 0.8, 11.0], [0.4, 0.6, 12.0], [0.6, 0.4, 13.0]])  # [runs, tasks]
    lo, hi = stratified_bootstrap_ci(scores, reps=300, seed=5)
    rng = np.random.default_rng(5)
    idx = rng.integers(4, size=(300, 4, 3))
    stats = []
    for r in range(300):
        pooled = [scores[idx[r, i, j], j] for i in range(4) for j in range(3)]
        stats.append(iqm(pooled))
    assert (lo, hi) == pytest.approx(tuple(np.percentile(stats, [2.5, 97.5])), abs=1e-12)
    # task 3's scores are >= 10, task 1's and 2's <= 1: every resample keeps 4 of each per task
    assert 0.0 <= lo <= hi <= 13.0


# -- the command ---------------------------------------------------------------------------

TINY = ["--cores", "ff", "lstm", "--tasks", "recall-4", "--seeds", "2", "--total-steps", "1500",
        "--no-progress", "--jobs", "2"]
SMALL_MODEL = ["--", "--num-actors", "1", "--hidden-size", "16", "--num-heads", "2", "--head-size", "8", "--d-ff", "32",
               "--feature-size", "16", "--log-interval-s", "0.5"]


def compare_cmd(out, *args):
    return [sys.executable, "-m", "launch.compare", "--out-dir", str(out), "--name", "tiny", *TINY,
            *args, *SMALL_MODEL]


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def summaries(out):
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "tiny" / "runs").glob("*/summary.json")}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_compare_killed_resumed_then_not_retrained(tmp_path, capsys):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # 1. start, kill -9 the compare once a run has finished and others are training
    p = subprocess.Popen(compare_cmd(tmp_path), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    runs = tmp_path / "tiny" / "runs"
    deadline = time.time() + 300
    finished = lambda: [n for n in summaries(tmp_path)       # summary.json says "running" from the start
                        if '"finished"' in (runs / n / "summary.json").read_text()]
    while time.time() < deadline and not finished():
        assert p.poll() is None, "compare ended before it could be killed"
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    # the runs in flight got SIGTERM from their dying parent: wait until they have stopped
    import psutil
    deadline = time.time() + 120
    while time.time() < deadline and any(str(tmp_path) in " ".join(q.info["cmdline"] or [])
                                         for q in psutil.process_iter(["cmdline"])):
        time.sleep(0.2)
    first = summaries(tmp_path)
    status = lambda n: json.loads((runs / n / "summary.json").read_text())["status"]
    done = [n for n in first if status(n) == "finished"]
    grid = [f"{c}.recall-4.s{i}" for c in ("ff", "lstm") for i in (0, 1)]
    cut = [n for n in grid if n not in done]          # in flight or not started when killed
    assert 1 <= len(done) < 4 and cut, (first, cut)

    # 2. the same command again: finishes the grid, the finished runs are not redone
    p = subprocess.run(compare_cmd(tmp_path), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    after = summaries(tmp_path)
    assert len(after) == 4 and all(after[n] == first[n] for n in done)         # not redone
    assert all(after[n] != first.get(n) for n in cut)                           # started again
    assert all(status(n) == "finished" for n in after)
    out = tmp_path / "tiny"
    for f in ("results.csv", "summary.json", "table.txt", "curves.png", "compare.json"):
        assert (out / f).is_file(), f

    # 3. the CSV against the runs' own logs
    rows = read_rows(out / "results.csv")
    assert sorted((r["core"], r["seed"]) for r in rows) == [("ff", "0"), ("ff", "1"), ("lstm", "0"), ("lstm", "1")]
    for r in rows:
        run_dir = out / r["run_dir"]
        eps = read_rows(run_dir / "episodes.csv")
        rets = [float(e["return"]) for e in eps]
        k = math.ceil(0.1 * len(rets))
        assert int(r["episodes"]) == len(rets) and int(r["final_episodes"]) == k
        assert float(r["final_return"]) == pytest.approx(sum(rets[-k:]) / k, abs=1e-12)
        assert float(r["normalised_score"]) == pytest.approx((sum(rets[-k:]) / k - 0.25) / 0.75, abs=1e-12)
        logs = read_rows(run_dir / "logs.csv")
        assert int(float(logs[-1]["episodes/memory:4:4"])) == len(rets)    # the logger counted the same
        run_summary = json.loads((run_dir / "summary.json").read_text())
        assert int(r["steps"]) == run_summary["steps"] >= 1500
        assert all(e["task"] == "memory:4:4" and int(e["length"]) == 5 for e in eps)

    # 4. the table and summary.json against the CSV
    summary = json.loads((out / "summary.json").read_text())
    table = (out / "table.txt").read_text()
    for core in ("ff", "lstm"):
        scores = [float(r["normalised_score"]) for r in rows if r["core"] == core]
        s = summary["scores"][core]["recall-4"]
        assert s["mean"] == pytest.approx(np.mean(scores)) and s["seeds"] == 2
        assert s["ci95"] == pytest.approx(list(bootstrap_ci(scores, "mean", reps=2000)))
        assert summary["iqm"][core]["iqm"] == pytest.approx(iqm(scores))
        line = next(l for l in table.splitlines() if l.startswith(core + " "))
        assert f"{np.mean(scores):.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]" in line
    assert p.stdout.startswith(table)

    # 5. a third call retrains nothing
    p = subprocess.run(compare_cmd(tmp_path), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and summaries(tmp_path) == after
    assert read_rows(out / "results.csv") == rows

    # 6. bad input leaves the directory as it is
    before = {f: f.read_bytes() for f in out.rglob("*") if f.is_file()}
    bad = [["--cores", "ff", "nope"], ["--suite", "memory-v0"], ["--tasks", "recall-5"], ["--seeds", "0"],
           ["--cores", "ff", "ff"], ["--core-import", "json"], ["--total-steps", "3000"]]
    from launch.compare import main
    for args in bad:               # in-process (the command's own main) to keep the test short
        assert main(["--out-dir", str(tmp_path), "--name", "tiny", *TINY, *args, *SMALL_MODEL]) == 2, args
        err = [l for l in capsys.readouterr().err.strip().splitlines() if l.strip()]
        assert len(err) == 1, (args, err)
    assert {f: f.read_bytes() for f in out.rglob("*") if f.is_file()} == before


BAD = [(["--cores", "ff", "nope"], "unknown core 'nope'"),
       (["--cores", "ff", "--suite", "memory-v0"], "unknown suite 'memory-v0'"),
       (["--cores", "ff", "--tasks", "recall-5"], "unknown task 'recall-5'"),
       (["--cores", "ff", "--seeds", "0"], "--seeds must be at least 1"),
       (["--cores", "ff", "lstm", "ff"], "--cores names ff more than once"),
       (["--cores", "ff", "--core-import", "json"], "--core-import 'json' registered no core"),
       (["--cores", "ff", "--core-import", "fwrl_nope"], "cannot import module 'fwrl_nope'"),
       (["--cores", "ff", "--", "--seed", "3"], "--seed is set by launch.compare"),
       (["--cores", "ff", "--", "--num-actors", "0"], "num-actors")]


@pytest.mark.parametrize("args,needle", BAD, ids=[b[1] for b in BAD])
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, needle):
    from launch.compare import main
    assert main(["--out-dir", str(tmp_path), *args]) == 2
    err = [l for l in capsys.readouterr().err.strip().splitlines() if l.strip()]
    assert len(err) == 1 and needle in err[0], err
    assert not any(tmp_path.iterdir())


def test_core_import_that_registers_a_core_is_accepted(tmp_path, monkeypatch):
    (tmp_path / "fwrl_cmp_core.py").write_text(
        "from agents.cores.ff import FeedForwardCore\nfrom agents.core import register_core\n"
        "register_core('ff_copy')(type('FFCopy', (FeedForwardCore,), {}))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from launch.compare import build_parser, check_inputs
    args = build_parser().parse_args(["--cores", "ff", "ff_copy", "--core-import", "fwrl_cmp_core"])
    cores, tasks, settings = check_inputs(args, [])
    assert cores == ["ff", "ff_copy"] and [t.name for t in tasks][:2] == ["recall-4", "recall-16"]
    assert settings["core_import"] == "fwrl_cmp_core"
