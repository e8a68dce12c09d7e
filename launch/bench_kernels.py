"""Benchmark of the fast-weight ops: ``python -m launch.bench_kernels [options]``.

For the delta rule (DeltaNet; Schlag et al., ICML 2021), the SRWM (Irie et al.,
ICML 2022), the gated delta rule (``--ops gated``; Yang et al., ICLR 2025) and the
recurrent ops of RDN and the Delta RNN (``--ops rec_delta delta_rnn``; Irie et al.,
NeurIPS 2021) it times, per shape, the forward and the forward + backward over a whole
unroll (inputs requiring grad, as in the learner) of:

* ``loop``: how the original IDSIA learner ran, the reference op called with T = 1 from
  a Python loop, the state detached after every step;
* ``reference``: the whole-unroll PyTorch reference (:mod:`agents.kernels.reference`);
* ``torch``: the whole-unroll PyTorch ops with hand-written backward
  (:mod:`agents.kernels.torch_fused`, the CPU backend of ``auto``) when present;
* ``triton``: the fused kernels of this package (one launch per unroll);
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

Without a GPU and without ``--device cpu`` / ``--compile-only`` it says so and exits 0.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, List, Optional

import torch

SRWM_KEYS = ("y", "q", "k", "b")


# ----------------------------------------------------------------------------- command line


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m launch.bench_kernels",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--device", choices=("cuda", "cpu"), default=None,
                   help="where to run (default: cuda when present, else explain and exit 0)")
    p.add_argument("--ops", nargs="+", choices=tuple(OPS), default=["delta", "srwm", "gated"],
                   help="ops to time: delta, srwm, gated (delta rule with a per-step decay alpha), "
                        "rec_delta, delta_rnn (the recurrent ops of RDN and the Delta RNN)")
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
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
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


# ----------------------------------------------------------------------------- inputs


def make_resets(T: int, B: int, density: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(T, B, generator=gen) < density                              # bool [T, B]


def make_delta_inputs(T, B, H, D, density, device, seed):
    gen = torch.Generator().manual_seed(seed)
    tensors = {
        "q": torch.softmax(torch.randn(T, B, H, D, generator=gen), -1),           # [T, B, H, D]
        "k": torch.softmax(torch.randn(T, B, H, D, generator=gen), -1),           # [T, B, H, D]
        "v": torch.randn(T, B, H, D, generator=gen),                              # [T, B, H, D]
        "beta": torch.sigmoid(torch.randn(T, B, H, generator=gen)),               # [T, B, H]
        "state": 0.1 * torch.randn(B, H, D, D, generator=gen),                    # [B, H, D, D]
    }
    reset = make_resets(T, B, density, gen).to(device)
    return {n: t.to(device).requires_grad_(True) for n, t in tensors.items()}, reset


def make_srwm_inputs(T, B, H, D, density, device, seed):
    gen = torch.Generator().manual_seed(seed)
    rows = {"y": D, "q": D, "k": D, "b": 4}
    tensors = {"x": torch.softmax(torch.randn(T, B, H, D, generator=gen), -1)}    # [T, B, H, D]
    for n in SRWM_KEYS:
        tensors[f"W_{n}"] = torch.randn(H, rows[n], D, generator=gen) / math.sqrt(D)   # [H, rows, D]
    for n in SRWM_KEYS:
        tensors[f"delta_{n}"] = 0.01 * torch.randn(B, H, rows[n], D, generator=gen)   # [B, H, rows, D]
    reset = make_resets(T, B, density, gen).to(device)
    return {n: t.to(device).requires_grad_(True) for n, t in tensors.items()}, reset


# ----------------------------------------------------------------------------- implementations
# Each returns (out [T, B, H, Dv], final state dict) for a dict of inputs.


def _delta_args(a):
    return a["q"], a["k"], a["v"], a["beta"], a["state"]


def _srwm_args(a):
    return a["x"], {n: a[f"W_{n}"] for n in SRWM_KEYS}, {n: a[f"delta_{n}"] for n in SRWM_KEYS}


def delta_impl(name: str) -> Optional[Callable]:
    from agents.kernels import reference
    if name == "loop":
        def run(a, reset):
            q, k, v, beta, S = _delta_args(a)
            outs = []
            for t in range(q.shape[0]):
                o, S = reference.delta_rule_reference(q[t:t + 1], k[t:t + 1], v[t:t + 1], beta[t:t + 1],
                                                      S, reset[t:t + 1])
                outs.append(o)
                S = S.detach()
            return torch.cat(outs), {"S": S}
        return run
    if name == "reference":
        return lambda a, reset: _wrap_delta(reference.delta_rule_reference(*_delta_args(a), reset))
    if name == "torch":
        try:
            from agents.kernels.torch_fused import delta_rule_torch
        except ImportError:
            return None
        return lambda a, reset: _wrap_delta(delta_rule_torch(*_delta_args(a), reset))
    if name == "triton":
        from agents.kernels.triton_delta import delta_rule_triton
        return lambda a, reset: _wrap_delta(delta_rule_triton(*_delta_args(a), reset))
    if name in ("fla", "fla-chunk"):
        return fla_impl(chunk=name == "fla-chunk")
    raise ValueError(f"unknown implementation {name!r}")


def _wrap_delta(res):
    return res[0], {"S": res[1]}


def srwm_impl(name: str) -> Optional[Callable]:
    from agents.kernels import reference
    if name == "loop":
        def run(a, reset):
            x, W, dW = _srwm_args(a)
            ys = []
            for t in range(x.shape[0]):
                y, dW = reference.srwm_reference(x[t:t + 1], W, dW, reset[t:t + 1])
                ys.append(y)
                dW = {n: m.detach() for n, m in dW.items()}
            return torch.cat(ys), dW
        return run
    if name == "reference":
        return lambda a, reset: reference.srwm_reference(*_srwm_args(a), reset)
    if name == "torch":
        try:
            from agents.kernels.torch_fused import srwm_torch
        except ImportError:
            return None
        return lambda a, reset: srwm_torch(*_srwm_args(a), reset)
    if name == "triton":
        from agents.kernels.triton_srwm import srwm_triton
        return lambda a, reset: srwm_triton(*_srwm_args(a), reset)
    return None                                      # fla has no SRWM


def make_gated_inputs(T, B, H, D, density, device, seed):
    inputs, reset = make_delta_inputs(T, B, H, D, density, device, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    alpha = torch.sigmoid(3 + torch.randn(T, B, H, generator=gen))                # [T, B, H], near 1
    inputs["alpha"] = alpha.to(device).requires_grad_(True)
    return inputs, reset


def make_rec_delta_inputs(T, B, H, D, density, device, seed):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)   # noqa: E731
    tensors = {"q": r(T, B, H, D), "k": r(T, B, H, D), "v": r(T, B, H, D), "beta": r(T, B, H),
               "R_q": r(H, D, D) / math.sqrt(D), "R_k": r(H, D, D) / math.sqrt(D),
               "R_v": r(H, D, D) / math.sqrt(D), "r_b": r(H, D) / math.sqrt(D),
               "S": 0.1 * r(B, H, D, D), "y": 0.1 * r(B, H, D)}
    reset = make_resets(T, B, density, gen).to(device)
    return {n: t.to(device).requires_grad_(True) for n, t in tensors.items()}, reset


def make_delta_rnn_inputs(T, B, H, D, density, device, seed):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)   # noqa: E731
    tensors = {"z": r(T, B, H, D), "k": torch.softmax(r(T, B, H, D), -1), "v": r(T, B, H, D),
               "beta": torch.sigmoid(r(T, B, H)), "R": 0.1 * r(B, H, D, D), "y": 0.1 * r(B, H, D)}
    reset = make_resets(T, B, density, gen).to(device)
    return {n: t.to(device).requires_grad_(True) for n, t in tensors.items()}, reset


def _loop(step, state_names):
    """The per-step loop of the original learner for a whole-unroll op ``step(a_t, state, reset_t)``."""
    def run(a, reset):
        state = {n: a[n] for n in state_names}
        outs = []
        for t in range(reset.shape[0]):
            a_t = {n: (x[t:t + 1] if x.dim() >= 3 and x.shape[:2] == reset.shape else x) for n, x in a.items()}
            o, state = step(a_t, state, reset[t:t + 1])
            outs.append(o)
            state = {n: x.detach() for n, x in state.items()}
        return torch.cat(outs), state
    return run


def gated_impl(name: str) -> Optional[Callable]:
    from agents.kernels import reference

    def args(a):
        return (a["q"], a["k"], a["v"], a["beta"], a["state"])

    if name == "loop":
        def step(a, st, r):
            o, S = reference.delta_rule_reference(a["q"], a["k"], a["v"], a["beta"], st["state"], r, alpha=a["alpha"])
            return o, {"state": S}
        return _loop(step, ["state"])
    if name == "reference":
        return lambda a, reset: _wrap_delta(reference.delta_rule_reference(*args(a), reset, alpha=a["alpha"]))
    if name == "torch":
        from agents.kernels.torch_fused import delta_rule_torch
        return lambda a, reset: _wrap_delta(delta_rule_torch(*args(a), reset, alpha=a["alpha"]))
    if name == "triton":
        from agents.kernels.triton_delta import delta_rule_triton
        return lambda a, reset: _wrap_delta(delta_rule_triton(*args(a), reset, alpha=a["alpha"]))
    return None                                      # fla's gated rule is not wired up here


def rec_delta_impl(name: str) -> Optional[Callable]:
    from agents.kernels import reference, torch_fused
    fn = {"loop": reference.rec_delta_reference, "reference": reference.rec_delta_reference,
          "torch": torch_fused.rec_delta_torch}.get(name)
    if name == "triton":
        from agents.kernels.triton_rec_delta import rec_delta_triton
        fn = rec_delta_triton
    if fn is None:
        return None                                  # fla has no RDN

    def step(a, state, reset):
        R = {"q": a["R_q"], "k": a["R_k"], "v": a["R_v"], "b": a["r_b"]}
        return fn(a["q"], a["k"], a["v"], a["beta"], R, state, reset)

    if name == "loop":
        return _loop(step, ["S", "y"])
    return lambda a, reset: step(a, {"S": a["S"], "y": a["y"]}, reset)


def delta_rnn_impl(name: str) -> Optional[Callable]:
    from agents.kernels import reference, torch_fused
    fn = {"loop": reference.delta_rnn_reference, "reference": reference.delta_rnn_reference,
          "torch": torch_fused.delta_rnn_torch}.get(name)
    if name == "triton":
        from agents.kernels.triton_delta_rnn import delta_rnn_triton
        fn = delta_rnn_triton
    if fn is None:
        return None                                  # fla has no Delta RNN

    def step(a, state, reset):
        return fn(a["z"], a["k"], a["v"], a["beta"], state, reset)

    if name == "loop":
        return _loop(step, ["R", "y"])
    return lambda a, reset: step(a, {"R": a["R"], "y": a["y"]}, reset)


def fla_impl(chunk: bool) -> Optional[Callable]:
    """flash-linear-attention's delta rule with resets as varlen (cu_seqlens) boundaries."""
    try:
        if chunk:
            from fla.ops.delta_rule import chunk_delta_rule as fla_fn
        else:
            from fla.ops.delta_rule import fused_recurrent_delta_rule as fla_fn
    except Exception:
        return None
    params = inspect.signature(fla_fn).parameters

    def prepare(a, reset):
        """Flatten [T, B] into episodes: one varlen batch of B*T tokens (row-major by b)."""
        q, k, v, beta, S0 = (t.detach() for t in _delta_args(a))
        T, B, H, D = q.shape
        starts = reset.clone()
        starts[0] = True                                             # every row starts a sequence
        flat_starts = starts.t().reshape(-1).nonzero().flatten()     # token index b*T + t
        cu = torch.cat([flat_starts, flat_starts.new_tensor([B * T])]).long()     # [N + 1]
        N = flat_starts.numel()
        row_of = flat_starts // T
        first = (flat_starts % T) == 0
        h0 = torch.zeros(N, H, D, D, device=q.device, dtype=torch.float32)
        use_s0 = first & ~reset[0][row_of]
        h0[use_s0] = S0[row_of[use_s0]].float()
        last_seg = torch.searchsorted(flat_starts, torch.arange(B, device=q.device) * T + T - 1, right=True) - 1

        def bt(t):                                                   # [T, B, ...] -> [1, B*T, ...]
            return t.transpose(0, 1).reshape(1, B * T, *t.shape[2:]).contiguous().requires_grad_(True)

        return dict(q=bt(q), k=bt(k), v=bt(v), beta=bt(beta), h0=h0.requires_grad_(True), cu=cu,
                    T=T, B=B, last_seg=last_seg)

    def run(p):
        kw = dict(q=p["q"], k=p["k"], v=p["v"], beta=p["beta"], scale=1.0, initial_state=p["h0"],
                  output_final_state=True, cu_seqlens=p["cu"])
        if "head_first" in params:
            kw["head_first"] = False
        o, ht = fla_fn(**kw)
        T, B = p["T"], p["B"]
        out = o.reshape(B, T, *o.shape[2:]).transpose(0, 1)           # [T, B, H, D]
        return out, {"S": ht[p["last_seg"]]}

    run.prepare = prepare
    return run


