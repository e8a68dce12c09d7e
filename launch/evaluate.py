"""Evaluate a checkpoint: ``python -m launch.evaluate RUN_DIR_OR_CHECKPOINT [options]``.

Plays ``--episodes`` episodes per game on each level split (docs/design.md#level-splits:
train = levels 0-199, test1/test2/test3 = 200 levels from 1000/1200/1400), spread
evenly over the split's levels, and reports per game the mean return, its standard
error, a 95% confidence interval (normal approximation: mean +- 1.96 s.e.) and the
normalised score ``(R - R_min) / (R_max - R_min)`` with the named constant set
(:mod:`envs.scores`), plus the mean normalised score over the games and, with
several splits including ``train``, the generalisation gap (train minus test).

Examples::

    # the paper's held-out evaluation of a multi-task run (every game it was trained on)
    python -m launch.evaluate runs/srwm-procgen-1 --split train test1 test2 test3 --actors 4

    # one game, greedy actions, 50 episodes on 10 custom levels, two recorded videos
    python -m launch.evaluate runs/srwm-procgen-1/checkpoints/ckpt-000100000.pt \\
        --env procgen:bigfish --start-level 5000 --num-levels 10 --episodes 50 --greedy --record 2

    # Atari: evaluation mode (a lost life does not end the episode), 108,000-frame cap
    python -m launch.evaluate runs/srwm-atari-1 --episodes 30 --noop-max 30

Writes into ``--out`` (default ``<run_dir>/eval/<checkpoint>-<splits>-<policy>-seed<S>``):
``episodes.csv`` (game, split, episode, level_seed, return, length, truncated),
``summary.json``, ``table.txt`` (the printed table) and ``videos/`` with ``--record``.
Results depend only on ``--seed`` and the options, not on ``--actors``/``--envs``.

Bad input (a missing or corrupt checkpoint, an architecture or environment this code
cannot rebuild, a split outside the game's levels, zero episodes, an output folder that
cannot be written, ...) is reported in one line with exit code 2; a failure while
running (a worker dying, a video that cannot be written, a full disk) in one line with
exit code 1. ``episodes.csv`` is written as episodes finish, so a failure keeps every
result already computed.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

from learner.evaluation.loading import LoadedPolicy, load_policy
from learner.evaluation.plan import (ALL_EPISODES, EpisodeResult, EvalTask, EvaluationInputError, Split,
                                     plan_episodes, resolve_splits, resolve_tasks)
from learner.evaluation.runner import EvaluationWorkerError, RunnerSettings, VideoWriteError, run_episodes
from learner.evaluation.stats import summarise
from learner.evaluation.video import can_record, default_video_format, find_ffmpeg

log = logging.getLogger("launch.evaluate")

CSV_COLUMNS = ("game", "split", "episode", "level_seed", "return", "length", "truncated")
DEFAULT_PROCGEN_SPLIT = "test1"


def build_parser() -> argparse.ArgumentParser:
    from envs.scores import DEFAULT_SCORE_CONSTANTS, SCORE_CONSTANTS
    p = argparse.ArgumentParser(prog="python -m launch.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT",
                   help="a run directory (its newest good checkpoint) or a checkpoint file")
    g = p.add_argument_group("what to evaluate")
    g.add_argument("--env", default="", help="environment spec (default: every task the checkpoint was trained on)")
    g.add_argument("--split", nargs="+", default=[], metavar="SPLIT",
                   help="ProcGen level splits: train test1 test2 test3 (several, or a comma list, "
                        f"report the generalisation gap; default: {DEFAULT_PROCGEN_SPLIT})")
    g.add_argument("--start-level", type=int, default=None, help="ProcGen: first level of a custom range")
    g.add_argument("--num-levels", type=int, default=None, help="ProcGen: number of levels of a custom range")
    g.add_argument("--distribution-mode", default="", help="ProcGen distribution mode (default: the checkpoint's)")
    g.add_argument("--episodes", type=int, default=200,
                   help="episodes per game and split, spread evenly over the split's levels (default: %(default)s)")
    g.add_argument("--noop-max", type=int, default=None, help="Atari: up to this many no-op starts "
                                                               "(default: the checkpoint's, 30 in the paper)")
    g.add_argument("--sticky-action-prob", type=float, default=None,
                   help="Atari: sticky-action probability (default: the checkpoint's, 0 in the paper)")
    g = p.add_argument_group("how to act")
    g.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=False,
                   help="take the most likely action instead of sampling from the policy (default: sample)")
    g.add_argument("--seed", type=int, default=0, help="seeds every episode's env and action sampling (default: 0)")
    g.add_argument("--actors", type=int, default=1, help="evaluation processes; 1 runs in this process (default: 1)")
    g.add_argument("--envs", type=int, default=8, help="episodes each process steps together (default: 8)")
    g.add_argument("--device", default="cpu", help="device of the agent: cpu, cuda, cuda:N or auto (default: cpu)")
    g.add_argument("--threads", type=int, default=1, help="torch threads per process (default: 1)")
    g.add_argument("--max-steps", type=int, default=0,
                   help="safety cap on agent steps per episode, marked 'truncated' (default: 0 = none)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default="", help="output folder (default: <run_dir>/eval/<checkpoint>-<splits>-"
                                             "<greedy|sampled>-seed<S>)")
    g.add_argument("--score-constants", default=DEFAULT_SCORE_CONSTANTS, choices=sorted(SCORE_CONSTANTS),
                   help="ProcGen normalisation constants (default: %(default)s, docs/design.md#procgen-normalised-score)")
    g.add_argument("--record", type=int, default=0,
                   help="record the first N episodes of each game and split as videos (default: 0)")
    g.add_argument("--video-format", default="auto", choices=("auto", "mp4", "gif"),
                   help="auto: mp4 when ffmpeg is available, else gif")
    g.add_argument("--video-scale", type=int, default=4, help="integer upscaling of recorded frames (default: 4)")
    g.add_argument("--fps", type=int, default=20, help="frames per second of recorded videos (default: 20)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar on the terminal")
    return p


def _resolve_device(name: str) -> str:
    from learner.device import check_device, resolve_device
    try:
        check_device(name)
    except ValueError as e:
        raise EvaluationInputError(str(e)) from None
    return str(resolve_device(name))


def check_options(args: argparse.Namespace) -> None:
    """Option checks that need neither the checkpoint nor an env."""
    for name in ("actors", "envs", "threads", "video_scale", "fps"):
        if getattr(args, name) < 1:
            raise EvaluationInputError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.episodes < 1:
        raise EvaluationInputError(f"--episodes must be at least 1, got {args.episodes}")
    for name in ("max_steps", "record", "seed"):
        if getattr(args, name) < 0:
            raise EvaluationInputError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.noop_max is not None and args.noop_max < 0:
        raise EvaluationInputError(f"--noop-max must be >= 0, got {args.noop_max}")
    if args.sticky_action_prob is not None and not 0.0 <= args.sticky_action_prob <= 1.0:
        raise EvaluationInputError(f"--sticky-action-prob must be in [0, 1], got {args.sticky_action_prob}")


def plan_splits(args: argparse.Namespace, family: str, distribution_mode: str) -> List[Split]:
    """The splits to evaluate; families without levels (and exploration mode) get one 'all' split."""
    custom = args.start_level is not None or args.num_levels is not None
    has_levels = family == "procgen" and distribution_mode != "exploration"
    if not has_levels:
        if args.split or custom:
            what = "ProcGen exploration mode (one fixed level per game)" if family == "procgen" else family
            raise EvaluationInputError(f"--split/--start-level/--num-levels select ProcGen levels; {what} has none")
        return [Split(ALL_EPISODES, 0, 0)]
    names = args.split or ([] if custom else [DEFAULT_PROCGEN_SPLIT])
    return resolve_splits(names, args.start_level, args.num_levels)


def default_out_dir(checkpoint: Path, splits: Sequence[Split], greedy: bool, seed: int) -> Path:
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    tag = "+".join(s.name for s in splits)
    return run_dir / "eval" / f"{checkpoint.stem}-{tag}-{'greedy' if greedy else 'sampled'}-seed{seed}"


def _csv_row(r: EpisodeResult) -> list:
    return [r.job.game, r.job.split, r.job.episode, r.level_seed, repr(float(r.episode_return)),
            r.length, int(r.truncated)]


def write_episodes_csv(path: Path, results: Sequence[EpisodeResult]) -> None:
    """The final file, in plan order (written beside, then renamed over the running one)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in results:
            w.writerow(_csv_row(r))
    os.replace(tmp, path)


