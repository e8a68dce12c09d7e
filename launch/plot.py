"""Draw learning curves from run logs: ``python -m launch.plot RUN_DIR [RUN_DIR ...]``.

Reads ``<run_dir>/logs.csv`` (and the ``logs.1.csv``, ``logs.2.csv`` ... files a
resumed run with a changed column set starts, see :mod:`learner.logger`) and writes
one PNG per metric group into ``--out``, with every run overlaid (legend = run
name) against environment steps:

* ``return.png``: one panel per task (``return/<task>`` columns) plus the mean over
  tasks (``return/mean``), the IMPALA-style learning curves of the SRWM paper;
* ``sps.png``: environment steps per second.

``--metrics`` picks other groups (any column name, or the prefix of ``name/...``
columns, e.g. ``length`` or ``total_loss``); ``--smooth N`` averages each curve over
a trailing window of N log rows. Examples::

    python -m launch.plot runs/srwm-procgen-20250101-120000
    python -m launch.plot runs/srwm-a runs/deltanet-a --smooth 5 --out plots/

Bad input (a missing run directory, a run without log rows, a metric no run has, an
--out folder that cannot be written)
is reported in one line with exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

DEFAULT_METRICS = ("return", "sps")
_CONTINUATION = re.compile(r"^logs\.(\d+)\.csv$")


class PlotInputError(ValueError):
    """Bad input: reported in one line, exit code 2."""


@dataclass
class RunLog:
    """The logged scalars of one run: ``columns[name]`` is float ``[rows]`` (NaN where not logged)."""

    name: str
    path: Path
    step: np.ndarray                                          # [rows] int64, increasing
    columns: Dict[str, np.ndarray] = field(default_factory=dict)


def log_files(run_dir: Path) -> List[Path]:
    """``logs.csv`` then its numbered continuations, in the order the run wrote them."""
    files = [run_dir / "logs.csv"] if (run_dir / "logs.csv").is_file() else []
    numbered = sorted((p for p in run_dir.glob("logs.*.csv") if _CONTINUATION.match(p.name)),
                      key=lambda p: int(_CONTINUATION.match(p.name).group(1)))
    return files + numbered


def _float(text: str) -> float:
    if text is None or text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_run_log(run_dir: str | Path, name: Optional[str] = None) -> RunLog:
    """Read every log file of a run into one table sorted by step (later rows win on a repeated step)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PlotInputError(f"run directory {run_dir} does not exist")
    files = log_files(run_dir)
    if not files:
        raise PlotInputError(f"run directory {run_dir} has no logs.csv")
    rows: List[Dict[str, str]] = []
    for f in files:
        with open(f, newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "step" not in reader.fieldnames:
                raise PlotInputError(f"{f} has no 'step' column (not a run log)")
            rows.extend(r for r in reader if r.get("step") not in (None, ""))
    if not rows:
        raise PlotInputError(f"{files[0]} has no log rows yet")
    by_step: Dict[int, Dict[str, str]] = {}
    for r in rows:                      # a resumed run may re-log a step: keep the last row
        by_step[int(float(r["step"]))] = r
    steps = sorted(by_step)
    names = []
    for r in rows:
        for k in r:
            if k not in ("step", "time") and k is not None and k not in names:
                names.append(k)
    columns = {k: np.array([_float(by_step[s].get(k)) for s in steps], dtype=np.float64) for k in names}
    return RunLog(name=name or run_dir.resolve().name, path=run_dir, step=np.array(steps, dtype=np.int64),
                  columns=columns)


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` finite values (NaN rows stay NaN)."""
    y = np.asarray(y, dtype=np.float64)            # [rows]
    if window <= 1:
        return y.copy()
    out = np.full_like(y, np.nan)
    finite = np.flatnonzero(np.isfinite(y))
    vals = y[finite]                               # [n] the finite values, in order
    csum = np.concatenate([[0.0], np.cumsum(vals)])
    for j, i in enumerate(finite):
        lo = max(0, j + 1 - window)
        out[i] = (csum[j + 1] - csum[lo]) / (j + 1 - lo)
    return out


def group_columns(runs: Sequence[RunLog], group: str) -> List[str]:
    """Columns of a metric group: ``group`` itself and ``group/...``; the mean panel last."""
    found: List[str] = []
    for run in runs:
        for c in run.columns:
            if (c == group or c.startswith(group + "/")) and c not in found:
                found.append(c)
    mean = f"{group}/mean"
    return [c for c in found if c != mean] + ([mean] if mean in found else [])


def plot_group(runs: Sequence[RunLog], group: str, columns: Sequence[str], out_file: Path,
               smooth_window: int = 1) -> Path:
    """One PNG: a panel per column, every run overlaid."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(columns)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.6 * nrows), squeeze=False)
    for ax, col in zip(axes.flat, columns):
        for run in runs:
            if col not in run.columns:
                continue
            y = smooth(run.columns[col], smooth_window)
            ok = np.isfinite(y)
            if ok.any():
                ax.plot(run.step[ok], y[ok], label=run.name, linewidth=1.4)
        ax.set_title(col if col != group else group)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(group)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    suffix = f" (smoothed over {smooth_window} log rows)" if smooth_window > 1 else ""
    fig.suptitle(f"{group}{suffix}")
    fig.tight_layout()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file


def _unique_names(dirs: Sequence[Path]) -> List[str]:
    names = [d.resolve().name for d in dirs]
    if len(set(names)) == len(names):
        return names
    return [str(d) for d in dirs]


def plot_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, metrics: Sequence[str] = DEFAULT_METRICS,
              smooth_window: int = 1) -> List[Path]:
    """Write one PNG per metric group; returns the files written."""
    if smooth_window < 1:
        raise PlotInputError(f"--smooth must be a positive integer, got {smooth_window}")
    dirs = [Path(d) for d in run_dirs]
    runs = [read_run_log(d, n) for d, n in zip(dirs, _unique_names(dirs))]
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".probe-"):
            pass
    except OSError as e:
        raise PlotInputError(f"--out: cannot write to {out_dir}: {e.strerror or e}") from None
    written = []
    for group in metrics:
        cols = group_columns(runs, group)
        if not cols:
            known = sorted({c.split("/", 1)[0] for r in runs for c in r.columns})
            raise PlotInputError(f"no run logs metric {group!r}; logged groups: {', '.join(known)}")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", group)
        written.append(plot_group(runs, group, cols, out_dir / f"{safe}.png", smooth_window))
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m launch.plot", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (several are overlaid)")
    p.add_argument("--out", default="", help="folder for the PNG files (default: RUN_DIR/plots for one run, "
                                             "./plots for several)")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS),
                   help="metric groups, one PNG each (default: %(default)s)")
    p.add_argument("--smooth", type=int, default=1, help="trailing-mean window in log rows (default: 1 = none)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or (str(Path(args.run_dirs[0]) / "plots") if len(args.run_dirs) == 1 else "plots")
    try:
        files = plot_runs(args.run_dirs, out, args.metrics, args.smooth)
    except PlotInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:               # e.g. the disk filled up while writing a PNG
        print(f"error: cannot write the plots into {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    for f in files:
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
