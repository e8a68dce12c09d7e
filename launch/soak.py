"""Soak test: run training for M minutes and watch for leaks.

``python -m launch.soak --minutes 10 [-- extra launch.train flags]`` starts
``launch.train`` in a subprocess and every ``--interval`` seconds samples, over the
trainer and all its children: resident memory (RSS), open file descriptors, threads,
the number of processes, /dev/shm use, and the training steps/s from the run's
``logs.csv``. After ``--warmup`` seconds it reports the growth from the first sample
after warm-up to the last, and checks the targets: RSS growth under 5%, flat file
descriptors and shared memory. Exit code 0 when the targets hold, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

DEFAULT_TRAIN = ["--env", "procgen:bigfish,fruitbot,maze,leaper,plunder,starpilot", "--core", "srwm",
                 "--num-actors", "2", "--envs-per-actor", "3", "--batch-size", "6",
                 "--unroll-length", "20", "--learner-threads", "1", "--log-interval-s", "2",
                 "--no-progress"]


def dev_shm_bytes() -> int:
    total = 0
    try:
        for entry in os.scandir("/dev/shm"):
            try:
                total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                pass
    except OSError:
        return 0
    return total


def sample(proc: psutil.Process) -> dict:
    procs = [proc]
    try:
        procs += proc.children(recursive=True)
    except psutil.Error:
        pass
    rss = fds = threads = 0
    alive = 0
    for p in procs:
        try:
            with p.oneshot():
                rss += p.memory_info().rss
                fds += p.num_fds()
                threads += p.num_threads()
                alive += 1
        except psutil.Error:
            pass
    return {"rss_mb": rss / 2**20, "fds": fds, "threads": threads, "procs": alive,
            "shm_mb": dev_shm_bytes() / 2**20}


def last_sps(run_dir: Path):
    try:
        with open(run_dir / "logs.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("sps")]
        return float(rows[-1]["sps"]) if rows else None
    except (OSError, ValueError, KeyError):
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m launch.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long to run training (default 10)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before the baseline sample (default 60)")
    ap.add_argument("--rss-limit", type=float, default=0.05, help="allowed relative RSS growth (default 0.05)")
    ap.add_argument("train_args", nargs="*", help="flags for launch.train (after --); default: a small "
                    "6-game ProcGen srwm run sized for 2 cores")
    args = ap.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0 or args.warmup < 0:
        print("error: --minutes and --interval must be positive, --warmup >= 0", file=sys.stderr)
        return 2
    runs = Path(tempfile.mkdtemp(prefix="soak-"))
    train_args = args.train_args or DEFAULT_TRAIN
    cmd = [sys.executable, "-m", "launch.train", *train_args, "--runs-dir", str(runs), "--name", "soak",
           "--total-steps", str(10**12), "--checkpoint-interval-s", "60"]
    print("running:", " ".join(cmd), flush=True)
    shm_before = dev_shm_bytes() / 2**20
    child = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1])
    proc = psutil.Process(child.pid)
    samples = []
    t0 = time.time()
    print(f"{'t[s]':>6} {'rss[MB]':>9} {'fds':>5} {'thr':>5} {'procs':>5} {'shm[MB]':>8} {'steps/s':>8}")
    try:
        while time.time() - t0 < args.minutes * 60:
            time.sleep(args.interval)
            if child.poll() is not None:
                print(f"error: training exited early with code {child.returncode}", file=sys.stderr)
                return 1
            s = sample(proc)
            s["t"] = time.time() - t0
            s["sps"] = last_sps(runs / "soak")
            samples.append(s)
            sps = "-" if s["sps"] is None else f"{s['sps']:.0f}"
            print(f"{s['t']:6.0f} {s['rss_mb']:9.1f} {s['fds']:5d} {s['threads']:5d} {s['procs']:5d} "
                  f"{s['shm_mb']:8.1f} {sps:>8}", flush=True)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    after = [s for s in samples if s["t"] >= args.warmup]
    if len(after) < 2:
        print("error: not enough samples after warm-up; run longer or shorten --warmup", file=sys.stderr)
        return 1
    a, b = after[0], after[-1]
    rss_growth = (b["rss_mb"] - a["rss_mb"]) / max(a["rss_mb"], 1e-9)
    print(f"\ngrowth after warm-up ({a['t']:.0f}s -> {b['t']:.0f}s): RSS {rss_growth * 100:+.2f}% "
          f"({a['rss_mb']:.1f} -> {b['rss_mb']:.1f} MB), fds {a['fds']} -> {b['fds']}, threads "
          f"{a['threads']} -> {b['threads']}, /dev/shm {a['shm_mb']:.1f} -> {b['shm_mb']:.1f} MB")
    shm_after = dev_shm_bytes() / 2**20
    print(f"/dev/shm before the run {shm_before:.1f} MB, after shutdown {shm_after:.1f} MB")
    ok = rss_growth < args.rss_limit and b["fds"] <= a["fds"] and b["shm_mb"] <= a["shm_mb"] + 0.5 \
        and shm_after <= shm_before + 0.5
    print("targets met" if ok else "targets NOT met")
    shutil.rmtree(runs, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
