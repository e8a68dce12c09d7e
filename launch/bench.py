"""Throughput benchmark of the whole system: ``python -m launch.bench [options]``.

For each memory core (``--cores``) and acting mode (``--inference actor learner``) it
measures, each for ``--seconds`` after a warm-up:

1. **env**: steps/s of one vectorised env (``--envs-per-actor`` envs, random actions)
   in this process: the ceiling an actor could reach without a policy;
2. **actors**: steps/s of the actor pool acting with the policy (in each actor, or on
   the inference server), the learner only handing buffers back;
3. **learner**: samples/s (T x B per update) of :class:`learner.learner.Learner` on
   synthetic batches of the run's shapes;
4. **e2e**: training steps/s of a real run (:class:`launch.trainer.Trainer`, driven one
   ``Trainer.step`` at a time: the very update cycle of training), with the time
   breakdown of actors (env, inference, write, wait for a free buffer) and learner
   (learn, copy = publish parameters, wait for a batch, inference-server forward time)
   and the CPU-time efficiency::

       efficiency = e2e steps/s x (actor CPU s per step + learner CPU s per step) / cores

   i.e. the fraction of the machine's CPU time the run turns into training steps
   (1.0: every core busy, all the time, on work that became a training step).

The IMPALA setup follows Espeholt et al., ICML 2018; the model is the SRWM paper's
(Irie et al., ICML 2022; docs/design.md#procgen-multi-task). Defaults: ProcGen 6-game easy, the
paper's model, actors on all but one core (CPU) or all but two (GPU learner). On the
CPU the batch defaults to 8 unrolls of 20 steps (the paper: 32 x 50, which takes
seconds per update on a CPU; pass ``--batch-size 32 --unroll-length 50`` for it).

Every option of ``python -m launch.train`` is accepted too (``--device``,
``--envs-per-actor``, ``--inference-max-batch``, ...). ``python -m launch.bench envs
...`` runs :mod:`launch.bench_envs` (env layer against the bare simulators).

Examples::

    python -m launch.bench                                   # srwm, actor-side inference
    python -m launch.bench --cores ff srwm --inference actor learner --seconds 30
    python -m launch.bench --env memory --cores lstm --batch-size 16 --json out.json
    python -m launch.bench envs --families procgen --num-envs 16

Length: about 430 lines, one command in three parts (command line, the four
measurements, the report); the loop it measures is the trainer's, not a copy.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import psutil
import torch

PHASES = ("env", "actors", "learner", "e2e")


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------

def bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.bench", description=__doc__.split("\n\n")[0],
        epilog="Every option of python -m launch.train is accepted as well (see its --help); "
               "'python -m launch.bench envs ...' runs launch.bench_envs.")
    p.add_argument("--cores", nargs="+", default=["srwm"], metavar="CORE",
                   help="memory cores to measure (default: srwm, the paper's model)")
    p.add_argument("--inference", nargs="+", default=["actor"], choices=["actor", "learner"],
                   help="acting modes to measure: actor (each actor's CPU copy) and/or learner "
                        "(batched inference server on the learner's device)")
    p.add_argument("--seconds", type=float, default=20.0, help="measuring time of each phase (s)")
    p.add_argument("--warmup", type=float, default=5.0,
                   help="warm-up before measuring (s); the actor and e2e phases also wait for "
                        "the first unroll / update first")
    p.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES,
                   help="which measurements to run")
    p.add_argument("--json", default="", metavar="PATH", help="also write every figure to this JSON file")
    return p


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:     # pragma: no cover - not Linux
        return os.cpu_count() or 1


def parse(argv: Sequence[str]):
    """(bench args, base TrainConfig) with the bench's defaults for options not given."""
    from launch.config import build_parser, config_from_args, given_options, validate_config
    from learner.device import resolve_device

    args, rest = bench_parser().parse_known_args(argv)
    train_parser = build_parser(prog="python -m launch.bench")
    cfg = config_from_args(train_parser.parse_args(rest))
    given = given_options(rest)
    device = resolve_device(cfg.run.device)
    cores = usable_cores()
    a = cfg.actor
    if "actor.num_actors" not in given:
        a.num_actors = max(1, cores - (2 if device.type == "cuda" else 1))
    if device.type != "cuda":
        if "actor.batch_size" not in given:
            a.batch_size = 8
        if "actor.unroll_length" not in given:
            a.unroll_length = 20
    if "actor.envs_per_actor" not in given:       # one group of every actor fills a batch or more
        a.envs_per_actor = max(1, math.ceil(a.batch_size / a.num_actors))
    if "learner.learner_threads" not in given:
        # on the CPU the learner is the bottleneck and the actors wait for buffers part of the
        # time: letting the learner's threads use every core fills those gaps (measured on 2
        # cores: CPU efficiency 0.72 -> 0.98); on a GPU it needs the cores the actors leave
        cfg.learner.learner_threads = max(1, cores - a.num_actors) if device.type == "cuda" else cores
    if "run.progress" not in given:
        cfg.run.progress = False
    cfg.run.total_steps = 10**12                  # the learning-rate schedule stays flat
    for core in args.cores:
        for mode in args.inference:
            c = variant(cfg, core, mode)
            try:
                validate_config(c)
            except ValueError as e:
                raise SystemExit(f"error: {e}")
    return args, cfg


