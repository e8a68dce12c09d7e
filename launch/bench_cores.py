"""Time the memory cores and count the agents' parameters.

For each core given by ``--cores``: the median time (ms) of a forward pass (no grad,
as in evaluation) and of forward + backward (as in learning) over one
learner batch: B = 32 unrolls of T = 50 steps of input size 257 (256 IMPALA
features + the clipped reward), with the SRWM paper's core sizes (``--sizes procgen``,
Irie et al., ICML 2022: 2 layers, hidden 128 = 8 heads of 16, d_ff 512; LSTM 256
units) or the recurrent fast-weight paper's Atari sizes (``--sizes atari``, Irie et
al., NeurIPS 2021: the same with 4 heads of 32). Then the parameter counts of the
paper's full SRWM agent (IMPALA encoder on ProcGen [3, 64, 64], 15 actions) and of
the same agent with each benchmarked core (at the chosen sizes). ``act step ms``: one
actor step (T = 1, ``--act-batch`` rows, no grad), averaged over the 10 steps that
follow a parameter publish (freshly written weights), as an actor runs its core.

    python -m launch.bench_cores                      # deltanet srwm lstm ff, one thread
    python -m launch.bench_cores --cores srwm sr_delta --threads 2 --repeats 10
    python -m launch.bench_cores --sizes atari --cores lstm deltanet rec_delta delta_rnn gated_deltanet
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, List

import torch

from agents.core import list_cores, make_core
from agents.cores.layers import FastWeightLayer
from agents.model import ModelConfig, build_agent, core_options
from envs.base import ObsSpec

PROCGEN = ObsSpec((3, 64, 64), "uint8")
PROCGEN_ACTIONS = 15
#: --sizes: ModelConfig overrides (both: 2 layers, hidden 128, d_ff 512, LSTM 256)
SIZES = {"procgen": {}, "atari": {"num_heads": 4, "head_size": 32}}
ACT_STEPS = 10


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m launch.bench_cores", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cores", nargs="+", default=["deltanet", "srwm", "lstm", "ff"],
                   help=f"cores to time (registered: {', '.join(list_cores())})")
    p.add_argument("--batch-size", type=int, default=32, help="B: unrolls per batch")
    p.add_argument("--unroll-length", type=int, default=50, help="T: steps per unroll")
    p.add_argument("--input-size", type=int, default=257, help="core input size (features + reward)")
    p.add_argument("--act-batch", type=int, default=8, help="rows of the actor's one-step call (act step ms)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--backend", default="auto", choices=["auto", "reference", "torch", "triton"],
                   help="fast-weight kernel backend")
    p.add_argument("--reset-prob", type=float, default=0.01, help="probability of an episode reset per step")
    p.add_argument("--sizes", choices=sorted(SIZES), default="procgen",
                   help="core sizes: procgen (SRWM paper: 8 heads of 16) or atari (recurrent FWP paper: 4 heads of 32)")
    args = p.parse_args(argv)
    unknown = [c for c in args.cores if c not in list_cores()]
    if unknown:
        p.error(f"unknown core(s) {', '.join(unknown)}; known cores: {', '.join(list_cores())}")
    for name in ("batch_size", "unroll_length", "input_size", "threads", "repeats", "act_batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def median_ms(fn: Callable[[], None], repeats: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def bench_core(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    cfg = ModelConfig(core=name, **SIZES[args.sizes])
    core = make_core(name, args.input_size, strict=False, **core_options(cfg)).to(device)
    for m in core.modules():
        if isinstance(m, FastWeightLayer):
            m.kernel_backend = args.backend
    T, B = args.unroll_length, args.batch_size
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, args.input_size, generator=g).to(device)           # [T, B, input]
    reset = (torch.rand(T, B, generator=g) < args.reset_prob).to(device)      # [T, B]
    state = core.initial_state(B, device)

    def forward():
        with torch.no_grad():
            core(x, state, reset)

    def forward_backward():
        core.zero_grad(set_to_none=True)
        y, _ = core(x, state, reset)
        y.square().mean().backward()

    A = args.act_batch
    x1, reset1 = torch.randn(1, A, args.input_size, generator=g).to(device), torch.zeros(1, A, dtype=torch.bool, device=device)
    published = [p.detach().clone() for p in core.parameters()]

    def act():    # an actor after a parameter publish: new weights, then ACT_STEPS single steps
        with torch.no_grad():
            for p, q in zip(core.parameters(), published):
                p.copy_(q)
            s = core.initial_state(A, device)
            for _ in range(ACT_STEPS):
                _, s = core(x1, s, reset1)

    return {"core": name, "core_params": count(core),
            "fwd_ms": median_ms(forward, args.repeats, args.warmup, device),
            "fwd_bwd_ms": median_ms(forward_backward, args.repeats, args.warmup, device),
            "act_ms": median_ms(act, args.repeats, args.warmup, device) / ACT_STEPS}


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"B={args.batch_size} T={args.unroll_length} input={args.input_size} device={device} "
          f"threads={args.threads} backend={args.backend} sizes={args.sizes} "
          f"(median of {args.repeats} after {args.warmup} warm-up)")
    print(f"{'core':<20}{'fwd ms':>10}{'fwd+bwd ms':>12}{'act step ms':>13}{'core params':>14}{'agent params':>14}")
    for name in args.cores:
        r = bench_core(name, args, device)
        agent_params = count(build_agent(ModelConfig(core=name, **SIZES[args.sizes]), PROCGEN, PROCGEN_ACTIONS))
        print(f"{name:<20}{r['fwd_ms']:>10.1f}{r['fwd_bwd_ms']:>12.1f}{r['act_ms']:>13.3f}"
              f"{r['core_params']:>14,}{agent_params:>14,}")
    paper = build_agent(ModelConfig(), PROCGEN, PROCGEN_ACTIONS)
    print(f"paper SRWM agent (IMPALA encoder on ProcGen, {PROCGEN_ACTIONS} actions, 2 layers, hidden 128, "
          f"8 heads of 16, d_ff 512): {count(paper):,} parameters "
          f"(encoder {count(paper.encoder):,}, core {count(paper.core):,}, "
          f"heads {count(paper.policy) + count(paper.baseline):,})")


if __name__ == "__main__":
    main()
