"""Aggregate scores with their uncertainty, after Agarwal et al., "Deep Reinforcement
Learning at the Edge of the Statistical Precipice", NeurIPS 2021 (the ``rliable``
library's definitions, in numpy):

* :func:`iqm`: the interquartile mean, the mean of the middle 50% of the scores
  (``scipy.stats.trim_mean(x, 0.25)``: ``int(0.25 n)`` scores cut at each end);
* :func:`bootstrap_ci`: a percentile bootstrap confidence interval of a statistic of
  one sample (resample the sample with replacement ``reps`` times);
* :func:`stratified_bootstrap_ci`: the paper's stratified bootstrap for a ``[runs,
  tasks]`` score matrix: runs are resampled with replacement *within each task*, and
  the statistic (the IQM) is taken over all resampled scores.

Every resampling draws from ``numpy.random.default_rng(seed)``, so a result is
reproducible from its seed.
"""

from __future__ import annotations

from typing import Callable, Tuple

import numpy as np

CI = Tuple[float, float]


def iqm(scores) -> float:
    """Interquartile mean of all entries of ``scores`` (NaN when empty)."""
    x = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))
    n = x.size
    if n == 0:
        return float("nan")
    cut = int(0.25 * n)
    return float(x[cut:n - cut].mean())


def _iqm_rows(x: np.ndarray) -> np.ndarray:
    """IQM of every row of ``x`` [reps, n] -> [reps]."""
    n = x.shape[1]
    cut = int(0.25 * n)
    return np.sort(x, axis=1)[:, cut:n - cut].mean(axis=1)


def _percentiles(stats: np.ndarray, confidence: float) -> CI:
    alpha = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(stats, [alpha, 100.0 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(sample, statistic: str = "mean", reps: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> CI:
    """Percentile bootstrap CI of ``statistic`` ("mean" or "iqm") of a 1-D sample."""
    x = np.asarray(sample, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(x.size, size=(reps, x.size))           # [reps, n]
    res = x[idx]
    stats = res.mean(axis=1) if statistic == "mean" else _iqm_rows(res)
    return _percentiles(stats, confidence)


def stratified_bootstrap_ci(scores, reps: int = 2000, confidence: float = 0.95, seed: int = 0,
                            statistic: Callable[[np.ndarray], np.ndarray] = _iqm_rows) -> CI:
    """Stratified percentile bootstrap CI of the IQM of a ``[runs, tasks]`` score matrix."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.size == 0:
        raise ValueError(f"scores must be a non-empty [runs, tasks] matrix, got shape {list(s.shape)}")
    runs, tasks = s.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(runs, size=(reps, runs, tasks))         # per task, its own run draws
    res = np.take_along_axis(np.broadcast_to(s, (reps, runs, tasks)), idx, axis=1)  # [reps, runs, tasks]
    return _percentiles(statistic(res.reshape(reps, runs * tasks)), confidence)