def variant(cfg, core: str, inference: str):
    c = copy.deepcopy(cfg)
    c.model.core = core
    c.actor.inference = inference
    return c


# --------------------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------------------

def cpu_seconds(procs: List[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def bench_env(cfg, seconds: float, warmup: float) -> dict:
    """Steps/s of one vector env with random actions, in this process."""
    from envs import make_vec_env
    env = make_vec_env(cfg.env, cfg.actor.envs_per_actor)
    try:
        rng = np.random.default_rng(0)
        n = env.num_envs
        env.reset()
        acts = [env.random_actions(rng) for _ in range(64)]
        t_end = time.perf_counter() + warmup
        i = 0
        while time.perf_counter() < t_end:
            env.step(acts[i % 64])
            i += 1
        me = psutil.Process()
        cpu0, t0, steps = cpu_seconds([me]), time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            env.step(acts[i % 64])
            i += 1
            steps += n
        wall, cpu = time.perf_counter() - t0, cpu_seconds([me]) - cpu0
    finally:
        env.close()
    return {"env_sps": steps / wall, "env_cpu_us_per_step": 1e6 * cpu / max(steps, 1), "num_envs": n}


def synthetic_batch(T: int, B: int, obs_shape, obs_dtype: str, num_actions: int, num_tasks: int, gen,
                    action_dims=None):
    from actors.buffers import torch_dtype
    dims = action_dims or (num_actions,)

    def actions():                                            # [T+1, B], or [T+1, B, K]
        if len(dims) == 1:
            return torch.randint(0, num_actions, (T + 1, B), generator=gen)
        return torch.stack([torch.randint(0, n, (T + 1, B), generator=gen) for n in dims], -1)
    dt = torch_dtype(obs_dtype)
    shape = (T + 1, B, *obs_shape)
    if dt.is_floating_point:
        obs = torch.randn(shape, generator=gen)
    elif dt == torch.bool:
        obs = torch.rand(shape, generator=gen) < 0.5
    else:
        obs = torch.randint(0, 256, shape, generator=gen).to(dt)
    return {"obs": obs,                                                           # [T+1, B, ...]
            "reward": torch.randn(T + 1, B, generator=gen),
            "done": torch.rand(T + 1, B, generator=gen) < 0.02,
            "task": torch.randint(0, num_tasks, (T + 1, B), generator=gen),
            "action": actions(),
            "policy_logits": torch.randn(T + 1, B, num_actions, generator=gen),
            "baseline": torch.randn(T + 1, B, generator=gen)}


def bench_learner(cfg, obs_spec, num_actions: int, tasks, seconds: float, action_dims=None) -> dict:
    """Samples/s of Learner.step on synthetic batches (after one warm-up update)."""
    from agents.model import build_agent
    from learner.learner import Learner
    from learner.device import resolve_device
    device = resolve_device(cfg.run.device)
    T, B = cfg.actor.unroll_length, cfg.actor.batch_size
    torch.manual_seed(0)
    agent = build_agent(cfg.model, obs_spec, num_actions, len(tasks), action_dims)
    learner = Learner(cfg.learner, agent, total_steps=cfg.run.total_steps, steps_per_update=T * B,
                      device=device, reward_clip=cfg.model.reward_clip)
    gen = torch.Generator().manual_seed(0)
    batches = [synthetic_batch(T, B, obs_spec.shape, obs_spec.dtype, num_actions, len(tasks), gen, action_dims)
               for _ in range(2)]
    if device.type == "cuda":
        batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
    state = agent.state_spec().allocate(B)

    def step(i):
        learner.step(batches[i % 2], state)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step(0)                                           # warm-up (allocations, kernel compiles)
    me = psutil.Process()
    cpu0, t0, n = cpu_seconds([me]), time.perf_counter(), 0
    while n < 2 or time.perf_counter() - t0 < seconds:
        step(n)
        n += 1
    wall, cpu = time.perf_counter() - t0, cpu_seconds([me]) - cpu0
    return {"learner_sps": n * T * B / wall, "learner_update_ms": 1e3 * wall / n,
            "learner_cpu_us_per_sample": 1e6 * cpu / (n * T * B), "learner_updates": n}


class _Run:
    """The trainer driven one :meth:`launch.trainer.Trainer.step` at a time (the very update
    cycle of a training run), with the benchmark's counters; ``learn=False`` measures the
    actors alone (each batch is taken and dropped, handing the buffers back)."""

    def __init__(self, cfg, obs_spec, num_actions: int, tasks, learn: bool, action_dims=None):
        from agents.model import build_agent
        from launch.trainer import Trainer
        torch.manual_seed(cfg.env.seed)
        agent = build_agent(cfg.model, obs_spec, num_actions, len(tasks), action_dims)
        self.trainer = Trainer(cfg, None, agent=agent, obs_spec=obs_spec, num_actions=num_actions,
                               task_names=tasks)
        self.steps_per_update = cfg.actor.unroll_length * cfg.actor.batch_size
        self.learn = learn
        self.actor_timing: Dict[str, float] = {}
        self.trained = 0
        self.updates = 0

    def __enter__(self):
        self.trainer.start()
        return self

    def __exit__(self, *exc):
        self.trainer.stop()

    def tick(self) -> None:
        from actors.source import merge_timing
        if self.trainer.step(learn=self.learn):
            self.trained += self.steps_per_update
            self.updates += 1
        merge_timing(self.actor_timing, self.trainer.source.drain_timing())

    def reset_counters(self) -> None:
        self.actor_timing, self.trained, self.updates = {}, 0, 0
        self.trainer.timing.clear()
        self.trainer.lags.clear()
        if self.trainer.inference_server is not None:
            self.trainer.inference_server.take_stats()

    def procs(self):
        out = []
        for pid in self.trainer.source.pids():
            try:
                out.append(psutil.Process(pid))
            except psutil.Error:
                pass
        return out


def bench_pool(cfg, obs_spec, num_actions: int, tasks, seconds: float, warmup: float, learn: bool,
               action_dims=None) -> dict:
    """The actor pool alone (``learn=False``) or a real training run (``learn=True``)."""
    with _Run(cfg, obs_spec, num_actions, tasks, learn, action_dims) as run:
        # warm-up: until the first unroll (or update) has come through, then `warmup` seconds
        t_start = time.perf_counter()
        while (run.updates == 0 if learn else not run.actor_timing.get("steps")):
            run.tick()
            if time.perf_counter() - t_start > 600:
                raise RuntimeError("no data from the actors within 600 s")
        t_end = time.perf_counter() + warmup
        while time.perf_counter() < t_end:
            run.tick()
        run.reset_counters()
        me, actors = psutil.Process(), run.procs()
        cpu_me0, cpu_act0 = cpu_seconds([me]), cpu_seconds(actors)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds or (learn and run.updates < 2):
            run.tick()
        wall = time.perf_counter() - t0
        cpu_me, cpu_act = cpu_seconds([me]) - cpu_me0, cpu_seconds(actors) - cpu_act0
        server = run.trainer.inference_server
        srv = server.take_stats() if server is not None else None
        restarts = run.trainer.source.restarts
        at, acc = run.actor_timing, run.trainer.timing
        acted = at.get("steps", 0)
        out = {"wall_s": wall, "acted_steps": acted, "actor_sps": acted / wall,
               "actor_cpu_us_per_step": 1e6 * cpu_act / max(acted, 1),
               "actor_restarts": restarts,
               "time_env_s": at.get("env", 0.0), "time_inference_s": at.get("inference", 0.0),
               "time_write_s": at.get("write", 0.0), "time_wait_buffer_s": at.get("wait", 0.0)}
        if srv is not None:
            out.update({"server_forward_s": srv["time_forward"], "server_mean_batch_rows": srv["mean_batch_rows"],
                        "server_forwards": srv["forwards"]})
        if not learn:
            out["main_cpu_us_per_step"] = 1e6 * cpu_me / max(acted, 1)
            return out
        trained = run.trained
        sps = trained / wall
        a_cpu = cpu_act / max(acted, 1)
        l_cpu = cpu_me / max(trained, 1)
        out.update({"e2e_sps": sps, "updates": run.updates, "trained_steps": trained,
                    "learner_cpu_us_per_step": 1e6 * l_cpu,
                    "efficiency": sps * (a_cpu + l_cpu) / usable_cores(),
                    "time_learn_s": acc.get("time/learn", 0.0), "time_copy_s": acc.get("time/copy", 0.0),
                    "time_wait_batch_s": acc.get("time/wait_batch", 0.0)})
        return out


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------

def _f(x, nd=0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{nd}f}"


def describe_setup(cfg, device) -> str:
    a = cfg.actor
    return (f"env {cfg.env.env} ({cfg.env.distribution_mode}); device {device}; "
            f"{usable_cores()} CPU cores; {a.num_actors} actors x {a.envs_per_actor} envs, "
            f"{a.num_buffers} buffers each; batch {a.batch_size} x unroll {a.unroll_length}; "
            f"learner threads {cfg.learner.learner_threads}; torch {torch.__version__}; "
            f"load average {os.getloadavg()[0]:.1f}")


def print_breakdown(name: str, r: dict) -> None:
    wall = r["wall_s"]
    act = max(r["time_env_s"] + r["time_inference_s"] + r["time_write_s"] + r["time_wait_buffer_s"], 1e-9)
    parts = [f"env {100 * r['time_env_s'] / act:.0f}%",
             f"inference {100 * r['time_inference_s'] / act:.0f}%",
             f"write {100 * r['time_write_s'] / act:.0f}%",
             f"wait for buffer {100 * r['time_wait_buffer_s'] / act:.0f}%"]
    line = f"  {name}: actors (share of actor time): " + ", ".join(parts)
    if "time_learn_s" in r:
        line += (f"; learner (share of wall): learn {100 * r['time_learn_s'] / wall:.0f}%, "
                 f"copy {100 * r['time_copy_s'] / wall:.0f}%, wait for batch "
                 f"{100 * r['time_wait_batch_s'] / wall:.0f}%")
    if "server_forward_s" in r:
        line += (f"; inference server forward {100 * r['server_forward_s'] / wall:.0f}% of wall, "
                 f"{r['server_mean_batch_rows']:.1f} rows per forward")
    print(line, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "envs":
        from launch.bench_envs import main as bench_envs_main
        return bench_envs_main(argv[1:]) or 0
    args, cfg = parse(argv)
    from envs import describe_env
    from learner.device import resolve_device
    device = resolve_device(cfg.run.device)
    if cfg.learner.learner_threads > 0:
        torch.set_num_threads(cfg.learner.learner_threads)
    obs_spec, num_actions, tasks = desc = describe_env(cfg.env)
    dims = desc.action_dims
    print(describe_setup(cfg, device), flush=True)
    results: dict = {"setup": {"config": dataclasses.asdict(cfg), "device": str(device),
                               "cores": usable_cores(), "torch": torch.__version__,
                               "argv": argv}, "env": None, "runs": []}
    if "env" in args.phases:
        r = bench_env(cfg, args.seconds, min(args.warmup, 2.0))
        results["env"] = r
        print(f"env only: {_f(r['env_sps'])} steps/s ({r['num_envs']} envs, one process; "
              f"{r['env_cpu_us_per_step']:.0f} us CPU per step)", flush=True)
    rows = []
    for core in args.cores:
        learner_r = None
        if "learner" in args.phases:
            learner_r = bench_learner(variant(cfg, core, "actor"), obs_spec, num_actions, tasks, args.seconds,
                                      dims)
            print(f"[{core}] learner: {_f(learner_r['learner_sps'])} samples/s "
                  f"({learner_r['learner_update_ms']:.0f} ms per update)", flush=True)
        for mode in args.inference:
            c = variant(cfg, core, mode)
            entry = {"core": core, "inference": mode, "learner": learner_r}
            if "actors" in args.phases:
                r = bench_pool(c, obs_spec, num_actions, tasks, args.seconds, args.warmup, learn=False,
                               action_dims=dims)
                entry["actors"] = r
                print(f"[{core}, inference {mode}] actors: {_f(r['actor_sps'])} steps/s", flush=True)
                print_breakdown("actors only", r)
            if "e2e" in args.phases:
                r = bench_pool(c, obs_spec, num_actions, tasks, args.seconds, args.warmup, learn=True,
                               action_dims=dims)
                entry["e2e"] = r
                print(f"[{core}, inference {mode}] end to end: {_f(r['e2e_sps'])} steps/s "
                      f"({r['updates']} updates), actors acted {_f(r['actor_sps'])} steps/s, "
                      f"CPU efficiency {r['efficiency']:.2f}", flush=True)
                print_breakdown("end to end", r)
            results["runs"].append(entry)
            rows.append(entry)
    env_sps = results["env"]["env_sps"] if results["env"] else None
    print()
    print("| core | inference | env steps/s | actor steps/s | learner samples/s | end-to-end steps/s "
          "| CPU efficiency |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for e in rows:
        a, l, x = e.get("actors"), e.get("learner"), e.get("e2e")
        print(f"| {e['core']} | {e['inference']} | {_f(env_sps)} | {_f(a and a['actor_sps'])} | "
              f"{_f(l and l['learner_sps'])} | {_f(x and x['e2e_sps'])} | "
              f"{'-' if not x else format(x['efficiency'], '.2f')} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
