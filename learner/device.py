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


def cpu_has_bfloat16_units() -> bool:
    """True when this CPU has bfloat16 matrix instructions (AVX512_BF16 or AMX tiles)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def bfloat16_cpu_warning(encoder_dtype: str, device_type: str) -> "str | None":
    """A warning for ``--encoder-dtype bfloat16`` on a CPU learner without bfloat16 units.

    Without them oneDNN emulates bfloat16 convolutions: measured on a 2-core AMD EPYC with
    AVX2 only, the IMPALA ResNet's forward and backward on 168 frames took 0.76 s in float32
    and 10.3 s under bfloat16 autocast (about 13x slower, one thread); with ``avx512_bf16`` the same setting
    was 1.3x faster end to end (docs/learning/README.md, section 3d).
    """
    if encoder_dtype != "bfloat16" or device_type != "cpu" or cpu_has_bfloat16_units():
        return None
    return ("--encoder-dtype bfloat16 on a CPU without bfloat16 units (no avx512_bf16 or AMX): "
            "the encoder runs over 10x slower than in float32; use --encoder-dtype float32")
