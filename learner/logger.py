"""Run logging: TensorBoard event files, a CSV file with the same scalars, a progress bar.

Scalars are logged against environment steps. The CSV (``<run_dir>/logs.csv``) has one
row per logging interval and a fixed header chosen at the start of the run (the
per-task columns are known then from the task set, the rollout source's and the
learner's diagnostics from their configuration); on resume, rows are appended to the
existing file when its header matches, else a new numbered file is started. A scalar
that is not a column goes to TensorBoard only, with a warning naming it (once): the
caller forgot to declare it.

Every finished training episode is also appended to ``<run_dir>/episodes.csv``
(``step, task, return, length``; ``step`` is the learner's step count when the
episode reached the learner), the data behind "mean return over the last 10% of the
episodes" in ``launch.compare``.

A run resumed from an older checkpoint than its last log row (a fallback past a torn
checkpoint, a run killed between checkpoints) is rewound first: CSV rows after the
resumed step are moved aside into ``logs-after-<step>[.N].csv`` (kept, never deleted;
the plots do not read them) and TensorBoard drops its later events through a purge
step, so every curve stays monotone in the step.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional

log = logging.getLogger(__name__)

_LOG_FILE = re.compile(r"^logs(\.\d+)?\.csv$")


def _step_of(row: List[str]) -> float:
    try:
        return float(row[0])
    except (IndexError, ValueError):
        return math.inf if row else -math.inf   # a torn last row goes aside with the later ones


def rewind_csv_logs(run_dir: Path, step: int) -> List[Path]:
    """Move the rows logged after ``step`` out of ``logs.csv`` / ``logs.N.csv``; return the new files."""
    moved_to = []
    for path in sorted(p for p in Path(run_dir).glob("logs*.csv") if _LOG_FILE.match(p.name)):
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0][:1] != ["step"]:
            continue
        header, body = rows[0], rows[1:]
        keep = [r for r in body if _step_of(r) <= step]
        later = [r for r in body if _step_of(r) > step]
        if not later:
            continue
        stem = "logs-after-" + str(step) + ("" if path.name == "logs.csv" else "-" + path.stem.split(".", 1)[1])
        aside = Path(run_dir) / f"{stem}.csv"
        i = 1
        while aside.exists():
            aside = Path(run_dir) / f"{stem}.{i}.csv"
            i += 1
        with open(aside, "w", newline="") as f:
            csv.writer(f).writerows([header] + later)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([header] + keep)
        os.replace(tmp, path)
        log.warning("resumed at step %d: moved %d log rows logged after it from %s to %s",
                    step, len(later), path.name, aside.name)
        moved_to.append(aside)
    return moved_to



EPISODE_COLUMNS = ["step", "task", "return", "length"]


class RunLogger:
    def __init__(self, run_dir: str | Path, columns: Iterable[str], *, total_steps: int,
                 start_step: int = 0, progress: bool = True, tensorboard: bool = True,
                 rewind: bool = False):
        """``rewind`` (the trainer): first cut the existing logs back to ``start_step``."""
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.columns = ["step", "time"] + [c for c in columns if c not in ("step", "time")]
        if rewind:
            rewind_csv_logs(self.run_dir, start_step)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            # the purge step hides events logged after start_step by an earlier life of the run
            purge = start_step if rewind and (self.run_dir / "tb").is_dir() else (start_step or None)
            self.writer = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge)
        self.csv_path = self._csv_path()
        new = not self.csv_path.exists()
        self._csv_file = open(self.csv_path, "a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=self.columns, extrasaction="ignore")
        if new:
            self._csv.writeheader()
            self._csv_file.flush()
        self.episodes_path = self.run_dir / "episodes.csv"
        new_ep = not self.episodes_path.exists()
        self._ep_file = open(self.episodes_path, "a", newline="")
        self._ep_csv = csv.writer(self._ep_file)
        if new_ep:
            self._ep_csv.writerow(EPISODE_COLUMNS)
            self._ep_file.flush()
        self._undeclared: set = set()        # scalars logged that are not CSV columns (warned once)
        self.total_steps = total_steps
        self.start_time = time.time()
        self.bar = None
        if progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", unit_scale=True,
                            dynamic_ncols=True, file=sys.stderr, smoothing=0.1,
                            disable=None)   # disabled when stderr is not a terminal

    def _csv_path(self) -> Path:
        base = self.run_dir / "logs.csv"
        if not base.exists():
            return base
        with open(base, newline="") as f:
            header = next(csv.reader(f), [])
        if header == self.columns:
            return base
        i = 1
        while (self.run_dir / f"logs.{i}.csv").exists():
            i += 1
        return self.run_dir / f"logs.{i}.csv"

    def log(self, step: int, scalars: Dict[str, float]) -> None:
        row = {"step": step, "time": round(time.time() - self.start_time, 3)}
        for k, v in scalars.items():
            if v is None:
                continue
            v = float(v)
            row[k] = v
            if self.writer is not None and math.isfinite(v):
                self.writer.add_scalar(k, v, step)
        new = set(row) - set(self.columns) - self._undeclared
        if new:
            self._undeclared |= new
            log.warning("scalars %s are not columns of %s: logged to TensorBoard only",
                        ", ".join(sorted(new)), self.csv_path.name)
        self._csv.writerow(row)
        self._csv_file.flush()
        if self.writer is not None:
            self.writer.flush()

    def log_episodes(self, step: int, episodes) -> None:
        """Append finished episodes (``envs.EpisodeInfo``) to ``episodes.csv``."""
        if not episodes:
            return
        self._ep_csv.writerows([step, e.task, repr(float(e.episode_return)), int(e.length)] for e in episodes)
        self._ep_file.flush()

    def progress(self, step: int, postfix: Optional[Dict[str, str]] = None) -> None:
        if self.bar is None:
            return
        self.bar.n = min(step, self.total_steps)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if not self._csv_file.closed:
            self._csv_file.close()
        if not self._ep_file.closed:
            self._ep_file.close()
