"""Look inside a run's newest checkpoint: is the policy seeing the state, and is the
optimiser moving the weights?

``python -m launch.inspect_policy RUN_DIR [--steps 300] [--init]`` plays ``--steps``
steps of the run's environment with uniformly random actions, feeds every tenth
observation through the agent and prints

* per encoder output unit: the fraction of units that are zero on every observation
  (dead ReLUs) and the mean over units of the standard deviation across observations
  (how much the features depend on the state), beside their mean;
* the policy logits' standard deviation across observations, per action, and the mean
  policy entropy (ln A = uniform; the sum of ln n_k for a MultiDiscrete layout);
* for an ``lstm`` core, the fraction of each gate's pre-activations where the derivative
  of its sigmoid or tanh is below 1e-6 of its maximum (a saturated gate passes next to no
  gradient);
* per parameter tensor: its norm at initialisation and the norm of its change since
  (the run's seed rebuilds the initial weights) and RMSProp's median ``sqrt(square_avg)`` against its
  ``eps``: where ``sqrt(v) << eps`` the step is ``lr * g / eps``, a slow SGD, not RMSProp.

``--init`` inspects the freshly initialised agent instead of the checkpoint. The
memory core is run from its initial state with no resets, one observation per step;
for the feed-forward core this is exact. Used for docs/learning/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch


#: a gate's derivative below this fraction of its maximum (sigmoid 1/4, tanh 1) counts as
#: saturated: |x| above about 15.2 (sigmoid) or 7.6 (tanh); float32 rounds it to exactly 0
#: from about 16.6 (sigmoid, x > 0) and 9.1 (tanh)
SATURATED = 1e-6


def lstm_saturation(agent, inputs) -> dict:
    """For an ``lstm`` core: per gate (i, f, g, o), the fraction of its pre-activations at the
    first step (state zero) where the derivative of its sigmoid (tanh for g) is below
    :data:`SATURATED` of its maximum: next to no gradient passes there."""
    from agents.cores.diagnostics import lstm_gate_preactivations
    core = agent.core
    with torch.no_grad():
        x = agent.core_input(inputs)[0]                                  # [B, I]
        x = getattr(core, "input_norm", torch.nn.Identity())(x)
        pre = lstm_gate_preactivations(core.lstm, x, torch.zeros(x.shape[0], core.lstm.hidden_size))
        out = {}
        for name, g in zip("ifgo", pre.chunk(4, dim=-1)):
            if name == "g":
                t = torch.tanh(g)
                deriv, top = 1 - t * t, 1.0
            else:
                s = torch.sigmoid(g)
                deriv, top = s * (1 - s), 0.25
            out[name] = round(float((deriv <= SATURATED * top).float().mean()), 4)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m launch.inspect_policy", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a run directory (its newest loadable checkpoint is inspected)")
    p.add_argument("--steps", type=int, default=300, help="random-policy env steps to collect observations")
    p.add_argument("--envs", type=int, default=8, help="envs stepped together")
    p.add_argument("--init", action="store_true", help="inspect the initial weights instead")
    a = p.parse_args(argv)
    from agents import action_dist
    from agents.model import build_agent
    from envs import EnvConfig, describe_env, make_vec_env
    from learner.checkpoint import CheckpointError, load_latest, model_config_from_dict, section_from_dict
    from launch.train import seed_everything

    run_dir = Path(a.run_dir)
    try:
        payload, path = load_latest(run_dir)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if payload is None:
        print(f"error: {run_dir} has no loadable checkpoint", file=sys.stderr)
        return 2
    cfg = payload["config"]
    env_cfg = section_from_dict(EnvConfig, cfg["env"])
    obs_spec, num_actions, tasks = desc = describe_env(env_cfg)
    dims = desc.action_dims
    seed_everything(env_cfg.seed)
    agent = build_agent(model_config_from_dict(cfg["model"]), obs_spec, num_actions, len(tasks), dims)
    init = {k: v.clone() for k, v in agent.state_dict().items()}
    learner = payload["learner"]
    if not a.init:
        agent.load_state_dict(learner["model"])
    agent.eval()
    print(f"{'initial weights' if a.init else path.name}: step {learner['counters']['steps']:,}, "
          f"update {learner['counters']['updates']:,}; env {env_cfg.env}")

    env = make_vec_env(env_cfg, a.envs, seed_offset=7)
    obs = env.reset()
    rng = np.random.default_rng(0)
    frames = []
    for t in range(a.steps):
        obs, _, _, _ = env.step(env.random_actions(rng))                  # [N] or [N, K]
        if t % 10 == 0:
            frames.append(torch.from_numpy(np.asarray(obs)))
    env.close()
    x = torch.stack(frames)                                              # [N, B, *obs]
    n, b = x.shape[:2]
    with torch.no_grad():
        feats = agent.encoder(x.flatten(0, 1))                           # [N*B, F]
        inputs = {"obs": x.reshape(1, n * b, *x.shape[2:]), "reward": torch.zeros(1, n * b),
                  "done": torch.zeros(1, n * b, dtype=torch.bool),
                  "task": torch.zeros(1, n * b, dtype=torch.long)}
        out, _ = agent(inputs, agent.initial_state(n * b))
    logits = out["policy_logits"][0]                                     # [N*B, A]
    entropy = float(action_dist.entropy(logits, dims).mean())
    dead = float((feats.max(0).values <= 0).float().mean())
    report = {
        "observations": n * b,
        "features": {"dead_fraction": dead, "mean": float(feats.mean()),
                     "std_over_observations": float(feats.std(0).mean())},
        "logits_std_over_observations": [round(float(v), 5) for v in logits.std(0)],
        "policy_entropy": entropy, "uniform_entropy": float(sum(np.log(n) for n in dims)),
    }
    lstm = getattr(agent.core, "lstm", None)
    if isinstance(lstm, torch.nn.LSTM):
        report["lstm_gates_saturated_fraction"] = lstm_saturation(agent, inputs)
    print(json.dumps(report, indent=1))
    if a.init:
        return 0
    opt = learner["optimizer"]
    eps = opt["param_groups"][0]["eps"]
    names = [name for name, _ in agent.named_parameters()]          # the optimiser's order
    print(f"{'parameter':34s} {'numel':>8s} {'|w0|':>9s} {'|w - w0|':>9s} {'median sqrt(v)':>14s} "
          f"{'frac < eps':>10s}   (RMSProp eps {eps:g})")
    for i, (_, st) in enumerate(sorted(opt["state"].items(), key=lambda kv: int(kv[0]))):
        name = names[i]
        w, w0 = learner["model"][name], init[name]
        v = st["square_avg"].sqrt()
        print(f"{name:34s} {v.numel():8d} {float(w0.norm()):9.3f} {float((w - w0).norm()):9.3f} "
              f"{float(v.median()):14.2e} "
              f"{float((v < eps).float().mean()):10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
