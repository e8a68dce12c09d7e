"""Checkpoint -> agent: rebuild a checkpoint's agent from its model and env sections.

Reads only the ``model`` and ``env`` sections of the saved config (no ``TrainConfig``),
checks the architecture and the task set, loads the weights and puts the agent in eval
mode. Every problem is an :class:`EvaluationInputError` with a one-line reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import torch

from learner.evaluation.plan import EvaluationInputError


@dataclass
class LoadedPolicy:
    """A checkpoint rebuilt into an agent with its weights loaded (eval mode)."""

    path: Path                  # the checkpoint file actually loaded
    model: object               # agents.model.ModelConfig the agent was built with
    env: object                 # envs.EnvConfig the run was trained on
    agent: torch.nn.Module
    obs_spec: object            # envs.base.ObsSpec
    num_actions: int
    task_names: List[str]       # the training task set, in task-id order
    steps: int                  # environment steps trained on
    updates: int
    action_dims: Tuple[int, ...] = ()   # the action layout (agents.action_dist); () = (num_actions,)

    def __post_init__(self):
        if not self.action_dims:
            self.action_dims = (self.num_actions,)


def load_policy(path_or_run: str | Path, device: str | torch.device = "cpu") -> LoadedPolicy:
    """Load a checkpoint file (or a run directory's newest good one) and rebuild its agent.

    Raises :class:`EvaluationInputError` with a one-line reason for a missing,
    corrupt or unsafe file, and for an architecture this code cannot rebuild
    (unknown core, different environment layout, mismatching weights).
    """
    from agents.model import build_agent, validate_model_config
    from envs import EnvConfig, describe_env, validate_env_config
    from learner.checkpoint import (CheckpointError, check_architecture, model_config_from_dict,
                                    resolve_checkpoint, section_from_dict)

    try:
        payload, path = resolve_checkpoint(path_or_run, map_location="cpu")
    except CheckpointError as e:
        raise EvaluationInputError(str(e)) from None
    for key in ("config", "architecture", "learner"):
        if not isinstance(payload.get(key), dict):
            raise EvaluationInputError(f"checkpoint {path} has no {key!r} section")
    if Path(path_or_run).is_dir():
        check_run_config(Path(path_or_run), payload["config"], path)
    if not isinstance(payload["learner"].get("model"), dict):
        raise EvaluationInputError(f"checkpoint {path} has no model weights (learner.model)")
    try:
        model_cfg = model_config_from_dict(payload["config"].get("model"))
        env_cfg = section_from_dict(EnvConfig, payload["config"].get("env"))
    except (TypeError, ValueError) as e:
        raise EvaluationInputError(f"checkpoint {path} has an unreadable config ({e})") from None
    try:
        validate_model_config(model_cfg)
    except ValueError as e:
        raise EvaluationInputError(f"cannot rebuild the agent of checkpoint {path}: {e}") from None
    try:
        validate_env_config(env_cfg)
        obs_spec, num_actions, task_names = desc = describe_env(env_cfg)
    except ValueError as e:
        raise EvaluationInputError(f"cannot rebuild the environment of checkpoint {path}: {e}") from None
    saved_tasks = payload.get("run", {}).get("task_names")
    if saved_tasks is not None and list(saved_tasks) != list(task_names):
        raise EvaluationInputError(f"checkpoint {path} was trained on tasks {list(saved_tasks)} but its "
                                   f"config describes {list(task_names)}")
    try:
        # the architecture lists the layout of a factored policy; one without it (every
        # checkpoint written before layouts) is one categorical head over num_actions
        agent = build_agent(model_cfg, obs_spec, num_actions, len(task_names), desc.action_dims)
        check_architecture(payload["architecture"], agent.architecture())
    except (ValueError, CheckpointError) as e:
        raise EvaluationInputError(f"cannot rebuild the agent of checkpoint {path}: {e}") from None
    try:
        agent.load_state_dict(payload["learner"]["model"], strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise EvaluationInputError(f"checkpoint {path} weights do not fit the rebuilt agent: {first}") from None
    counters = payload["learner"].get("counters", {})
    agent = agent.to(torch.device(device)).eval()
    return LoadedPolicy(path=Path(path), model=model_cfg, env=env_cfg, agent=agent, obs_spec=obs_spec,
                        num_actions=num_actions, task_names=list(task_names), steps=int(counters.get("steps", 0)),
                        updates=int(counters.get("updates", 0)), action_dims=tuple(desc.action_dims))


def check_run_config(run_dir: Path, ckpt_config: dict, path: Path) -> None:
    """A run directory's newest checkpoint must be of the model its config.json describes."""
    try:
        run_model = json.loads((run_dir / "config.json").read_text()).get("model", {})
    except (OSError, ValueError, AttributeError):
        return                                   # no readable config.json: the checkpoint decides
    ckpt_model = ckpt_config.get("model", {}) if isinstance(ckpt_config, dict) else {}
    if not (isinstance(run_model, dict) and isinstance(ckpt_model, dict)):
        return
    # both in today's terms: a resumed old run's config.json is already upgraded, its checkpoints not
    from learner.checkpoint import upgrade_model_dict
    run_model, ckpt_model = upgrade_model_dict(run_model), upgrade_model_dict(ckpt_model)
    speed_only = ("encoder_dtype", "compile_encoder")
    for key in sorted(set(run_model) | set(ckpt_model)):
        if key not in speed_only and key in run_model and key in ckpt_model \
                and run_model[key] != ckpt_model[key]:
            raise EvaluationInputError(
                f"the newest checkpoint of {run_dir} ({path.name}) has model {key} {ckpt_model[key]!r} but the "
                f"run's config.json has {run_model[key]!r}; name the checkpoint file to evaluate it anyway")
