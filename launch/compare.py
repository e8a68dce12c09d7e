"""Is my core better? Train every (core, task, seed) of a task suite with the same
settings and compare: ``python -m launch.compare --cores ff lstm deltanet --suite memory-v2``.

Examples::

    python -m launch.compare --cores ff lstm deltanet srwm sr_delta --suite memory-v2 --seeds 3
    python -m launch.compare --cores lstm mycore --core-import mypackage.cores --suite memory-v2
    python -m launch.compare --cores ff lstm --suite memory-v2 --tasks recall-4 --seeds 2 \\
        --total-steps 5000 --name tiny -- --learning-rate 1e-3   # flags after -- go to launch.train

Every run is one ``python -m launch.train`` process (settings: :data:`TRAIN_ARGS`, then the
task's own ``train_args`` from the suite, then the flags after ``--``, later ones winning;
the budget is the task's unless ``--total-steps`` overrides it). As many
runs as ``--jobs`` allow (default: one per 3 CPUs, each run being a learner and 2 actors)
train at once. Output, in ``<out-dir>/<name>/`` (name: the suite's unless ``--name``)::

    compare.json   the settings (a later call must use the same suite, tasks, budget and flags)
    runs/<core>.<task>.s<seed>/   each run's own directory (logs.csv, episodes.csv, summary.json, ...)
    logs/<run>.log                each run's console output
    results.csv    one row per finished run: final return (mean over the last 10% of its
                   episodes, in the order they reached the learner), normalised score
    summary.json   per core and task: mean normalised score over seeds and its 95% bootstrap
                   CI; per core: the IQM over tasks and seeds and its 95% stratified
                   bootstrap CI (Agarwal et al., NeurIPS 2021; :mod:`launch.aggregate`)
    table.txt      the table that is printed
    curves.png     one panel per task, one line per core (mean over seeds) with the band
                   between its lowest and highest seed

Resumable: a run whose ``summary.json`` says it finished its budget is never redone; a run
cut short (the compare was killed) is restarted from scratch, so that every run's
episodes come from one uninterrupted training. A progress bar counts the grid's runs.

Bad input (unknown core, suite or task, fewer than 1 seed, a ``--core-import`` that
registers no core, a core named twice, train flags that ``launch.train`` refuses,
settings that differ from an existing compare directory's) is reported in one line with
exit code 2 before anything is started or written.

Length: about 470 lines, one command in three parts that read best together (checking
the inputs against an existing compare directory, running the grid resumably, and the
report: table, CSV, curves); the statistics are :mod:`launch.aggregate`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from envs.suites import SuiteTask, get_suite, list_suites
from launch.aggregate import bootstrap_ci, iqm, stratified_bootstrap_ci

ROOT = Path(__file__).resolve().parents[1]

#: The settings every run gets (then the flags after ``--``): a small CPU configuration.
TRAIN_ARGS = ["--num-actors", "2", "--envs-per-actor", "8", "--batch-size", "8",
              "--unroll-length", "20", "--learner-threads", "1", "--actor-threads", "1",
              "--device", "cpu", "--rmsprop-eps", "1e-5", "--log-interval-s", "10",
              "--no-progress"]
#: Flags that compare sets per run; given after ``--`` they are refused.
OWN_FLAGS = ("--name", "--runs-dir", "--env", "--core", "--seed", "--total-steps", "--resume",
             "--core-import")
FINAL_FRACTION = 0.1
#: The columns of results.csv, one row per finished run.
RESULT_COLUMNS = ["core", "task", "seed", "env", "steps", "episodes", "final_episodes", "final_return",
                  "normalised_score", "elapsed_s", "run_dir"]
CURVE_BINS = 20


class CompareInputError(ValueError):
    """Bad input: reported in one line, exit code 2."""


@dataclass(frozen=True)
class Run:
    core: str
    task: SuiteTask
    seed: int
    total_steps: int

    @property
    def name(self) -> str:
        return f"{self.core}.{self.task.name}.s{self.seed}"


# -- input ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m launch.compare",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cores", nargs="+", required=True, help="registered core names to compare")
    p.add_argument("--suite", default="memory-v2",
                   help=f"task suite (default: the newest, memory-v2): {', '.join(list_suites())}")
    p.add_argument("--tasks", nargs="+", default=[], help="only these tasks of the suite")
    p.add_argument("--seeds", type=int, default=3, help="seeds per (core, task): 0 .. N-1")
    p.add_argument("--total-steps", type=int, default=0, help="budget of every run (0: each task's own)")
    p.add_argument("--core-import", default="", help="comma list of modules that register cores")
    p.add_argument("--jobs", type=int, default=0, help="runs at once (0: one per 3 CPUs, at least 1)")
    p.add_argument("--name", default="", help="compare directory name (default: the suite's name)")
    p.add_argument("--out-dir", default="compare", help="folder of compare directories")
    p.add_argument("--bootstrap-reps", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def check_inputs(args: argparse.Namespace, extra: List[str]) -> Tuple[List[str], List[SuiteTask], dict]:
    """Validate everything; returns (cores, tasks, settings). Raises CompareInputError."""
    from agents.core import list_cores
    from envs import EnvConfig, describe_env
    from envs.imports import import_modules
    from launch.config import build_parser as train_parser, config_from_args, validate_config

    if args.seeds < 1:
        raise CompareInputError(f"--seeds must be at least 1, got {args.seeds}")
    if args.total_steps < 0:
        raise CompareInputError(f"--total-steps must be >= 0, got {args.total_steps}")
    if args.jobs < 0:
        raise CompareInputError(f"--jobs must be >= 0, got {args.jobs}")
    if args.bootstrap_reps < 1:
        raise CompareInputError(f"--bootstrap-reps must be >= 1, got {args.bootstrap_reps}")
    if args.name and ("/" in args.name or args.name in (".", "..")):
        raise CompareInputError(f"--name must be a plain folder name, got {args.name!r}")
    dup = sorted({c for c in args.cores if args.cores.count(c) > 1})
    if dup:
        raise CompareInputError(f"--cores names {', '.join(dup)} more than once")
    before = set(list_cores())
    try:
        modules = import_modules(args.core_import, "--core-import")
    except ValueError as e:
        raise CompareInputError(str(e)) from None
    known = list_cores()
    if modules and not set(known) - before:
        raise CompareInputError(f"--core-import {args.core_import!r} registered no core "
                                f"(known cores: {', '.join(known)})")
    for c in args.cores:
        if c not in known:
            raise CompareInputError(f"unknown core {c!r}; known cores: {', '.join(known)}")
    try:
        tasks = get_suite(args.suite, args.tasks)
    except ValueError as e:
        raise CompareInputError(str(e)) from None
    for flag in extra:
        if flag.split("=", 1)[0] in OWN_FLAGS:
            raise CompareInputError(f"train flag {flag.split('=', 1)[0]} is set by launch.compare "
                                    f"for every run; remove it after --")
    train_args = TRAIN_ARGS + list(extra)
    parser = train_parser()
    for task in tasks:
        try:
            describe_env(EnvConfig(env=task.env))
        except ValueError as e:
            raise CompareInputError(f"task {task.name!r}: {e}") from None
    checks = {tuple(task_train_args(train_args, t)): t for t in tasks}   # one per distinct flag set
    for core, (flags, task) in ((c, ft) for c in args.cores for ft in checks.items()):
        # launch.train's own checks of the settings, for every core and task flag set
        argv = list(flags) + ["--env", task.env, "--core", core, "--core-import", args.core_import]
        captured = io.StringIO()
        try:
            with contextlib.redirect_stderr(captured):
                ns = parser.parse_args(argv)
            validate_config(config_from_args(ns))
        except SystemExit:
            why = (captured.getvalue().strip().splitlines() or [""])[-1]
            raise CompareInputError(f"launch.train refuses the flags after --: {why}") from None
        except ValueError as e:
            raise CompareInputError(f"core {core!r} with these settings: {e}") from None
    settings = {"suite": args.suite, "tasks": [t.name for t in tasks],
                "total_steps": args.total_steps, "train_args": train_args,
                "core_import": args.core_import}
    return list(args.cores), tasks, settings


# -- running ---------------------------------------------------------------------------------

def run_finished(run_dir: Path, total_steps: int) -> bool:
    try:
        s = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return s.get("status") == "finished" and int(s.get("steps", 0)) >= total_steps


def _die_with_parent() -> None:   # runs in the child before exec: SIGTERM it when compare dies
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)
    except Exception:
        pass


def task_train_args(train_args: Sequence[str], task: SuiteTask) -> List[str]:
    """A run's flags: the common settings, then the task's own, then the user's (after ``--``);
    ``train_args`` is :data:`TRAIN_ARGS` followed by the user's, so later ones win."""
    n = len(TRAIN_ARGS)
    return [*train_args[:n], *task.train_args, *train_args[n:]]


