"""Statistics of evaluation episodes: mean, standard error, 95% CI, normalised scores and
the generalisation gap (pure functions of the results)."""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np

from learner.evaluation.plan import EpisodeResult, EvalTask, Split

Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def return_stats(returns: Sequence[float]) -> Dict[str, Optional[float]]:
    """Mean, standard error (sample std / sqrt(n)) and normal-approximation 95% CI."""
    x = np.asarray(returns, dtype=np.float64)      # [n]
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    se = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    ci = [mean - Z_95 * se, mean + Z_95 * se] if se is not None else None
    return {"episodes": n, "mean_return": mean, "std_err": se, "ci95": ci}


def summarise(results: Sequence[EpisodeResult], tasks: Sequence[EvalTask], splits: Sequence[Split],
              distribution_mode: str, constant_set: str, family: str) -> dict:
    """Per game and split statistics, mean normalised score per split, generalisation gaps."""
    from envs.scores import ATARI_HUMAN_CONSTANTS, constant_set_label, human_normalised_score, normalised_score

    def score(mean_return: float, game: str):
        if family == "procgen":
            return normalised_score(mean_return, game, distribution_mode, constant_set)
        if family == "atari":
            return human_normalised_score(mean_return, game)
        return None

    games: Dict[str, Dict[str, dict]] = {}
    for task in tasks:
        games[task.name] = {}
        for split in splits:
            rs = [r for r in results if r.job.game == task.name and r.job.split == split.name]
            st = return_stats([r.episode_return for r in rs])
            st["mean_length"] = float(np.mean([r.length for r in rs])) if rs else math.nan
            st["truncated"] = int(sum(r.truncated for r in rs))
            st["normalised_score"] = score(st["mean_return"], task.name)
            games[task.name][split.name] = st
    mean_norm = {}
    for split in splits:
        scores = [games[t.name][split.name]["normalised_score"] for t in tasks]
        scores = [s for s in scores if s is not None]
        mean_norm[split.name] = {"value": float(np.mean(scores)) if scores else None,
                                 "games_with_constants": len(scores), "games": len(tasks)}
    gap = {}
    names = [s.name for s in splits]
    if "train" in names and len(names) > 1:
        for task in tasks:
            tr = games[task.name]["train"]
            gap[task.name] = {}
            for split in splits:
                if split.name == "train":
                    continue
                te = games[task.name][split.name]
                norm = (None if tr["normalised_score"] is None or te["normalised_score"] is None
                        else tr["normalised_score"] - te["normalised_score"])
                gap[task.name][split.name] = {"return": tr["mean_return"] - te["mean_return"],
                                              "normalised_score": norm}
        gap["mean_normalised_score"] = {
            s.name: (None if mean_norm["train"]["value"] is None or mean_norm[s.name]["value"] is None
                     else mean_norm["train"]["value"] - mean_norm[s.name]["value"])
            for s in splits if s.name != "train"}
    return {
        "score_constants": (f"human-normalised, {ATARI_HUMAN_CONSTANTS}" if family == "atari"
                            else constant_set_label(constant_set, distribution_mode, family)),
        "splits": {s.name: {"start_level": s.start_level if s.has_levels else None,
                            "num_levels": s.num_levels if s.has_levels else None} for s in splits},
        "games": games,
        "mean_normalised_score": mean_norm,
        "generalisation_gap": gap,
    }
