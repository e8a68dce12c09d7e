"""A fast synchronous training loop for small experiments, and its command line.

The real pieces (``UnrollWriter``, ``LocalPolicy``, ``Learner`` with V-trace, parameters
published after every update) run in one process, one unroll batch at a time: no actor
processes, deterministic for a seed, a few seconds per 30k steps of the memory task on
one CPU thread. ``tests/test_learning.py`` uses it; ``docs/srwm.md`` was measured with it::

    python -m launch.sync_train --core srwm --env memory:3:2 --steps 64000 --seeds 0 1 2 \\
        --lr 6e-4 --eps 0.01 --diagnostics --set srwm_input_norm=layernorm

prints, per configuration, the mean return of the last 200 episodes of each seed and,
with ``--diagnostics``, the ``--core-diagnostics`` scalars averaged over the first and
the last 10% of the updates.
"""

from __future__ import annotations

import argparse
import ast
import time
from typing import Dict, List, Optional

import numpy as np
import torch

SMALL_MODEL = dict(hidden_size=32, num_layers=1, num_heads=4, head_size=8, d_ff=64, feature_size=32)


def train_sync(core: str, total_steps: int, seed: int = 0, num_envs: int = 16, T: int = 10,
               lr: float = 5e-3, eps: float = 1e-5, env: str = "memory:3:2",
               entropy_cost: float = 0.003, diagnostics: bool = False, last: int = 200,
               history: Optional[List[Dict[str, float]]] = None, **model_options) -> float:
    """Train ``core`` for ``total_steps`` env steps; return the mean return of the last
    ``last`` episodes. With ``diagnostics`` the learner's stats of every update (including
    ``core/...`` and ``grad_norm/...``) are appended to ``history``."""
    from actors.actor import UnrollWriter
    from actors.buffers import BufferLayout, RolloutBuffers
    from actors.params import SharedParams
    from actors.policy import LocalPolicy
    from agents.model import ModelConfig, build_agent
    from envs import EnvConfig, describe_env, make_vec_env
    from learner.learner import Learner, LearnerConfig

    torch.manual_seed(seed)
    np.random.seed(seed)
    env_cfg = EnvConfig(env=env, seed=seed)
    obs_spec, A, tasks = desc = describe_env(env_cfg)
    mcfg = ModelConfig(core=core, **{**SMALL_MODEL, **model_options})
    learner_agent = build_agent(mcfg, obs_spec, A, len(tasks), desc.action_dims)
    actor_agent = build_agent(mcfg, obs_spec, A, len(tasks), desc.action_dims)
    params = SharedParams(learner_agent)
    lcfg = LearnerConfig(learning_rate=lr, rmsprop_eps=eps, entropy_cost=entropy_cost, anneal_lr=False,
                         core_diagnostics=diagnostics)
    learner = Learner(lcfg, learner_agent, total_steps=total_steps, steps_per_update=T * num_envs)
    venv = make_vec_env(env_cfg, num_envs)
    policy = LocalPolicy(actor_agent, num_envs, params)
    policy.sync()
    layout = BufferLayout(1, 1, num_envs, T)
    bufs = RolloutBuffers(layout, obs_spec.shape, obs_spec.dtype, A, actor_agent.state_spec(),
                          share_memory=False, action_dims=desc.action_dims)
    writer = UnrollWriter(venv, policy, T)
    returns = []
    rows = torch.arange(num_envs)
    try:
        while learner.steps < total_steps:
            views, init = bufs.group_view(0)
            returns.extend(e.episode_return for e in writer.fill(views, init))
            batch, state = bufs.gather(rows)
            stats = learner.step(batch, state)
            if history is not None:
                stats["return"] = float(np.mean(returns[-last:])) if returns else float("nan")
                history.append(stats)
            params.publish(learner.agent)
            policy.sync()
    finally:
        venv.close()
    return float(np.mean(returns[-last:]))


def _mean_rows(rows: List[Dict[str, float]]) -> Dict[str, float]:
    keys = [k for k in rows[0] if k.startswith(("core/", "grad_norm/"))]
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m launch.sync_train", description=__doc__.split("\n")[0])
    p.add_argument("--core", default="srwm")
    p.add_argument("--env", default="memory:3:2")
    p.add_argument("--steps", type=int, default=32_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--eps", type=float, default=0.01)
    p.add_argument("--entropy-cost", type=float, default=0.003)
    p.add_argument("--unroll", type=int, default=10)
    p.add_argument("--diagnostics", action="store_true", help="record and print --core-diagnostics")
    p.add_argument("--set", nargs="*", default=[], metavar="OPTION=VALUE",
                   help="model options, e.g. srwm_input_norm=layernorm hidden_size=64")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    opts = {}
    for item in args.set:
        if "=" not in item:
            p.error(f"--set expects OPTION=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            opts[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            opts[k] = v
    if args.steps < 1 or args.unroll < 1:
        p.error(f"--steps and --unroll must be >= 1, got {args.steps} and {args.unroll}")
    from agents.model import ModelConfig, validate_model_config
    from envs import EnvConfig, validate_env_config
    try:                                 # bad names and options: one line before any training
        validate_model_config(ModelConfig(core=args.core, **opts))
        validate_env_config(EnvConfig(env=args.env))
    except (TypeError, ValueError) as e:
        p.error(str(e))
    results, hists, t0 = [], [], time.time()
    for seed in args.seeds:
        hist: List[Dict[str, float]] = []
        results.append(train_sync(args.core, args.steps, seed=seed, T=args.unroll, lr=args.lr, eps=args.eps,
                                  env=args.env, entropy_cost=args.entropy_cost,
                                  diagnostics=args.diagnostics, history=hist, **opts))
        hists.append(hist)
    desc = " ".join(f"{k}={v}" for k, v in opts.items())
    print(f"{args.core} {args.env} steps={args.steps} lr={args.lr} eps={args.eps} {desc}: "
          f"returns {[round(r, 2) for r in results]} mean {np.mean(results):.3f} "
          f"({time.time() - t0:.0f}s)", flush=True)
    if args.diagnostics:
        n = max(1, len(hists[0]) // 10)
        first = _mean_rows([r for h in hists for r in h[:n]])
        last = _mean_rows([r for h in hists for r in h[-n:]])
        for k in first:
            print(f"  {k:34s} first {first[k]:10.4g}   last {last[k]:10.4g}")


if __name__ == "__main__":
    main()