def train_command(run: Run, runs_dir: Path, settings: dict) -> List[str]:
    cmd = [sys.executable, "-m", "launch.train", "--runs-dir", str(runs_dir), "--name", run.name,
           "--env", run.task.env, "--core", run.core, "--seed", str(run.seed),
           "--total-steps", str(run.total_steps), *task_train_args(settings["train_args"], run.task)]
    if settings["core_import"]:
        cmd += ["--core-import", settings["core_import"]]
    return cmd


def run_grid(runs: Sequence[Run], out: Path, settings: dict, jobs: int, progress: bool) -> List[str]:
    """Train every run not finished yet, ``jobs`` at a time; returns one line per failed run."""
    runs_dir, logs_dir = out / "runs", out / "logs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    logs_dir.mkdir(parents=True, exist_ok=True)
    todo = [r for r in runs if not run_finished(runs_dir / r.name, r.total_steps)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run", file=sys.stderr,
                   dynamic_ncols=True, desc="compare")
    active: Dict[str, Tuple[Run, subprocess.Popen, object]] = {}
    failures: List[str] = []
    pending = list(todo)
    try:
        while pending or active:
            while pending and len(active) < jobs:
                run = pending.pop(0)
                run_dir = runs_dir / run.name
                if run_dir.exists():           # cut short earlier: start it again from scratch
                    shutil.rmtree(run_dir)
                log = open(logs_dir / f"{run.name}.log", "w")
                proc = subprocess.Popen(train_command(run, runs_dir, settings), cwd=ROOT, stdout=log,
                                        stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                        env=dict(os.environ, PYTHONUNBUFFERED="1"))
                active[run.name] = (run, proc, log)
            time.sleep(0.2)
            for name in list(active):
                run, proc, log = active[name]
                if proc.poll() is None:
                    continue
                log.close()
                del active[name]
                if proc.returncode == 0 and run_finished(runs_dir / name, run.total_steps):
                    if bar is not None:
                        bar.update(1)
                else:
                    failures.append(f"run {name} failed (exit {proc.returncode}); see {logs_dir / name}.log")
                    print(f"error: {failures[-1]}", file=sys.stderr)
    finally:
        for run, proc, log in active.values():   # interrupted: stop the runs in flight
            proc.terminate()
        for run, proc, log in active.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        if bar is not None:
            bar.close()
    return failures


