"""One table from several compare directories: ``python -m launch.compare_report DIR [DIR ...]``.

A ``launch.compare`` grid need not be trained in one sitting or one directory: the baseline
cores may have been compared last week, and today only the new core is trained. This
command reads the ``results.csv`` and ``summary.json`` that ``launch.compare`` leaves in
each directory (also the copies kept under ``docs/learning/``), checks that they can be
put side by side, and writes the table of all their runs::

    python -m launch.compare_report compare/memory-v1-majority compare/memory-v1-majority-sr \\
        --out compare/memory-v1-majority-all
    python -m launch.compare_report docs/learning/memory-v1-recall compare/mine --cores lstm mycore

They can be put side by side when every directory used the same suite and the same
training settings (``train_args``), a task found in several has the same budget,
normalisation and own train args in each, and no (core, task, seed) run appears twice.
``--suite`` names the table's suite and also admits directories of another suite, for
the tasks that suite defines exactly alike (a new suite version that kept a task keeps
its results)::

    python -m launch.compare_report docs/learning/memory-v1-recall compare/memory-v2-repeat-first \\
        --suite memory-v2 --cores ff lstm deltanet --out compare/memory-v2-all

The normalised scores are recomputed from each run's final return with the suite's constants. The statistics are those of ``launch.compare``: per
core and task the mean over seeds with its 95% bootstrap CI, per core the IQM over tasks
and seeds with its stratified bootstrap CI (an incomplete grid gives ``n/a``).

Output (``--out``; nothing is written without it or when an input is refused): the
merged ``results.csv`` (``run_dir`` prefixed by the directory it came from),
``summary.json`` (with ``sources``) and ``table.txt``. No curves: they need the runs'
episode files, which the kept copies do not hold. Bad input (a missing directory or
file, an unreadable file, mismatched settings, a duplicate run, an unknown ``--cores``
name) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from envs.suites import SuiteTask, get_suite
from launch.compare import RESULT_COLUMNS, format_table, summarise, write_results_csv


class ReportInputError(ValueError):
    """Bad input: one line, exit code 2."""


def read_compare_dir(path: Path) -> Tuple[dict, List[dict]]:
    """(summary.json, rows of results.csv) of one compare directory; ReportInputError if unreadable."""
    if not path.is_dir():
        raise ReportInputError(f"{path}: not a directory")
    try:
        summary = json.loads((path / "summary.json").read_text())
        with open(path / "results.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError as e:
        raise ReportInputError(f"{path}: no {Path(e.filename).name} (not a launch.compare directory)") from None
    except (OSError, ValueError, csv.Error) as e:
        raise ReportInputError(f"{path}: cannot read it: {e}") from None
    for key in ("suite", "tasks", "train_args", "seeds"):
        if key not in summary:
            raise ReportInputError(f"{path / 'summary.json'}: no {key!r} entry (not written by launch.compare)")
    return summary, rows


def _task_spec(spec: dict) -> dict:
    """A task's entry in summary.json; directories written before tasks had their own
    ``train_args`` hold none, which is what they were trained with."""
    return dict(spec, train_args=list(spec.get("train_args", [])))


def _definition(task: SuiteTask) -> dict:
    return {"env": task.env, "total_steps": task.total_steps, "random": task.random,
            "perfect": task.perfect, "train_args": list(task.train_args)}


def merge(dirs: Sequence[Path], target: str = "") -> Tuple[str, List[SuiteTask], Dict[str, dict],
                                                            List[str], int, List[dict], List[str]]:
    """(suite, tasks in suite order, each task's settings as its summaries give them (budget,
    normalisation, own train args), cores in order of appearance, seeds, rows, train_args).

    ``target``: the suite of the table; a directory of another suite is accepted when each
    of its tasks is defined in it exactly as in ``target`` (env, budget, normalisation,
    the task's own train args) and was trained with that budget."""
    suite = train_args = None
    if target:
        try:
            target_tasks = {t.name: t for t in get_suite(target)}
        except ValueError as e:
            raise ReportInputError(str(e)) from None
        suite = target
    budgets: Dict[str, Tuple[Path, dict]] = {}
    seen: Dict[Tuple[str, str, int], Path] = {}
    cores: List[str] = []
    rows: List[dict] = []
    seeds = 0
    for d in dirs:
        summary, raw = read_compare_dir(d)
        summary["tasks"] = {name: _task_spec(spec) for name, spec in summary["tasks"].items()}
        if train_args is None:
            train_args, first = summary["train_args"], d
            if suite is None:
                suite = summary["suite"]
        elif summary["train_args"] != train_args:
            raise ReportInputError(f"{d} was trained with other settings than {first}: "
                                   f"{' '.join(summary['train_args'])} against {' '.join(train_args)}")
        if not target and summary["suite"] != suite:
            raise ReportInputError(f"{d} is of suite {summary['suite']!r}, {first} of {suite!r}; "
                                   f"--suite puts the tasks both define alike in one table")
        try:
            known = {t.name: t for t in get_suite(summary["suite"])}
        except ValueError as e:
            raise ReportInputError(f"{d}: {e}") from None
        for name, spec in summary["tasks"].items():
            if name not in known:
                raise ReportInputError(f"{d}: task {name!r} is not in suite {summary['suite']!r}")
            if target and summary["suite"] != target:
                mine = dict(_definition(known[name]), total_steps=spec["total_steps"])
                if name not in target_tasks or mine != _definition(target_tasks[name]):
                    raise ReportInputError(f"{d}: task {name!r} of suite {summary['suite']!r} is not "
                                           f"defined as in {target!r}: {mine} against "
                                           f"{_definition(target_tasks[name]) if name in target_tasks else 'absent'}")
                known[name] = target_tasks[name]
            if name in budgets and budgets[name][1] != spec:
                raise ReportInputError(f"task {name!r} has other settings in {d} ({spec}) than in "
                                       f"{budgets[name][0]} ({budgets[name][1]})")
            budgets.setdefault(name, (d, spec))
        seeds = max(seeds, int(summary["seeds"]))
        for r in raw:
            try:
                core, task, seed = r["core"], r["task"], int(r["seed"])
                final = float(r["final_return"])
            except (KeyError, ValueError) as e:
                raise ReportInputError(f"{d / 'results.csv'}: a row without a valid {e}") from None
            if task not in summary["tasks"]:
                raise ReportInputError(f"{d / 'results.csv'}: run {core}.{task}.s{seed} of a task "
                                       f"its summary.json does not list")
            if (core, task, seed) in seen:
                raise ReportInputError(f"run {core}.{task}.s{seed} is in both {seen[(core, task, seed)]} and {d}")
            seen[(core, task, seed)] = d
            if core not in cores:
                cores.append(core)
            row = {k: r.get(k, "") for k in RESULT_COLUMNS}
            row.update(seed=seed, final_return=final, normalised_score=known[task].normalise(final),
                       run_dir=str(d / (r.get("run_dir") or f"runs/{core}.{task}.s{seed}")))
            for k in ("steps", "episodes", "final_episodes"):
                row[k] = int(r[k]) if r.get(k, "") != "" else r.get(k, "")
            if r.get("elapsed_s", "") != "":
                row["elapsed_s"] = float(r["elapsed_s"])
            rows.append(row)
    tasks = [t for t in get_suite(suite) if t.name in budgets]
    specs = {name: spec for name, (_, spec) in budgets.items()}
    return suite, tasks, specs, cores, seeds, rows, train_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m launch.compare_report",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", help="compare directories (each with results.csv and summary.json)")
    p.add_argument("--cores", nargs="+", default=[], help="only these cores, in this order (default: all)")
    p.add_argument("--out", default="", help="write results.csv, summary.json and table.txt here")
    p.add_argument("--suite", default="", help="the table's suite (default: the directories' "
                   "one); a directory of another suite counts when its tasks are defined alike")
    p.add_argument("--bootstrap-reps", type=int, default=2000, help="bootstrap resamples")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.bootstrap_reps < 1:
            raise ReportInputError(f"--bootstrap-reps must be >= 1, got {args.bootstrap_reps}")
        dirs = [Path(d) for d in args.dirs]
        out = Path(args.out) if args.out else None
        if out is not None and any(out.resolve() == d.resolve() for d in dirs if d.exists()):
            raise ReportInputError(f"--out {out} is one of the inputs; choose another folder")
        if out is not None and (out / "compare.json").exists():
            raise ReportInputError(f"--out {out} is a launch.compare directory; choose another folder")
        suite, tasks, specs, cores, seeds, rows, train_args = merge(dirs, args.suite)
        for c in args.cores:
            if c not in cores:
                raise ReportInputError(f"core {c!r} has no run in these directories (they hold: {', '.join(cores)})")
        if args.cores:
            cores = list(args.cores)
            rows = [r for r in rows if r["core"] in cores]
    except ReportInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = summarise(rows, cores, tasks, seeds, args.bootstrap_reps)
    summary.update({"suite": suite, "cores": cores, "seeds": seeds,
                    "tasks": {t.name: specs[t.name] for t in tasks},
                    "bootstrap": {"reps": args.bootstrap_reps, "confidence": 0.95, "seed": 0},
                    "runs_finished": len(rows), "train_args": train_args,
                    "sources": [str(d) for d in dirs]})
    table = format_table(summary, cores, tasks, suite, seeds)
    print(table, end="")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        rows.sort(key=lambda r: (cores.index(r["core"]), [t.name for t in tasks].index(r["task"]), r["seed"]))
        write_results_csv(rows, out / "results.csv")
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        (out / "table.txt").write_text(table)
        print(f"{len(rows)} runs from {len(dirs)} directories; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
