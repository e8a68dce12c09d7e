"""Checkpoints: atomic writes, safe loads, fall-back to the last good file.

A checkpoint is a dict of tensors and plain data only (loaded with
``torch.load(..., weights_only=True)``, so a file carrying a pickle payload is refused
without running it)::

    {"format": FORMAT, "config": {...plain...}, "architecture": {...plain...},
     "learner": Learner.state_dict(), "run": {...counters, stats...}}

Files live in ``<run_dir>/checkpoints/ckpt-<updates:09d>.pt``. A write goes to a
temporary file in the same folder, is fsynced, then renamed over the final name,
so a crash leaves either the old or the new file, never a torn one under a final
name. Loading walks from the newest file back and skips (with a warning) any file
that does not load, so a truncated latest checkpoint falls back to the previous
good one instead of a silent start from scratch.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

import torch

log = logging.getLogger(__name__)

FORMAT = "fwrl-checkpoint-v1"
_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, unsafe or of another architecture."""


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> List[Path]:
    """Final checkpoint files of a run, oldest first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    files = [p for p in d.iterdir() if _NAME.match(p.name)]
    return sorted(files, key=lambda p: int(_NAME.match(p.name).group(1)))


def save_checkpoint(run_dir: str | Path, payload: dict, updates: int, *, keep: int = 3) -> Path:
    """Write atomically; keep the newest ``keep`` files (0 = keep all)."""
    d = checkpoint_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    final = d / f"ckpt-{updates:09d}.pt"
    payload = dict(payload, format=FORMAT)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            try:
                old.unlink()
            except FileNotFoundError:
                pass
    return final


def load_checkpoint_file(path: str | Path, map_location="cpu") -> dict:
    """Load one file safely; raise CheckpointError with a one-line reason."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError(f"checkpoint {path} holds more than tensors and plain data "
                                  f"(refused by the safe loader: {first[:200]})") from None
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({type(e).__name__}: {first[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} file")
    return payload


def load_latest(run_dir: str | Path, map_location="cpu") -> Tuple[Optional[dict], Optional[Path]]:
    """Newest loadable checkpoint of a run, falling back past torn files with a warning.

    Returns (None, None) when the run has no checkpoint file at all; raises
    CheckpointError when files exist but none loads.
    """
    files = list_checkpoints(run_dir)
    d = checkpoint_dir(run_dir)
    if d.is_dir():
        for stray in d.glob(".ckpt-*.tmp"):
            log.warning("ignoring stray temporary checkpoint file %s (an interrupted write)", stray)
    errors = []
    for path in reversed(files):
        try:
            payload = load_checkpoint_file(path, map_location)
        except CheckpointError as e:
            log.warning("%s; falling back to the previous checkpoint", e)
            errors.append(str(e))
            continue
        if errors:
            log.warning("resuming from %s after skipping %d bad checkpoint(s)", path.name, len(errors))
        return payload, path
    if files:
        raise CheckpointError(f"no loadable checkpoint in {d}: " + "; ".join(errors))
    return None, None


def resolve_checkpoint(path_or_run: str | Path, map_location="cpu") -> Tuple[dict, Path]:
    """A checkpoint file, or the newest good checkpoint of a run directory."""
    p = Path(path_or_run)
    if p.is_dir():
        payload, file = load_latest(p, map_location)
        if payload is None:
            raise CheckpointError(f"run directory {p} has no checkpoint")
        return payload, file
    return load_checkpoint_file(p, map_location), p


def check_architecture(saved: dict, current: dict) -> None:
    """Raise CheckpointError naming the first field where two architectures differ."""
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            raise CheckpointError(f"checkpoint architecture differs in {key!r}: "
                                  f"checkpoint has {saved.get(key)!r}, this run has {current.get(key)!r}")
