"""Local processes against Ray actors, same config, one run: ``python -m launch.bench_ray``.

For each backend (``--backends local ray``) it runs the trainer's loop (rollout source
-> :class:`learner.learner.Learner` step -> publish parameters: ``Trainer.step`` of
:mod:`launch.trainer`; IMPALA, Espeholt et al., ICML 2018) and, after the first
update and ``--warmup`` seconds, measures for ``--seconds``:

* training steps/s (T x B per update) and their ratio ray / local;
* the policy lag: learner updates between the parameters an unroll was acted with and
  the update that learns from it (the trainer's ``policy_lag``), mean and max;
* the start-up time of the backend (processes, or Ray instance + actors) and the
  rollout bytes per second the learner receives (through the object store for Ray).

Defaults: the memory task with a small LSTM (vector observations, a cheap model: the
transport is as large a share of the cost as it gets); every ``python -m launch.train``
option is accepted, e.g. ``--env procgen:bigfish --core srwm`` for the paper's model, or
``--ray-broadcast-every 4`` to trade policy lag for less parameter traffic. The Ray
backend starts a local loopback-only instance unless ``--ray-address`` is given.

Examples::

    python -m launch.bench_ray
    python -m launch.bench_ray --seconds 60 --num-actors 4 --ray-broadcast-every 2
    python -m launch.bench_ray --env procgen:bigfish --core srwm --batch-size 8 --unroll-length 20
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np
import psutil
import torch

from launch.bench import cpu_seconds

DEFAULTS = ["--env", "memory:2:2", "--core", "lstm", "--hidden-size", "32", "--feature-size", "32",
            "--num-actors", "2", "--envs-per-actor", "8", "--batch-size", "16", "--unroll-length", "10",
            "--learning-rate", "2e-3", "--learner-threads", "1", "--no-progress"]


def bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.bench_ray", description=__doc__.split("\n\n")[0],
        epilog="Every option of python -m launch.train is accepted as well (see its --help); "
               f"defaults: {' '.join(DEFAULTS)}")
    p.add_argument("--backends", nargs="+", default=["local", "ray"], choices=["local", "ray"],
                   help="backends to measure, in this order")
    p.add_argument("--seconds", type=float, default=30.0, help="measuring time per backend (s)")
    p.add_argument("--warmup", type=float, default=5.0, help="warm-up after the first update (s)")
    p.add_argument("--json", default="", metavar="PATH", help="also write the figures to this JSON file")
    return p


def parse(argv: Sequence[str]):
    from launch.config import build_parser, config_from_args, validate_config
    args, rest = bench_parser().parse_known_args(argv)
    cfg = config_from_args(build_parser(prog="python -m launch.bench_ray").parse_args([*DEFAULTS, *rest]))
    cfg.run.total_steps = 10**12                  # a flat learning-rate schedule
    try:
        validate_config(cfg)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    return args, cfg


def rollout_bytes_per_step(obs_shape, obs_dtype: str, num_actions: int, action_dims=None) -> int:
    """Bytes of one unroll entry (obs, reward, done, task, action, logits, baseline)."""
    from actors.buffers import rollout_specs
    total = 0
    for shape, dtype in rollout_specs(obs_shape, obs_dtype, num_actions, action_dims).values():
        total += int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
    return total


def process_groups(source, backend: str):
    """(actor processes, other processes of the backend: Ray's GCS, raylet, agents, idle workers)."""
    me = psutil.Process()
    if backend == "ray":
        actor_pids = {s.info["pid"] for s in source.slots if "pid" in s.info}
    else:
        actor_pids = set(source.pids())
    actors, system = [], []
    for p in me.children(recursive=True):
        (actors if p.pid in actor_pids else system).append(p)
    return actors, system


def bench_backend(cfg, backend: str, seconds: float, warmup: float) -> dict:
    """The trainer's loop (:meth:`launch.trainer.Trainer.step`) on one backend; figures over
    ``seconds`` after the warm-up."""
    from actors.source import merge_timing
    from agents.model import build_agent
    from envs import describe_env
    from launch.trainer import Trainer
    cfg = copy.deepcopy(cfg)
    cfg.run.backend = backend
    obs_spec, num_actions, tasks = desc = describe_env(cfg.env)
    T, B = cfg.actor.unroll_length, cfg.actor.batch_size
    torch.manual_seed(cfg.env.seed)
    agent = build_agent(cfg.model, obs_spec, num_actions, len(tasks), desc.action_dims)
    trainer = Trainer(cfg, None, agent=agent, obs_spec=obs_spec, num_actions=num_actions, task_names=tasks)
    t0 = time.perf_counter()
    try:
        trainer.start()
        source = trainer.source
        startup = time.perf_counter() - t0
        timing: dict = {}                               # the actors' (env, inference, write, wait, steps)

        def update() -> bool:
            made = trainer.step()
            merge_timing(timing, source.drain_timing())
            return made

        while not update():
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"{backend}: no batch within 600 s")
        first_batch = time.perf_counter() - t0
        t_end = time.perf_counter() + warmup
        while time.perf_counter() < t_end:
            update()
        updates = 0
        timing.clear()
        trainer.timing.clear()
        trainer.lags.clear()
        actors, system = process_groups(source, backend)
        me = psutil.Process()
        cpu0 = [cpu_seconds([me]), cpu_seconds(actors), cpu_seconds(system)]
        t1 = time.perf_counter()
        while time.perf_counter() - t1 < seconds or updates < 2:
            updates += update()
        wall = time.perf_counter() - t1
        cpu1 = [cpu_seconds([me]), cpu_seconds(actors), cpu_seconds(system)]
        restarts = source.restarts
        lags = list(trainer.lags)
        timing["learner_wait"] = trainer.timing.get("time/wait_batch", 0.0)
    finally:
        trainer.stop()
    sps = updates * T * B / wall
    trained = max(updates * T * B, 1)
    learner_cpu, actor_cpu, system_cpu = (b - a for a, b in zip(cpu0, cpu1))
    acted = max(timing.get("steps", 0.0), 1.0)
    actor_s = wall * cfg.actor.num_actors
    shares = {f"actor_{k}_share": timing.get(k, 0.0) / actor_s for k in ("env", "inference", "write", "wait")}
    return {**shares, "learner_wait_share": timing.get("learner_wait", 0.0) / wall,
            "acted_sps": timing.get("steps", 0.0) / wall,
            "learner_cpu_us_per_step": 1e6 * learner_cpu / trained,
            "actor_cpu_us_per_step": 1e6 * actor_cpu / acted,
            "system_cpu_us_per_step": 1e6 * system_cpu / trained,"backend": backend, "startup_s": startup, "first_batch_s": first_batch, "wall_s": wall,
            "updates": updates, "sps": sps, "policy_lag_mean": float(np.mean(lags)),
            "policy_lag_max": float(np.max(lags)), "actor_restarts": restarts,
            "rollout_MB_per_s": sps * rollout_bytes_per_step(obs_spec.shape, obs_spec.dtype, num_actions,
                                                                 desc.action_dims) / 1e6}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, cfg = parse(argv)
    a = cfg.actor
    print(f"env {cfg.env.env}; core {cfg.model.core}; {a.num_actors} actors x {a.envs_per_actor} envs, "
          f"{a.num_buffers} buffers each; batch {a.batch_size} x unroll {a.unroll_length}; "
          f"ray: {cfg.ray.ray_cpus_per_actor:g} CPUs per actor, parameters every "
          f"{cfg.ray.ray_broadcast_every} update(s), {cfg.ray.ray_address or 'local instance'}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    for backend in args.backends:
        r = bench_backend(cfg, backend, args.seconds, args.warmup)
        results.append(r)
        print(f"{backend:>6}: {r['sps']:8,.0f} steps/s | policy lag {r['policy_lag_mean']:.2f} "
              f"(max {r['policy_lag_max']:.1f}) updates | start-up {r['startup_s']:.1f} s, first batch "
              f"{r['first_batch_s']:.1f} s | {r['rollout_MB_per_s']:.2f} MB/s of rollouts | "
              f"{r['updates']} updates in {r['wall_s']:.1f} s | restarts {r['actor_restarts']}", flush=True)
        print(f"        actors: env {100 * r['actor_env_share']:.0f}%, inference {100 * r['actor_inference_share']:.0f}%, "
              f"write {100 * r['actor_write_share']:.0f}%, wait for parameters/credit "
              f"{100 * r['actor_wait_share']:.0f}% of actor time; learner waits for a batch "
              f"{100 * r['learner_wait_share']:.0f}% of the time", flush=True)
        print(f"        CPU per training step: learner process {r['learner_cpu_us_per_step']:.0f} us, actors "
              f"{r['actor_cpu_us_per_step']:.0f} us per acted step, other {backend} processes "
              f"{r['system_cpu_us_per_step']:.0f} us", flush=True)
    by = {r["backend"]: r for r in results}
    ratio = None
    if "local" in by and "ray" in by:
        ratio = by["ray"]["sps"] / by["local"]["sps"]
        print(f" ratio: ray / local steps/s = {ratio:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "ray_over_local": ratio,
                       "argv": argv, "load_average": os.getloadavg()[0]}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