# -- results ---------------------------------------------------------------------------------

def read_episodes(run_dir: Path) -> Tuple[np.ndarray, np.ndarray]:
    """(step int64 [E], return float64 [E]) of a run's ``episodes.csv``, in file order."""
    steps, rets = [], []
    with open(run_dir / "episodes.csv", newline="") as f:
        for row in csv.DictReader(f):
            steps.append(int(row["step"]))
            rets.append(float(row["return"]))
    return np.asarray(steps, dtype=np.int64), np.asarray(rets, dtype=np.float64)


def final_return(returns: np.ndarray) -> float:
    """Mean over the last ``ceil(10%)`` of the episodes (NaN without episodes)."""
    if returns.size == 0:
        return float("nan")
    k = max(1, math.ceil(FINAL_FRACTION * returns.size))
    return float(returns[-k:].mean())


def collect(runs: Sequence[Run], out: Path) -> List[dict]:
    rows = []
    for run in runs:
        run_dir = out / "runs" / run.name
        if not run_finished(run_dir, run.total_steps):
            continue
        summary = json.loads((run_dir / "summary.json").read_text())
        _, rets = read_episodes(run_dir)
        fr = final_return(rets)
        rows.append({"core": run.core, "task": run.task.name, "seed": run.seed, "env": run.task.env,
                     "steps": int(summary["steps"]), "episodes": int(rets.size),
                     "final_episodes": max(1, math.ceil(FINAL_FRACTION * rets.size)) if rets.size else 0,
                     "final_return": fr, "normalised_score": run.task.normalise(fr),
                     "elapsed_s": round(float(summary.get("elapsed_s", float("nan"))), 1),
                     "run_dir": str(Path("runs") / run.name)})
    return rows


