"""The learner: re-run the agent over a batch of unrolls and take one V-trace step.

Data flow: ``batch {key: [T+1, B, ...]}`` + ``initial_core_state {name: [B, ...]}``
-> device (pinned, non-blocking on CUDA) -> ``agent(batch, state)`` (the core is
re-run from the state the actor had before entry 0, with the done-resets) ->
``impala_loss`` (V-trace, policy gradient, baseline, entropy) -> RMSProp step with
linear learning-rate annealing and gradient-norm clipping.

A non-finite loss or gradient skips the update (counted); so does an optimiser step
that leaves a parameter non-finite (finite gradients times a huge step): it is undone
from a copy of the parameters and optimiser state taken before the step.
``max_nonfinite_in_row`` skipped updates in a row raise :class:`NonFiniteError` so the
run stops with the last good checkpoint intact. Non-finite logits no longer crash the
forward pass (the agent samples uniformly where its probabilities are not finite). :meth:`Learner.state_dict` holds everything needed for a
bit-identical resume: parameters, optimiser, scheduler, counters and RNG states.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from agents.core import set_core_diagnostics
from learner.losses import impala_loss


@dataclass
class LearnerConfig:
    learning_rate: float = field(default=6e-4, metadata={"help": "RMSProp learning rate (annealed linearly to 0)"})
    anneal_lr: bool = field(default=True, metadata={"help": "anneal the learning rate linearly to 0 over total_steps"})
    rmsprop_alpha: float = field(default=0.99, metadata={"help": "RMSProp smoothing constant"})
    rmsprop_eps: float = field(default=0.01, metadata={"help": "RMSProp epsilon"})
    rmsprop_momentum: float = field(default=0.0, metadata={"help": "RMSProp momentum"})
    rmsprop_init: float = field(default=0.0, metadata={
        "help": "initial value of RMSProp's mean-square accumulator: 0 is PyTorch's (the first "
                "steps are about 10 x lr on every weight), 1 is TensorFlow 1's, which the IMPALA "
                "paper's code used (the first steps are plain SGD, warming up to RMSProp over "
                "about 1/(1-alpha) x 5 updates)"})
    grad_norm_clip: float = field(default=40.0, metadata={"help": "global gradient-norm clip (0 = off)"})
    entropy_cost: float = field(default=0.01, metadata={"help": "weight of the entropy regulariser"})
    baseline_cost: float = field(default=0.5, metadata={"help": "weight of the value (baseline) loss"})
    discount: float = field(default=0.99, metadata={"help": "discount factor gamma"})
    clip_rho_threshold: float = field(default=1.0, metadata={"help": "V-trace rho-bar (0 = no clipping)"})
    clip_pg_rho_threshold: float = field(default=1.0, metadata={"help": "V-trace rho-bar of the policy-gradient advantage (0 = no clipping)"})
    max_nonfinite_in_row: int = field(default=10, metadata={"help": "stop the run after this many skipped updates in a row (non-finite loss, gradient or parameters)"})
    learner_threads: int = field(default=0, metadata={"help": "torch threads of the learner (0 = by the thread rule: the cores the actor "
                "processes leave on a CPU learner, up to 2 for a GPU learner; see launch/threads.py)"})
    core_diagnostics: bool = field(default=False, metadata={
        "help": "log fast-weight diagnostics of the core (core/<layer>/<name>, e.g. the SRWM's input, query "
                "and key entropies) and the gradient norm of each parameter group (grad_norm/<group>); "
                "costs about one extra forward of the core's fast-weight op per update"})


def validate_learner_config(cfg: LearnerConfig) -> None:
    checks = [
        ("learning_rate", cfg.learning_rate > 0),
        ("rmsprop_alpha", 0 <= cfg.rmsprop_alpha < 1),
        ("rmsprop_eps", cfg.rmsprop_eps > 0),
        ("rmsprop_momentum", cfg.rmsprop_momentum >= 0),
        ("rmsprop_init", cfg.rmsprop_init >= 0),
        ("grad_norm_clip", cfg.grad_norm_clip >= 0),
        ("entropy_cost", cfg.entropy_cost >= 0),
        ("baseline_cost", cfg.baseline_cost >= 0),
        ("discount", 0 <= cfg.discount <= 1),
        ("clip_rho_threshold", cfg.clip_rho_threshold >= 0),
        ("clip_pg_rho_threshold", cfg.clip_pg_rho_threshold >= 0),
        ("max_nonfinite_in_row", cfg.max_nonfinite_in_row >= 1),
        ("learner_threads", cfg.learner_threads >= 0),
    ]
    for name, ok in checks:
        if not ok:
            raise ValueError(f"--{name.replace('_', '-')} has an invalid value {getattr(cfg, name)!r}")


class NonFiniteError(RuntimeError):
    """Too many non-finite losses or gradients in a row."""


def rng_state() -> dict:
    """Torch, numpy and python RNG states as tensors and plain data (weights_only-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]),
                   "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        out["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def parameter_group(name: str) -> str:
    """The ``grad_norm/<group>`` a parameter belongs to: ``encoder``, ``heads`` (policy and
    value), ``core.input_proj``, per fast-weight layer i ``core.layer{i}.<slow weight>``
    (``W_y``, ``W_q``, ``W_k``, ``W_b``, DeltaNet's ``slow``) and ``core.layer{i}.rest``
    (input norm, output projection, feed-forward block), else ``core``."""
    parts = name.split(".")
    if parts[0] == "encoder":
        return "encoder"
    if parts[0] in ("policy", "baseline"):
        return "heads"
    if parts[0] != "core" or len(parts) < 2:
        return parts[0]
    if parts[1] == "input_proj":
        return "core.input_proj"
    if parts[1] == "layers" and len(parts) >= 4 and parts[2].isdigit():
        slow = parts[3] if parts[3] in ("W_y", "W_q", "W_k", "W_b", "slow") else "rest"
        return f"core.layer{parts[2]}.{slow}"
    return "core"


