"""The thread layout rule (launch/threads.py) and a live run that keeps to it."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch.threads import plan_threads

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("cores, actors, gpu, want", [
    (2, 2, False, (1, 1)),     # this machine: one learner thread beside two actors
    (2, 1, False, (1, 1)),
    (8, 2, False, (6, 1)),     # a CPU learner takes what the actors leave
    (2, 4, False, (1, 1)),     # oversubscribed: never below one each
    (16, 14, True, (2, 1)),    # GPU learner: two feeding threads, actors one core each
    (16, 4, True, (2, 3)),     # spare cores shared among the actors
    (1, 1, True, (1, 1)),
])
def test_rule(cores, actors, gpu, want):
    layout = plan_threads(cores, actors, gpu)
    assert (layout.learner_threads, layout.actor_threads) == want
    assert layout.busy_threads <= max(cores, actors + 1)


def test_explicit_counts_are_kept():
    layout = plan_threads(2, 2, False, learner_threads=3, actor_threads=2)
    assert (layout.learner_threads, layout.actor_threads) == (3, 2)
    # actors on other machines (Ray with an address) leave every local core to the learner
    assert plan_threads(8, 16, False, local_actors=False).learner_threads == 8


def test_bad_sizes():
    with pytest.raises(ValueError, match="cores >= 1"):
        plan_threads(0, 2, False)


def _busy_threads(pids, interval=4.0, share=0.25):
    """Per process, the threads that used at least ``share`` of that process's busiest
    thread's CPU time over ``interval`` seconds, summed over ``pids``. Relative to each
    process's own main thread, so that the count holds on a loaded machine too."""
    import psutil
    procs = [psutil.Process(p) for p in pids]

    def times():
        out = {}
        for p in procs:
            try:
                out[p.pid] = {t.id: t.user_time + t.system_time for t in p.threads()}
            except psutil.NoSuchProcess:
                pass
        return out

    a = times()
    time.sleep(interval)
    b = times()
    busy = 0
    for pid, threads in b.items():
        deltas = [v - a.get(pid, {}).get(tid, v) for tid, v in threads.items()]
        top = max(deltas, default=0.0)
        busy += sum(1 for d in deltas if top > 0 and d >= share * top)
    return busy


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_default_run_keeps_busy_threads_within_the_layout(tmp_path):
    """A real run with the default thread options: the learner and its two actor processes
    run no more busy threads than the layout plans (torch's default would add one
    intra-op thread per core in every process)."""
    import psutil
    cmd = [sys.executable, "-m", "launch.train", "--env", "memory", "--core", "lstm",
           "--num-actors", "2", "--envs-per-actor", "16", "--batch-size", "16",
           "--unroll-length", "20", "--hidden-size", "64",
           "--total-steps", "100000000", "--runs-dir", str(tmp_path), "--name", "t",
           "--no-progress", "--log-interval-s", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (tmp_path / "t" / "logs.csv").exists():
            time.sleep(0.5)
        assert (tmp_path / "t" / "logs.csv").exists(), "the run wrote no log row"
        time.sleep(2)
        pids = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        busy = _busy_threads(pids)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=60)[0]
    cores = len(os.sched_getaffinity(0))
    layout = plan_threads(cores, 2, False)
    assert layout.describe() in out, out[-2000:]
    # torch's default (two learner threads on two cores) measured 4 busy threads here, the
    # rule 3: one per process, the fewest a learner beside two actor processes can have
    assert busy <= layout.busy_threads <= max(cores, 2 + 1), (busy, layout, out[-1500:])


def test_reproduce_dry_run_prints_and_validates_every_configuration():
    """``launch.reproduce NAME --dry-run``: every configuration's commands parse and
    validate as launch.train would, and nothing is started."""
    from launch.reproduce import CONFIGURATIONS, main
    import contextlib, io
    for name, conf in CONFIGURATIONS.items():
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main([name, "--dry-run", "--runs-dir", "/nonexistent-runs"]) == 0
        out = buf.getvalue()
        assert out.count("-m launch.train") == len(conf.runs) == out.count("-m launch.evaluate")
        for run in conf.runs:
            assert f"--name {run.name}" in out
    assert not Path("/nonexistent-runs").exists()
    assert main(["no-such-config", "--dry-run"]) == 2


def test_reproduce_report_shows_commands_with_paths_relative_to_the_repository():
    """The report (docs/learning/NAME/README.md) is read on other machines: a path under
    the repository is shown relative to it (the commands run from its root); others stay."""
    from launch.reproduce import ROOT, _shown
    cmd = ["-m", "launch.evaluate", str(ROOT / "runs" / "a b"), "--out",
           str(ROOT / "docs" / "learning" / "x" / "eval"), "--runs-dir", "/elsewhere/runs"]
    assert _shown(cmd) == ("-m launch.evaluate 'runs/a b' --out docs/learning/x/eval "
                           "--runs-dir /elsewhere/runs")