def write_results_csv(rows: List[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RESULT_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})


def summarise(rows: List[dict], cores: Sequence[str], tasks: Sequence[SuiteTask], seeds: int,
              reps: int) -> dict:
    """Per (core, task) mean and bootstrap CI over seeds; per core IQM and stratified CI."""
    by = {(r["core"], r["task"], r["seed"]): r["normalised_score"] for r in rows}
    scores, aggregate = {}, {}
    for core in cores:
        scores[core] = {}
        matrix = np.full((seeds, len(tasks)), np.nan)
        for j, task in enumerate(tasks):
            vals = [by[(core, task.name, s)] for s in range(seeds) if (core, task.name, s) in by]
            for s in range(seeds):
                matrix[s, j] = by.get((core, task.name, s), np.nan)
            ok = [v for v in vals if math.isfinite(v)]
            lo, hi = bootstrap_ci(ok, "mean", reps=reps) if ok else (float("nan"), float("nan"))
            scores[core][task.name] = {"mean": float(np.mean(ok)) if ok else float("nan"),
                                       "ci95": [lo, hi], "seeds": len(ok), "per_seed": vals}
        complete = bool(np.isfinite(matrix).all())
        if complete:
            lo, hi = stratified_bootstrap_ci(matrix, reps=reps)
            aggregate[core] = {"iqm": iqm(matrix), "ci95": [lo, hi], "runs": int(matrix.size)}
        else:
            aggregate[core] = {"iqm": float("nan"), "ci95": [float("nan")] * 2,
                               "runs": int(np.isfinite(matrix).sum()),
                               "note": "incomplete grid: some runs missing or without episodes"}
    return {"scores": scores, "iqm": aggregate}


def _fmt(mean: float, ci) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def format_table(summary: dict, cores: Sequence[str], tasks: Sequence[SuiteTask], suite: str,
                 seeds: int) -> str:
    head = ["core"] + [t.name for t in tasks] + ["IQM"]
    body = [[c] + [_fmt(summary["scores"][c][t.name]["mean"], summary["scores"][c][t.name]["ci95"])
                   for t in tasks] + [_fmt(summary["iqm"][c]["iqm"], summary["iqm"][c]["ci95"])]
            for c in cores]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    line = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip()
    title = (f"{suite}, {seeds} seed(s): normalised score (random 0, perfect 1), mean over seeds "
             f"[95% bootstrap CI]; IQM over tasks and seeds [95% stratified bootstrap CI]")
    return "\n".join([title, line(head), line(["-" * w for w in widths])] + [line(r) for r in body]) + "\n"


