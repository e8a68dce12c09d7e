"""The learner's device: check a ``--device`` name and resolve ``auto``.

Used by the training loop (:mod:`launch.trainer`), evaluation and the benchmarks; it
lives here, low in the layering, so that none of them imports the trainer for it.
"""

from __future__ import annotations

import torch


def check_device(dev: str) -> None:
    """Raise ValueError unless ``dev`` is auto, cpu, cuda or cuda:N and usable here."""
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {dev!r}")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {dev}: CUDA is not available on this machine")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; any other name as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
