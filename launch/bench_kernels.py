"""Benchmark of the fast-weight ops: ``python -m launch.bench_kernels [options]``.

For the delta rule (DeltaNet; Schlag et al., ICML 2021), the SRWM (Irie et al.,
ICML 2022), the gated delta rule (``--ops gated``; Yang et al., ICLR 2025) and the
recurrent ops of RDN and the Delta RNN (``--ops rec_delta delta_rnn``; Irie et al.,
NeurIPS 2021) it times, per shape, the forward and the forward + backward over a whole
unroll (inputs requiring grad, as in the learner) of:

* ``loop``: how the original IDSIA learner ran, the reference op called with T = 1 from
  a Python loop, the state detached after every step;
* ``reference``: the whole-unroll PyTorch reference (``backend="reference"``, the
  ``reference.py`` of each op's folder in ``agents/kernels/``);
* ``torch``: the whole-unroll PyTorch ops with hand-written backward
  (``backend="torch"``, each op's ``torch_fused.py``, the CPU backend of ``auto``);
* ``triton``: the fused kernels (``backend="triton"``, one launch per unroll);
* ``fla``: flash-linear-attention's ``fused_recurrent_delta_rule`` (delta rule only,
  when installed), with the resets given as ``cu_seqlens`` boundaries (each batch row
  cut into episodes, all flattened into one varlen batch; the layout change is done
  outside the timed region, which favours fla); ``--fla-chunk`` adds
  ``chunk_delta_rule`` the same way.

Columns: median milliseconds, the forward + backward speed-up over ``loop``, and the
largest relative error of the output and of every gradient against the reference
(a sanity check; detach-free gradients, so ``loop`` differs by design and shows
``-``). Targets (docs/design.md#kernels): SRWM forward + backward at
least 20x faster than ``loop`` at B = 32, T = 50, d = 16; the Triton delta rule at
least as fast as fla on the same shapes with resets. A summary line reports both.

Examples::

    python -m launch.bench_kernels                       # full GPU sweep (~5 min on an H200)
    python -m launch.bench_kernels --quick               # one shape per op
    python -m launch.bench_kernels --ops srwm --T 50 --B 32 --head-sizes 16 --densities 0.01
    python -m launch.bench_kernels --device cpu          # CPU: loop vs reference vs torch
    python -m launch.bench_kernels --device cpu --interpret --quick   # + Triton interpreter smoke run
    python -m launch.bench_kernels --compile-only        # no GPU needed: registers/spills for sm_90
    python -m launch.bench_kernels --compile-only --dump-dir /tmp/ptx   # + TTGIR/PTX/SASS of each variant

Without a GPU and without ``--device cpu`` / ``--compile-only`` it says so and exits 0.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, List

import torch

from launch.bench_kernels_ops import OPS, impl


# ----------------------------------------------------------------------------- command line


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m launch.bench_kernels",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--device", choices=("cuda", "cpu"), default=None,
                   help="where to run (default: cuda when present, else explain and exit 0)")
    p.add_argument("--ops", nargs="+", choices=tuple(OPS), default=None,
                   help="ops to time: delta, srwm, gated (delta rule with a per-step decay alpha), "
                        "linear (linear attention), rec_delta, delta_rnn (the recurrent ops of RDN and "
                        "the Delta RNN); default delta srwm gated, and every op with --compile-only")
    p.add_argument("--T", nargs="+", type=int, default=None, help="unroll lengths (GPU default: 50 80)")
    p.add_argument("--B", nargs="+", type=int, default=None, help="batch sizes (GPU default: 32 128 256)")
    p.add_argument("--H", type=int, default=8, help="heads (default 8)")
    p.add_argument("--head-sizes", nargs="+", type=int, default=None, help="head sizes (GPU default: 16 32 64)")
    p.add_argument("--densities", nargs="+", type=float, default=None,
                   help="reset probability per (step, row) (GPU default: 0 0.01 0.1)")
    p.add_argument("--impls", nargs="+", default=None,
                   choices=("loop", "reference", "torch", "triton", "fla", "fla-chunk"),
                   help="implementations to time (default: all that apply)")
    p.add_argument("--fla-chunk", action="store_true", help="also time fla's chunk_delta_rule")
    p.add_argument("--quick", action="store_true", help="one shape per op (T=50, B=32, d=16, 1%% resets)")
    p.add_argument("--act", action="store_true",
                   help="also time the acting step (T = 1, no autograd) for each batch size")
    p.add_argument("--budget-s", type=float, default=0.25,
                   help="target seconds of repeats per measurement (repeats between 2 and 20)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (CPU runs)")
    p.add_argument("--interpret", action="store_true",
                   help="CPU only: also run the Triton kernels under TRITON_INTERPRET=1 (slow; smoke test)")
    p.add_argument("--compile-only", action="store_true",
                   help="compile the Triton kernels for --arch without a GPU and print registers/spills")
    p.add_argument("--arch", type=int, default=90, help="CUDA compute capability for --compile-only (90 = H100/H200)")
    p.add_argument("--dump-dir", default=None,
                   help="with --compile-only: write each variant's TTGIR, PTX and SASS to this folder "
                        "(<label>.ttgir/.ptx/.sass, plus resources.csv), e.g. to diff two versions")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.ops is None:
        args.ops = list(OPS) if args.compile_only else ["delta", "srwm", "gated"]
    if args.dump_dir and not args.compile_only:
        p.error("--dump-dir needs --compile-only")
    gpu = args.device != "cpu"
    if args.quick:
        args.T, args.B = args.T or [50], args.B or [32]
        args.head_sizes, args.densities = args.head_sizes or [16], args.densities or [0.01]
    args.T = args.T or ([50, 80] if gpu else [50])
    args.B = args.B or ([32, 128, 256] if gpu else [8, 32])
    args.head_sizes = args.head_sizes or ([16, 32, 64] if gpu else [16])
    args.densities = args.densities or ([0.0, 0.01, 0.1] if gpu else [0.0, 0.01])
    for name in ("T", "B", "head_sizes"):
        bad = [v for v in getattr(args, name) if v < 1]
        if bad:
            p.error(f"--{name.replace('_', '-')} values must be >= 1, got {bad}")
    if any(not 0.0 <= d <= 1.0 for d in args.densities):
        p.error(f"--densities must lie in [0, 1], got {args.densities}")
    if args.interpret and args.device != "cpu":
        p.error("--interpret needs --device cpu")
    return args


# ----------------------------------------------------------------------------- timing


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], None], device: str, budget_s: float) -> float:
    """Median wall time of fn in ms (CUDA events on the GPU), after one warm-up call."""
    fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    reps = int(min(20, max(2, budget_s / max(first, 1e-6))))
    times = []
    for _ in range(reps):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def _grads(out, leaves, g):
    grads = torch.autograd.grad(out, leaves, g, allow_unused=True)
    return [torch.zeros_like(x) if d is None else d for d, x in zip(grads, leaves)]


def max_rel_error(run, prepared, leaves, reset, ref_out, ref_grads, g, fla: bool) -> float:
    """Largest relative error of the output and of every gradient against the reference."""
    out, _ = run(prepared) if fla else run(prepared, reset)
    errs = [((out.float() - ref_out).abs().max() / ref_out.abs().max().clamp_min(1e-12)).item()]
    if fla:       # gradients in fla's layout: map q, k, v, beta back to [T, B, ...]
        T, B = prepared["T"], prepared["B"]
        fl = [prepared[n] for n in ("q", "k", "v", "beta")]
        gs = _grads(out, fl, g)
        gs = [x.reshape(B, T, *x.shape[2:]).transpose(0, 1) for x in gs]
        ref_grads = ref_grads[:4]
    else:
        gs = _grads(out, leaves, g)
    for a, b in zip(gs, ref_grads):
        errs.append(((a.float() - b).abs().max() / b.abs().max().clamp_min(1e-12)).item())
    return max(errs)


def bench_shape(op, T, B, H, D, density, impls, args, device) -> List[dict]:
    inputs, reset = OPS[op](T, B, H, D, density, device, args.seed)
    leaves = list(inputs.values())
    ref = impl(op, "reference")
    ref_out, _ = ref(inputs, reset)
    g = torch.randn(ref_out.shape, generator=torch.Generator().manual_seed(1)).to(device)
    ref_grads = _grads(ref_out, leaves, g)
    ref_out = ref_out.detach()
    rows = []
    for name in impls:
        run = impl(op, name)
        if run is None:
            continue
        fla = name.startswith("fla")
        row = dict(op=op, T=T, B=B, H=H, D=D, density=density, impl=name)
        try:
            prepared = run.prepare(inputs, reset) if fla else inputs
            fl_leaves = [prepared[n] for n in ("q", "k", "v", "beta", "h0")] if fla else leaves

            def fwd():
                run(prepared) if fla else run(prepared, reset)

            def fwd_bwd():
                out, _ = run(prepared) if fla else run(prepared, reset)
                torch.autograd.grad(out, fl_leaves, g, allow_unused=True)

            row["fwd_ms"] = time_ms(fwd, device, args.budget_s)
            row["fwd_bwd_ms"] = time_ms(fwd_bwd, device, args.budget_s)
            row["max_rel_err"] = (float("nan") if name == "loop" else
                                  max_rel_error(run, prepared, leaves, reset, ref_out, ref_grads, g, fla))
        except torch.cuda.OutOfMemoryError:
            row["note"] = "out of memory"
            torch.cuda.empty_cache()
        except Exception as e:                  # an unavailable path (e.g. fla without backward)
            row["note"] = f"{type(e).__name__}: {str(e).splitlines()[0][:60] if str(e) else ''}"
        rows.append(row)
    loop = next((r for r in rows if r["impl"] == "loop" and "fwd_bwd_ms" in r), None)
    for r in rows:
        if loop and "fwd_bwd_ms" in r:
            r["x_loop"] = loop["fwd_bwd_ms"] / r["fwd_bwd_ms"]
    return rows


def bench_acting(op, B, H, D, impls, args, device) -> List[dict]:
    """The acting step: T = 1, no autograd."""
    inputs, reset = OPS[op](1, B, H, D, 0.01, device, args.seed)
    inputs = {n: t.detach() for n, t in inputs.items()}
    rows = []
    for name in impls:
        if name in ("loop",) or name.startswith("fla"):
            continue
        run = impl(op, name)
        if run is None:
            continue
        with torch.no_grad():
            ms = time_ms(lambda: run(inputs, reset), device, args.budget_s)
        rows.append(dict(op=op, T=1, B=B, H=H, D=D, density=0.01, impl=name + " (act)", fwd_ms=ms))
    return rows


# ----------------------------------------------------------------------------- output


COLUMNS = ("op", "T", "B", "H", "D", "density", "impl", "fwd_ms", "fwd_bwd_ms", "x_loop", "max_rel_err", "note")
WIDTHS = dict(op=5, T=4, B=4, H=3, D=3, density=7, impl=16, fwd_ms=9, fwd_bwd_ms=10, x_loop=7, max_rel_err=11, note=0)


def _fmt(key, v) -> str:
    if v is None or v == "":
        return "-"
    if key == "density":
        return f"{100 * v:g}%"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if key == "max_rel_err":
            return f"{v:.1e}"
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return str(v)


def print_header() -> None:
    print("  ".join(c.ljust(WIDTHS[c]) for c in COLUMNS), flush=True)


def print_row(r: dict) -> None:
    print("  ".join(_fmt(c, r.get(c)).ljust(WIDTHS[c]) for c in COLUMNS).rstrip(), flush=True)


def print_summary(rows: List[dict]) -> None:
    def find(**kw):
        return [r for r in rows if all(r.get(k) == v for k, v in kw.items()) and "fwd_bwd_ms" in r]
    lines = []
    srwm = [r for r in find(op="srwm", T=50, B=32, D=16, impl="triton") if "x_loop" in r]
    for r in srwm:
        ok = "met" if r["x_loop"] >= 20 else "NOT met"
        lines.append(f"SRWM fwd+bwd vs per-step loop at B=32 T=50 d=16, {_fmt('density', r['density'])} resets: "
                     f"{r['x_loop']:.1f}x (target >= 20x: {ok})")
    for r in find(op="delta", impl="triton"):
        fla = find(op="delta", impl="fla", T=r["T"], B=r["B"], D=r["D"], density=r["density"])
        if fla and r["density"] > 0:
            ratio = fla[0]["fwd_bwd_ms"] / r["fwd_bwd_ms"]
            lines.append(f"DeltaNet triton vs fla fused_recurrent (fwd+bwd) at T={r['T']} B={r['B']} d={r['D']} "
                         f"{_fmt('density', r['density'])} resets: {ratio:.2f}x ({'met' if ratio >= 1 else 'NOT met'})")
    if lines:
        print("\nTargets:")
        print("\n".join("  " + s for s in lines))


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.compile_only:
        if os.environ.get("TRITON_INTERPRET") == "1":
            print("--compile-only needs TRITON_INTERPRET unset")
            return 2
        from launch.bench_kernels_compile import compile_only
        compile_only(args)
        return 0
    if args.device is None:
        if not torch.cuda.is_available():
            print("No CUDA device: the Triton kernels are benchmarked on a GPU. Use --device cpu for the "
                  "PyTorch paths (add --interpret for a Triton interpreter smoke run), or --compile-only "
                  "to check the kernels' registers and spills without a GPU.")
            return 0
        args.device = "cuda"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda given but torch sees no CUDA device")
        return 2
    if args.interpret and os.environ.get("TRITON_INTERPRET") != "1":
        # triton.jit picks the interpreter when the kernel module is imported: re-run with it set
        env = dict(os.environ, TRITON_INTERPRET="1")
        return subprocess.call([sys.executable, "-m", "launch.bench_kernels", *(argv or sys.argv[1:])], env=env)
    if args.threads:
        torch.set_num_threads(args.threads)

    impls = args.impls or ["loop", "reference", "torch", "triton", "fla"] + (["fla-chunk"] if args.fla_chunk else [])
    if args.device == "cpu":
        dropped = [i for i in impls if i.startswith("fla") or (i == "triton" and not args.interpret)]
        impls = [i for i in impls if i not in dropped]
        if dropped:
            print(f"(CPU run: skipping {', '.join(dropped)})")
    if args.device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    rows: List[dict] = []
    t_start = time.perf_counter()
    print_header()
    for op in args.ops:
        for T in args.T:
            for B in args.B:
                for D in args.head_sizes:
                    for density in args.densities:
                        for r in bench_shape(op, T, B, args.H, D, density, impls, args, args.device):
                            print_row(r)
                            rows.append(r)
        if args.act:
            for B in args.B:
                for D in args.head_sizes:
                    for r in bench_acting(op, B, args.H, D, impls, args, args.device):
                        print_row(r)
                        rows.append(r)
    print(f"\n{len(rows)} measurements in {time.perf_counter() - t_start:.0f}s "
          "(median ms; x_loop = fwd+bwd speed-up over the per-step loop).")
    print_summary(rows)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({c: r.get(c, "") for c in COLUMNS})
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
