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
good one instead of a silent start from scratch; the trainer (which holds the run
directory's lock, :mod:`learner.run_lock`) renames such files aside as
``ckpt-<updates>.pt.corrupt`` so that they can never be mistaken for the newest one.

Rotation (``keep``) counts only loadable checkpoints: a file that fails to load is
renamed aside (with a warning), never counted, and the newest loadable file is never
deleted. Whether a file loads is checked once per process (files this process wrote
count as loadable).
"""

from __future__ import annotations

import dataclasses
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


# files known to load: (name, size, mtime_ns) of what this process wrote or loaded
_KNOWN_GOOD: set = set()


def _file_key(path: Path):
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _remember_good(path: Path) -> None:
    try:
        _KNOWN_GOOD.add(_file_key(path))
    except OSError:
        pass


def is_loadable(path: Path) -> bool:
    """True when ``path`` loads as a checkpoint (cached per process)."""
    try:
        if _file_key(path) in _KNOWN_GOOD:
            return True
    except OSError:
        return False
    try:
        load_checkpoint_file(path)
    except CheckpointError:
        return False
    return True


def set_aside(path: Path, reason: str) -> Optional[Path]:
    """Rename a checkpoint that does not load to ``<name>.corrupt`` (never overwriting)."""
    target = path.with_name(path.name + ".corrupt")
    i = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt.{i}")
        i += 1
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    log.warning("%s; renamed it to %s", reason, target.name)
    return target


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
    _remember_good(final)
    if keep > 0:
        rotate_checkpoints(run_dir, keep)
    return final


def rotate_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Keep the newest ``keep`` loadable checkpoints; rename unloadable ones aside.

    Walks from the newest file back: a file that does not load is renamed to
    ``*.corrupt`` and not counted, so a torn file never takes a slot and the newest
    loadable checkpoint always survives.
    """
    good = 0
    for path in reversed(list_checkpoints(run_dir)):
        if good >= keep:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        if is_loadable(path):
            good += 1
        else:
            set_aside(path, f"checkpoint {path} does not load")


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
        reason = _load_error_reason(e)
        if "Unsupported global" in reason or "GLOBAL" in reason:
            raise CheckpointError(f"checkpoint {path} holds more than tensors and plain data "
                                  f"(refused by the safe loader: {reason[:200]})") from None
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({reason[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} file")
    return payload


def _load_error_reason(e: Exception) -> str:
    """The cause of a failed safe load in a few words, without PyTorch's advice to retry
    with ``weights_only=False`` (that would run whatever the file carries)."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text:
        rest = [l.strip() for l in text.split(marker, 1)[1].splitlines() if l.strip()]
        reason = rest[0] if rest else "not a tensors-and-plain-data file"
    else:
        lines = [l.strip() for l in text.splitlines() if l.strip()]
        reason = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
    if "weights_only" in reason:
        reason = "refused by the safe loader"
    return reason


def load_latest(run_dir: str | Path, map_location="cpu", *,
                set_aside_bad: bool = False) -> Tuple[Optional[dict], Optional[Path]]:
    """Newest loadable checkpoint of a run, falling back past torn files with a warning.

    Returns (None, None) when the run has no checkpoint file at all; raises
    CheckpointError when files exist but none loads. With ``set_aside_bad`` (the
    trainer, holding the run's lock) the files newer than the one loaded, which do not
    load, are renamed to ``*.corrupt``; readers (evaluation) leave the folder as it is.
    """
    files = list_checkpoints(run_dir)
    d = checkpoint_dir(run_dir)
    if d.is_dir():
        for stray in d.glob(".ckpt-*.tmp"):
            log.warning("ignoring stray temporary checkpoint file %s (an interrupted write)", stray)
    errors, bad = [], []
    for path in reversed(files):
        try:
            payload = load_checkpoint_file(path, map_location)
        except CheckpointError as e:
            log.warning("%s; falling back to the previous checkpoint", e)
            errors.append(str(e))
            bad.append(path)
            continue
        _remember_good(path)
        if errors:
            log.warning("using %s after skipping %d bad checkpoint(s)", path.name, len(errors))
            if set_aside_bad:
                for b in bad:
                    set_aside(b, f"checkpoint {b.name} does not load")
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
    """Raise CheckpointError naming the first field where two architectures differ (one saved
    while the LSTM had its own width option is read in today's terms: :func:`upgrade_model_dict`)."""
    saved = _lstm_width_as_hidden_size(saved)
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            raise CheckpointError(f"checkpoint architecture differs in {key!r}: "
                                  f"checkpoint has {saved.get(key)!r}, this run has {current.get(key)!r}")


# -- the config sections a checkpoint saves (plain data -> dataclasses) ------------------

def section_from_dict(cls, data):
    """A config dataclass from a saved section, ignoring fields this version does not know."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TypeError(f"the {cls.__name__} section is a {type(data).__name__}, not a mapping")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def upgrade_model_dict(data) -> dict:
    """A saved ``model`` section in today's terms: the one place where old configs are upgraded.

    * Saved before the ``srwm_*`` options existed: it describes the IDSIA RL SRWM layer, so
      it gets those options' IDSIA RL values, not today's defaults.
    * Saved before ``encoder_init`` existed: initialised with PyTorch's defaults (``torch``).
    * Saved before ``lstm_input_norm`` existed: the LSTM was fed its input directly (``none``).
    * Saved while the LSTM had its own width option ``lstm_hidden_size`` (every core now
      takes ``hidden_size``): for the lstm core it becomes ``hidden_size``; the other cores
      ignored it. A checkpoint's architecture, which lists the same fields, is read the
      same way by :func:`check_architecture`.
    """
    model = dict(data or {})
    if not model:
        return model
    if "srwm_input_norm" not in model:
        from agents.cores.srwm import SRWM_PAPER_OPTIONS
        model = {**SRWM_PAPER_OPTIONS, **model}
    if "encoder_init" not in model:
        model["encoder_init"] = "torch"
    from agents.cores.lstm import LSTM_LEGACY_OPTIONS
    model = {**LSTM_LEGACY_OPTIONS, **model}
    return _lstm_width_as_hidden_size(model)


def _lstm_width_as_hidden_size(data: dict) -> dict:
    """``lstm_hidden_size`` (saved before every core took ``hidden_size``) as the lstm core's
    ``hidden_size``; dropped for the other cores, which did not use it."""
    if "lstm_hidden_size" not in data:
        return data
    data = dict(data)
    units = data.pop("lstm_hidden_size")
    if data.get("core") == "lstm":
        data["hidden_size"] = units
    return data


def model_config_from_dict(data):
    """The ``model`` section as an :class:`agents.model.ModelConfig` (an old section upgraded
    first: :func:`upgrade_model_dict`)."""
    from agents.model import ModelConfig
    return section_from_dict(ModelConfig, upgrade_model_dict(data))
