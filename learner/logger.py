"""Run logging: TensorBoard event files, a CSV file with the same scalars, a progress bar.

Scalars are logged against environment steps. The CSV (``<run_dir>/logs.csv``) has one
row per logging interval and a fixed header chosen at the start of the run (the
per-task columns are known then from the task set); on resume, rows are appended to
the existing file when its header matches, else a new numbered file is started.

Every finished training episode is also appended to ``<run_dir>/episodes.csv``
(``step, task, return, length``; ``step`` is the learner's step count when the
episode reached the learner), the data behind "mean return over the last 10% of the
episodes" in ``launch.compare``.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, Optional


EPISODE_COLUMNS = ["step", "task", "return", "length"]


class RunLogger:
    def __init__(self, run_dir: str | Path, columns: Iterable[str], *, total_steps: int,
                 start_step: int = 0, progress: bool = True, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.columns = ["step", "time"] + [c for c in columns if c not in ("step", "time")]
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=start_step or None)
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