#: op -> (input maker, implementation getter)
OPS = {
    "delta": (make_delta_inputs, delta_impl),
    "srwm": (make_srwm_inputs, srwm_impl),
    "gated": (make_gated_inputs, gated_impl),
    "rec_delta": (make_rec_delta_inputs, rec_delta_impl),
    "delta_rnn": (make_delta_rnn_inputs, delta_rnn_impl),
}


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
    make, get = OPS[op]
    inputs, reset = make(T, B, H, D, density, device, args.seed)
    leaves = list(inputs.values())
    ref = get("reference")
    ref_out, _ = ref(inputs, reset)
    g = torch.randn(ref_out.shape, generator=torch.Generator().manual_seed(1)).to(device)
    ref_grads = _grads(ref_out, leaves, g)
    ref_out = ref_out.detach()
    rows = []
    for name in impls:
        run = get(name)
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
    make, get = OPS[op]
    inputs, reset = make(1, B, H, D, 0.01, device, args.seed)
    inputs = {n: t.detach() for n, t in inputs.items()}
    rows = []
    for name in impls:
        if name in ("loop",) or name.startswith("fla"):
            continue
        run = get(name)
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


# ----------------------------------------------------------------------------- compile only


def compile_only(args) -> None:
    """Compile each kernel variant for sm_<arch> (no GPU needed) and report resources."""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget

    from agents.kernels import triton_delta as td
    from agents.kernels import triton_srwm as ts

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    target = GPUTarget("cuda", args.arch, 32)
    ints = {"T", "B", "H", "C", "NC"}

    def compile_one(fn, consts, num_warps) -> dict:
        sig = {a: "constexpr" if a in consts else "i32" if a in ints else "*u8" if a == "reset_ptr" else "*fp32"
               for a in fn.arg_names}
        t0 = time.perf_counter()
        k = triton.compile(triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=consts),
                           target=target, options={"num_warps": num_warps})
        res = {"seconds": time.perf_counter() - t0, "shared": k.metadata.shared, "regs": "?", "spill": "?"}
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(k.asm["cubin"])
            f.flush()
            usage = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True).stdout
        m = re.search(r"REG:(\d+).*?STACK:(\d+).*?LOCAL:(\d+)", usage)
        if m:
            res["regs"], res["spill"] = m.group(1), f"{m.group(2)}/{m.group(3)}"
        return res

    print(f"Compiling for sm_{args.arch} (registers per thread; stack/local bytes = spills)")
    print(f"{'kernel':<18} {'shape':<14} {'warps':>5} {'regs':>5} {'spill':>8} {'smem':>6} {'compile_s':>9}")
    acc = tl.float32
    for D in args.head_sizes:
        P = triton.next_power_of_2(D)
        if "delta" in args.ops:
            for backward in (False, True):
                BV = td._block_v(D, None, backward)
                fn = td._delta_bwd_kernel if backward else td._delta_fwd_kernel
                consts = dict(DK=D, DV=D, DKP=P, BV=BV, ACC=acc)
                consts.update(DETACH=False) if backward else consts.update(STORE_RES=True, HAS_ALPHA=False,
                                                                           STORE_CKPT=False)
                r = compile_one(fn, consts, td._num_warps(P, BV))
                print(f"{fn.__name__:<18} {f'd={D} BV={BV}':<14} {td._num_warps(P, BV):>5} {r['regs']:>5} "
                      f"{r['spill']:>8} {r['shared']:>6} {r['seconds']:>9.1f}", flush=True)
        if "gated" in args.ops:
            for backward in (False, True):
                BV = td._block_v(D, None, backward)
                fn = td._gated_delta_bwd_kernel if backward else td._delta_fwd_kernel
                consts = dict(DK=D, DV=D, DKP=P, BV=BV, ACC=acc)
                consts.update(DETACH=False) if backward else consts.update(STORE_RES=True, HAS_ALPHA=True,
                                                                           STORE_CKPT=True)
                r = compile_one(fn, consts, td._num_warps(P, BV))
                name = fn.__name__ if backward else "_delta_fwd (gated)"
                print(f"{name[:18]:<18} {f'd={D} BV={BV}':<14} {td._num_warps(P, BV):>5} {r['regs']:>5} "
                      f"{r['spill']:>8} {r['shared']:>6} {r['seconds']:>9.1f}", flush=True)
        if "delta_rnn" in args.ops or "rec_delta" in args.ops:
            from agents.kernels import triton_delta_rnn as tr
            from agents.kernels import triton_rec_delta as trd
            DP = max(P, 2)
            w = 1 if DP * DP <= 256 else 2 if DP * DP <= 1024 else 4
            pairs = []
            if "delta_rnn" in args.ops:
                pairs += [(tr._delta_rnn_fwd_kernel, dict(D=D, DP=DP, STORE=True, ACC=acc)),
                          (tr._delta_rnn_bwd_kernel, dict(D=D, DP=DP, DETACH=False, ACC=acc))]
            if "rec_delta" in args.ops:
                pairs += [(trd._rec_delta_fwd_kernel, dict(D=D, DP=DP, STORE=True, ACC=acc)),
                          (trd._rec_delta_bwd_kernel, dict(D=D, DP=DP, DETACH=False, ACC=acc))]
            for fn, consts in pairs:
                if fn.__name__.startswith("_rec_delta"):
                    w = trd._warps(DP, backward=fn.__name__.endswith("bwd_kernel"))
                r = compile_one(fn, consts, w)
                print(f"{fn.__name__[:18]:<18} {f'd={D}':<14} {w:>5} {r['regs']:>5} "
                      f"{r['spill']:>8} {r['shared']:>6} {r['seconds']:>9.1f}", flush=True)
        if "srwm" in args.ops:
            for DY in (D, 3 * D + 1):
                YP = max(triton.next_power_of_2(DY), 2)
                for backward in (False, True):
                    fn = ts._srwm_bwd_kernel if backward else ts._srwm_fwd_kernel
                    consts = dict(D=D, DY=DY, DP=max(P, 2), DYP=YP, ACC=acc)
                    consts.update(DETACH=False) if backward else consts.update(STORE_CKPT=True)
                    w = ts._num_warps(max(P, 2), YP, backward)
                    r = compile_one(fn, consts, w)
                    print(f"{fn.__name__:<18} {f'd={D} Dy={DY}':<14} {w:>5} {r['regs']:>5} "
                          f"{r['spill']:>8} {r['shared']:>6} {r['seconds']:>9.1f}", flush=True)


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.compile_only:
        if os.environ.get("TRITON_INTERPRET") == "1":
            print("--compile-only needs TRITON_INTERPRET unset")
            return 2
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
