"""``launch.bench_kernels`` without a GPU: its options, and that ``--compile-only``
(registers, spills, ``--dump-dir`` PTX) covers every Triton kernel of ``agents/kernels``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _triton_kernels() -> set:
    """Names of the ``@triton.jit`` functions named ``*_kernel`` under agents/kernels (by reading the source)."""
    names = set()
    for path in (ROOT / "agents" / "kernels").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_kernel") and any(
                    ast.unparse(d).startswith("triton.jit") for d in node.decorator_list):
                names.add(node.name)
    return names


def test_compile_only_covers_every_triton_kernel():
    pytest.importorskip("triton")
    from launch.bench_kernels import parse_args
    from launch.bench_kernels_compile import kernel_specs
    args = parse_args(["--compile-only"])
    assert set(args.ops) == {"delta", "srwm", "gated", "linear", "rec_delta", "delta_rnn"}
    covered = {spec.fn.__name__ for spec in kernel_specs(args.ops, 16)}
    kernels = _triton_kernels()
    assert len(kernels) >= 7 and kernels <= covered, f"not compiled by --compile-only: {kernels - covered}"


def test_options():
    from launch.bench_kernels import parse_args
    assert parse_args([]).ops == ["delta", "srwm", "gated"]
    assert parse_args(["--compile-only", "--dump-dir", "/tmp/x"]).dump_dir == "/tmp/x"
    with pytest.raises(SystemExit):
        parse_args(["--dump-dir", "/tmp/x"])             # only with --compile-only