def plot_curves(runs: Sequence[Run], out: Path, cores: Sequence[str], tasks: Sequence[SuiteTask],
                path: Path) -> None:
    """One panel per task: normalised return against steps (``CURVE_BINS`` bins), mean over
    seeds per core with the band from its lowest to its highest seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for core in cores:
            curves, edges = [], None
            for run in runs:
                if run.core != core or run.task != task:
                    continue
                run_dir = out / "runs" / run.name
                if not run_finished(run_dir, run.total_steps):
                    continue
                steps, rets = read_episodes(run_dir)
                edges = np.linspace(0, run.total_steps, CURVE_BINS + 1)
                b = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, CURVE_BINS - 1)
                norm = (rets - task.random) / (task.perfect - task.random)   # [E]
                sums = np.bincount(b, weights=norm, minlength=CURVE_BINS)
                counts = np.bincount(b, minlength=CURVE_BINS)
                curves.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
            if not curves:
                continue
            c = np.vstack(curves)                                    # [seeds, bins]
            x = 0.5 * (edges[:-1] + edges[1:])
            with warnings.catch_warnings():   # a bin without episodes in every seed: NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, lo, hi = np.nanmean(c, 0), np.nanmin(c, 0), np.nanmax(c, 0)
            (line,) = ax.plot(x, mean, label=core)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
        ax.set_title(f"{task.name} ({task.env})", fontsize=9)
        ax.set_xlabel("env steps")
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.axhline(1.0, color="grey", lw=0.5, ls="--")
    axes[0][0].set_ylabel("normalised return")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- main ------------------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: List[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    args = build_parser().parse_args(argv)
    try:
        cores, tasks, settings = check_inputs(args, extra)
        out = Path(args.out_dir) / (args.name or args.suite)
        saved_path = out / "compare.json"
        if saved_path.exists():
            try:
                saved = json.loads(saved_path.read_text())
            except ValueError:
                raise CompareInputError(f"{saved_path} is not valid JSON; choose another --name") from None
            diff = [k for k in settings if saved.get("settings", {}).get(k) != settings[k]]
            if diff:
                raise CompareInputError(f"compare directory {out} was made with other settings "
                                        f"({', '.join(diff)}); use them or choose another --name")
        elif out.exists() and any(out.iterdir()):
            raise CompareInputError(f"{out} exists and is not a compare directory; choose another --name")
    except CompareInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    runs = [Run(core, task, seed, args.total_steps or task.total_steps)
            for core in cores for task in tasks for seed in range(args.seeds)]
    out.mkdir(parents=True, exist_ok=True)
    saved_path.write_text(json.dumps({"settings": settings, "command": ["python", "-m", "launch.compare",
                                                                        *sys.argv[1:]]}, indent=2))
    jobs = args.jobs or max(1, _cpus() // 3)
    t0 = time.time()
    try:
        failures = run_grid(runs, out, settings, jobs, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    rows = collect(runs, out)
    write_results_csv(rows, out / "results.csv")
    summary = summarise(rows, cores, tasks, args.seeds, args.bootstrap_reps)
    summary.update({"suite": args.suite, "cores": cores, "seeds": args.seeds,
                    "tasks": {t.name: {"env": t.env, "total_steps": args.total_steps or t.total_steps,
                                       "random": t.random, "perfect": t.perfect,
                                       "train_args": list(t.train_args)} for t in tasks},
                    "final_return": f"mean over the last {FINAL_FRACTION:.0%} of each run's episodes",
                    "bootstrap": {"reps": args.bootstrap_reps, "confidence": 0.95, "seed": 0},
                    "runs": len(runs), "runs_finished": len(rows), "failures": failures,
                    "train_args": settings["train_args"], "jobs": jobs,
                    "wall_s_this_call": round(time.time() - t0, 1)})
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    table = format_table(summary, cores, tasks, args.suite, args.seeds)
    (out / "table.txt").write_text(table)
    print(table, end="")
    if rows:
        plot_curves(runs, out, cores, tasks, out / "curves.png")
    print(f"{len(rows)}/{len(runs)} runs finished; results in {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