class EpisodeLog:
    """``episodes.csv`` written as episodes finish (in finishing order), flushed per row, so
    a failure later in the evaluation loses no finished result."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        self._f = open(path, "w", newline="")
        self._w = csv.writer(self._f)
        self._w.writerow(CSV_COLUMNS)
        self._f.flush()

    def add(self, r: EpisodeResult) -> None:
        self._w.writerow(_csv_row(r))
        self._f.flush()
        self.count += 1

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def _writable_dir(path: Path, what: str) -> None:
    """Create ``path`` and check a file can be written there; EvaluationInputError otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as e:
        raise EvaluationInputError(f"{what}: cannot write to {path}: {e.strerror or e}") from None


def _fmt(x: Optional[float], digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    """Plain aligned text: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_report(summary: dict) -> str:
    """The printed table: one block per split, the mean normalised score, the generalisation gap."""
    meta = summary["meta"]
    if meta["family"] == "procgen":
        env_line = f"distribution mode {meta['distribution_mode']}"
    elif meta["family"] == "atari":
        env_line = (f"evaluation mode (a lost life does not end the episode), up to {meta['noop_max']} "
                    f"no-op starts, sticky actions {meta['sticky_action_prob']}, "
                    f"{meta['max_episode_frames']:,}-frame cap")
    else:
        env_line = meta["env"]
    lines = [f"checkpoint {meta['checkpoint']} (step {meta['steps']:,}, core {meta['core']})",
             f"policy {'greedy' if meta['greedy'] else 'sampled'}, seed {meta['seed']}, {env_line}",
             f"normalised scores: {summary['score_constants']}",
             "95% CI = mean +- 1.96 standard errors (normal approximation)"]
    games = summary["games"]
    for split, info in summary["splits"].items():
        levels = ("" if info["start_level"] is None or split.startswith("levels") else
                  f" (levels {info['start_level']}-{info['start_level'] + info['num_levels'] - 1})")
        lines += ["", f"split {split}{levels}"]
        rows = []
        for game, per_split in games.items():
            st = per_split[split]
            ci = st["ci95"]
            rows.append([game, str(st["episodes"]), _fmt(st["mean_return"]), _fmt(st["std_err"]),
                         f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "n/a",
                         _fmt(st["normalised_score"], 3), _fmt(st["mean_length"], 1), str(st["truncated"])])
        lines += _table(["game", "episodes", "mean return", "std err", "95% CI", "norm. score",
                         "mean length", "truncated"], rows)
        m = summary["mean_normalised_score"][split]
        lines.append(f"mean normalised score: {_fmt(m['value'], 3)} "
                     f"({m['games_with_constants']} of {m['games']} games have constants)")
    gap = summary["generalisation_gap"]
    if gap:
        tests = [s for s in summary["splits"] if s != "train"]
        header = ["game"] + [h for s in tests for h in (f"{s} return", f"{s} norm.")]
        rows = [[game] + [c for s in tests for c in (_fmt(gap[game][s]["return"]),
                                                     _fmt(gap[game][s]["normalised_score"], 3))]
                for game in games]
        rows.append(["mean"] + [c for s in tests for c in ("", _fmt(gap["mean_normalised_score"][s], 3))])
        lines += ["", "generalisation gap (train minus test)"] + _table(header, rows)
    return "\n".join(lines)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, unit="ep", dynamic_ncols=True, file=sys.stderr, desc="evaluating",
                disable=None if enabled else True)


def evaluate(args: argparse.Namespace) -> dict:
    """Everything after argument parsing; raises EvaluationInputError on bad input."""
    check_options(args)
    device = _resolve_device(args.device)
    loaded: LoadedPolicy = load_policy(args.checkpoint, device)
    cfg_env = loaded.env
    overrides = {}
    if args.distribution_mode:
        overrides["distribution_mode"] = args.distribution_mode
    if args.noop_max is not None:
        overrides["noop_max"] = args.noop_max
    if args.sticky_action_prob is not None:
        overrides["sticky_action_prob"] = args.sticky_action_prob
    base_env = dataclasses.replace(cfg_env, split="", eval_mode=True, env_threads=0, **overrides)
    loaded.env = base_env
    tasks: List[EvalTask]
    tasks, family = resolve_tasks(args.env, loaded)
    splits = plan_splits(args, family, base_env.distribution_mode)
    from envs import validate_env_config
    for task in tasks:
        for split in splits:
            probe = dataclasses.replace(base_env, env=task.env_spec)
            if split.num_levels:
                probe = dataclasses.replace(probe, start_level=split.start_level, num_levels=split.num_levels)
            try:
                validate_env_config(probe)
            except ValueError as e:
                raise EvaluationInputError(f"{task.env_spec} on split {split.name}: {e}") from None
    fmt = args.video_format
    if args.record:
        if not can_record(loaded.obs_spec.shape):
            raise EvaluationInputError(f"--record needs image observations; {cfg_env.env} gives "
                                       f"{list(loaded.obs_spec.shape)} vectors")
        if fmt == "auto":
            fmt = default_video_format()
        elif fmt == "mp4" and find_ffmpeg() is None:
            raise EvaluationInputError("--video-format mp4 needs ffmpeg (install imageio-ffmpeg); use gif")
    jobs = plan_episodes(tasks, splits, args.episodes, args.seed, record=args.record)
    out = Path(args.out) if args.out else default_out_dir(loaded.path, splits, args.greedy, args.seed)
    _writable_dir(out, "--out" if args.out else "the output folder (set another with --out)")
    if args.record:
        _writable_dir(out / "videos", "--record")
    settings = RunnerSettings(env_config=base_env, num_envs=args.envs, greedy=args.greedy, device=device,
                              max_steps=args.max_steps, video_dir=str(out / "videos"),
                              video_format=fmt if fmt != "auto" else "mp4", video_scale=args.video_scale,
                              video_fps=args.fps, threads=args.threads)

    if args.actors == 1:
        import torch
        torch.set_num_threads(args.threads)
    t0 = time.time()
    try:
        episode_log = EpisodeLog(out / "episodes.csv")
    except OSError as e:
        raise EvaluationInputError(f"cannot write {out / 'episodes.csv'}: {e.strerror or e}") from None
    bar = _progress_bar(len(jobs), args.progress)

    def on_result(r: EpisodeResult) -> None:
        episode_log.add(r)
        bar.update(1)

    try:
        results = run_episodes(jobs, loaded, settings, num_actors=args.actors, on_result=on_result)
    except (EvaluationInputError, KeyboardInterrupt):
        raise
    except Exception as e:
        kept = f"; the {episode_log.count} finished episode results are in {episode_log.path}"
        msg = str(e) if isinstance(e, (EvaluationWorkerError, VideoWriteError)) else f"{type(e).__name__}: {e}"
        raise EvaluationWorkerError(" ".join(msg.split())[:400] + kept) from None
    finally:
        bar.close()
        episode_log.close()
    elapsed = time.time() - t0

    summary = summarise(results, tasks, splits, base_env.distribution_mode, args.score_constants, family)
    summary["meta"] = {
        "checkpoint": str(loaded.path), "steps": loaded.steps, "updates": loaded.updates,
        "core": loaded.model.core, "env": args.env or cfg_env.env, "family": family,
        "distribution_mode": base_env.distribution_mode, "greedy": args.greedy, "seed": args.seed,
        "episodes_per_split": args.episodes, "max_steps": args.max_steps,
        "noop_max": base_env.noop_max if family == "atari" else None,
        "sticky_action_prob": base_env.sticky_action_prob if family == "atari" else None,
        "max_episode_frames": base_env.max_episode_frames if family == "atari" else None,
        "elapsed_s": round(elapsed, 3), "total_steps": int(sum(r.length for r in results)),
    }
    summary["videos"] = [r.video for r in results if r.video]
    # the JSON lists keys in a fixed order: meta first
    summary = {"meta": summary.pop("meta"), **summary}
    report = format_report(summary)
    try:
        write_episodes_csv(out / "episodes.csv", results)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        (out / "table.txt").write_text(report + "\n")
    except OSError as e:
        raise EvaluationWorkerError(f"cannot write the results into {out}: {e.strerror or e}") from None
    print(report)
    print(f"\n{len(results)} episodes, {summary['meta']['total_steps']:,} steps in {elapsed:.1f} s; "
          f"wrote {out}/episodes.csv, summary.json, table.txt"
          + (f" and {len(summary['videos'])} videos in {out}/videos" if summary["videos"] else ""))
    summary["out_dir"] = str(out)
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        evaluate(args)
    except EvaluationInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except EvaluationWorkerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