def _none_if_zero(x: float) -> Optional[float]:
    return None if x == 0 else x


def _prefill_rmsprop(optimizer: torch.optim.RMSprop, value: float) -> None:
    """Start every mean-square accumulator at ``value`` (TensorFlow 1 starts it at 1; PyTorch
    at 0, creating the state at the first step). The state is the one PyTorch would create,
    so checkpoints and ``load_state_dict`` are unaffected."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state[p]
            st["step"] = torch.zeros((), dtype=torch.float32)
            st["square_avg"] = torch.full_like(p, value, memory_format=torch.preserve_format)
            if group["momentum"] > 0:
                st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["centered"]:
                st["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)


class Learner:
    def __init__(self, cfg: LearnerConfig, agent: nn.Module, *, total_steps: int,
                 steps_per_update: int, device: torch.device | str = "cpu", reward_clip: float = 1.0):
        self.cfg = cfg
        self.reward_clip = reward_clip     # the model's --reward-clip: one clipping for input and loss
        self.device = torch.device(device)
        self.agent = agent.to(self.device).train()
        self.total_steps = total_steps
        self.steps_per_update = steps_per_update
        self.optimizer = torch.optim.RMSprop(
            self.agent.parameters(), lr=cfg.learning_rate, alpha=cfg.rmsprop_alpha,
            eps=cfg.rmsprop_eps, momentum=cfg.rmsprop_momentum)
        if cfg.rmsprop_init > 0:
            _prefill_rmsprop(self.optimizer, cfg.rmsprop_init)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.steps = 0                 # environment steps trained on (T x B per update)
        self.updates = 0               # optimiser steps taken
        self.skipped_updates = 0       # non-finite updates skipped, in total
        self.nonfinite_in_row = 0
        self._backup: Optional[list] = None   # parameters and optimiser state before a step

    def _lr_factor(self, epoch: int) -> float:
        if not self.cfg.anneal_lr:
            return 1.0
        done = min(epoch * self.steps_per_update, self.total_steps)
        return max(1.0 - done / self.total_steps, 0.0)

    def to_device(self, batch: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor]):
        nb = self.device.type == "cuda"
        return ({k: v.to(self.device, non_blocking=nb) for k, v in batch.items()},
                {k: v.to(self.device, non_blocking=nb) for k, v in state.items()})

    def step(self, batch: Dict[str, torch.Tensor], initial_state: Dict[str, torch.Tensor],
             *, loss_hook=None) -> Dict[str, float]:
        """One update on ``batch`` ``{key: [T+1, B, ...]}`` from ``initial_state``."""
        cfg = self.cfg
        batch, initial_state = self.to_device(batch, initial_state)
        T, B = batch["reward"].shape[0] - 1, batch["reward"].shape[1]
        inputs = {k: batch[k] for k in ("obs", "reward", "done", "task")}
        if cfg.core_diagnostics:
            set_core_diagnostics(self.agent.core, True)
        outputs, _ = self.agent(inputs, initial_state)
        losses = impala_loss(
            outputs, batch, discount=cfg.discount, baseline_cost=cfg.baseline_cost,
            entropy_cost=cfg.entropy_cost, reward_clip=_none_if_zero(self.reward_clip),
            clip_rho_threshold=_none_if_zero(cfg.clip_rho_threshold),
            clip_pg_rho_threshold=_none_if_zero(cfg.clip_pg_rho_threshold),
            action_dims=self.agent.action_dims)
        total = losses["total_loss"]
        if loss_hook is not None:          # fault injection in tests
            total = loss_hook(total)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg.core_diagnostics:
            diagnostics = self.diagnostics()                 # gradient norms before clipping
            set_core_diagnostics(self.agent.core, False)     # only the learner's own forward records
        params = [p for p in self.agent.parameters() if p.grad is not None]
        if cfg.grad_norm_clip > 0:
            grad_norm = nn.utils.clip_grad_norm_(params, cfg.grad_norm_clip)
        else:
            grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        finite = bool(torch.isfinite(total)) and bool(torch.isfinite(grad_norm))
        stats = {k: float(v.detach()) for k, v in losses.items() if torch.is_tensor(v) and v.dim() == 0}
        stats.update(grad_norm=float(grad_norm), learning_rate=self.optimizer.param_groups[0]["lr"],
                     entropy=-stats["entropy_loss"] / (T * B))      # mean policy entropy per step (nats)
        if cfg.core_diagnostics:
            stats.update(diagnostics)
        what = "loss or gradient"
        if finite:
            saved = self._save_before_step()
            self.optimizer.step()
            finite = self.parameters_finite()
            if finite:
                self.scheduler.step()
                self.updates += 1
                self.steps += T * B
                self.nonfinite_in_row = 0
            else:
                self._undo_step(saved)
                what = "parameters after the optimiser step (the step was undone)"
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_updates += 1
            self.nonfinite_in_row += 1
            if self.nonfinite_in_row >= cfg.max_nonfinite_in_row:
                raise NonFiniteError(f"{self.nonfinite_in_row} non-finite updates in a row, the last one "
                                     f"non-finite in its {what} (loss {float(total.detach())}, grad norm "
                                     f"{float(grad_norm)}, learning rate {stats['learning_rate']:g})")
        stats.update(skipped_updates=self.skipped_updates, update_ok=float(finite))
        return stats

    # -- diagnostics (--core-diagnostics) ---------------------------------------------
    def diagnostic_columns(self) -> list:
        """Log columns of :meth:`diagnostics` (empty when --core-diagnostics is off)."""
        if not self.cfg.core_diagnostics:
            return []
        groups = dict.fromkeys(parameter_group(n) for n, _ in self.agent.named_parameters())
        return ([f"core/{n}" for n in self.agent.core.diagnostic_names()]
                + [f"grad_norm/{g}" for g in groups])

    def diagnostics(self) -> Dict[str, float]:
        """``core/<layer>/<name>`` from the core's last forward and ``grad_norm/<group>``: the
        norm of each parameter group's gradient before clipping (call after backward)."""
        out = {f"core/{k}": v for k, v in self.agent.core.diagnostics().items()}
        sq: Dict[str, float] = {}
        for name, p in self.agent.named_parameters():
            g = parameter_group(name)
            sq[g] = sq.get(g, 0.0) + (float(p.grad.detach().double().pow(2).sum())
                                      if p.grad is not None else 0.0)
        out.update({f"grad_norm/{g}": v ** 0.5 for g, v in sq.items()})
        return out

    # -- non-finite parameters ---------------------------------------------------------
    def parameters_finite(self) -> bool:
        """One fused check: every parameter is finite (x * 0 is 0 for finite x, NaN otherwise)."""
        params = [p.detach() for p in self.agent.parameters()]
        if not params:
            return True
        zeros = torch._foreach_mul(params, 0.0)
        return bool(torch.isfinite(torch.stack(torch._foreach_norm(zeros))).all())

    def _optimizer_tensors(self) -> list:
        out = []
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                for _, v in sorted(self.optimizer.state.get(p, {}).items()):
                    if torch.is_tensor(v):
                        out.append(v)
        return out

    def _save_before_step(self):
        """Copy the parameters and optimiser state into a reused buffer; returns what to undo."""
        tensors = [p.detach() for p in self.agent.parameters()] + self._optimizer_tensors()
        if (self._backup is None or len(self._backup) != len(tensors)
                or any(b.shape != t.shape or b.dtype != t.dtype for b, t in zip(self._backup, tensors))):
            self._backup = [t.clone() for t in tensors]
        else:
            torch._foreach_copy_(self._backup, tensors)
        had_state = {p for p in self.optimizer.state if self.optimizer.state[p]}
        return tensors, had_state

    def _undo_step(self, saved) -> None:
        tensors, had_state = saved
        with torch.no_grad():
            torch._foreach_copy_(tensors, self._backup[:len(tensors)])
        for p in list(self.optimizer.state):
            if p not in had_state:           # state the failed step created (the first step)
                del self.optimizer.state[p]

    # -- checkpointing -------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": {k: v.detach().cpu() for k, v in self.agent.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "counters": {"steps": self.steps, "updates": self.updates,
                         "skipped_updates": self.skipped_updates,
                         "nonfinite_in_row": self.nonfinite_in_row},
            "rng": rng_state(),
        }

    def load_state_dict(self, sd: dict, *, restore_rng: bool = True) -> None:
        self.agent.load_state_dict(sd["model"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.scheduler.load_state_dict(sd["scheduler"])
        # the learning rate, alpha and eps are this run's config (a resume may change them,
        # e.g. --learning-rate); the saved state carries the optimiser's statistics
        cfg = self.cfg
        self.scheduler.base_lrs = [cfg.learning_rate for _ in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group.update(initial_lr=cfg.learning_rate, alpha=cfg.rmsprop_alpha, eps=cfg.rmsprop_eps,
                         lr=cfg.learning_rate * self._lr_factor(self.scheduler.last_epoch))
        c = sd["counters"]
        self.steps, self.updates = int(c["steps"]), int(c["updates"])
        self.skipped_updates = int(c["skipped_updates"])
        self.nonfinite_in_row = int(c["nonfinite_in_row"])
        if restore_rng:
            set_rng_state(sd["rng"])
