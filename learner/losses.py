"""The IMPALA actor-critic losses (Espeholt et al. 2018, section 4.2), as pure functions.

With V-trace targets ``v_s`` and advantages ``A_s = rho_pg_s (r_s + gamma_s v_{s+1} - V(x_s))``
(see :mod:`learner.vtrace`), the learner minimises::

    L = L_pg + baseline_cost * L_baseline + entropy_cost * L_entropy
    L_pg       = sum_{s,b} -log pi(a_s | x_s) * A_s          # A_s a constant
    L_baseline = sum_{s,b} 0.5 * (v_s - V(x_s))^2            # v_s a constant
    L_entropy  = sum_{s,b} sum_a pi(a | x_s) log pi(a | x_s)  # negative entropy

With an action layout of K > 1 components (gymnasium ``MultiDiscrete``,
:mod:`agents.action_dist`) the policy is one categorical per component:
``log pi(a | x) = sum_k log pi_k(a_k | x)`` and ``sum_a pi log pi`` is the sum of the
components' negative entropies.

Reduction: following torchbeast, every loss is **summed** over time and batch
(``reduction="sum"``, the default), so its scale grows with ``T * B`` and the
learning rate and gradient clipping of the reference configurations
(docs/design.md#reference-configurations) assume that. ``reduction="mean"`` divides by
``T * B`` instead.

Batch convention of :func:`impala_loss` (time-major; one unroll has T+1 entries,
entry 0 of an unroll being entry T of the previous one). Entry ``t`` holds:

* ``obs_t`` (not used here) and ``done[t]``: true when ``obs_t`` is the first
  observation of a new episode;
* ``reward[t]``: the reward received on arriving at ``obs_t``;
* the behaviour policy's outputs computed **on** ``obs_t``: ``action[t]``,
  ``policy_logits[t]`` (and the actor's baseline, unused by the loss).

So for the T learning steps ``s = 0..T-1``: ``a_s = action[:-1]``, behaviour logits
``policy_logits[:-1]``, ``r_s = reward[1:]``, ``gamma_s = discount * (1 - done[1:])``,
``V(x_s) = learner baseline[:-1]``, bootstrap ``V(x_T) = learner baseline[-1]`` and
target logits ``learner policy_logits[:-1]``. Note that torchbeast stores the
agent's outputs one entry later (its entry t+1 holds the action taken on obs_t, so
it slices ``batch[1:]``); code ported from it must shift the actor buffers.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import torch

from agents.action_dist import action_shape, as_action_dims, dims_or_single, entropy, num_logits
from learner import vtrace
from learner.vtrace import action_log_probs

__all__ = ["policy_gradient_loss", "baseline_loss", "entropy_loss", "impala_loss"]

_REDUCTIONS = ("sum", "mean")


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return x.sum()
    if reduction == "mean":
        return x.mean()
    raise ValueError(f"unknown reduction {reduction!r}; choose from {', '.join(_REDUCTIONS)}")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose from {', '.join(_REDUCTIONS)}")


def policy_gradient_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
                         reduction: str = "sum", *,
                         action_dims: Optional[Sequence[int]] = None) -> torch.Tensor:
    """``sum_{t,b} -log pi(a_t|x_t) * A_t`` (or the mean over ``T * B``).

    logits: ``[T, B, A]``; actions: integer ``[T, B]`` (``[T, B, K]`` for an action layout
    of K > 1 components, whose ``log pi`` is the sum over components; None: one
    categorical over the A logits); advantages: ``[T, B]``, treated as a constant
    (detached), so the gradient flows only into ``logits``.
    """
    _check_reduction(reduction)
    lead = actions.shape if action_dims is None or len(as_action_dims(action_dims)) == 1 \
        else actions.shape[:-1]
    if advantages.shape != lead:
        raise ValueError(f"advantages must be [T, B] like actions {list(lead)}, "
                         f"got {list(advantages.shape)}")
    cross_entropy = -action_log_probs(logits, actions, action_dims)      # [T, B]
    return _reduce(cross_entropy * advantages.detach(), reduction)


def baseline_loss(advantages: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """``0.5 * sum_{t,b} advantages^2`` (or the mean), with ``advantages = vs - V(x_t)`` ``[T, B]``."""
    _check_reduction(reduction)
    return _reduce(0.5 * advantages ** 2, reduction)


def entropy_loss(logits: torch.Tensor, reduction: str = "sum", *,
                 action_dims: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Negative entropy ``sum_{t,b} sum_a pi(a) log pi(a)`` (or the mean over ``T * B``).

    logits: ``[T, B, A]``; for an action layout of K > 1 components the entropy is the
    sum of the components' entropies (None: one categorical over the A logits).
    Minimising it raises the policy's entropy.
    """
    _check_reduction(reduction)
    if logits.dim() != 3:
        raise ValueError(f"logits must be [T, B, A], got {list(logits.shape)}")
    dims = dims_or_single(action_dims, logits.shape[-1])
    neg_entropy = -entropy(logits, dims)                                 # [T, B]
    return _reduce(neg_entropy, reduction)


def _require(d: Mapping[str, torch.Tensor], name: str, key: str) -> torch.Tensor:
    if key not in d:
        raise KeyError(f"{name} has no {key!r} entry (keys: {', '.join(sorted(d))})")
    return d[key]


def impala_loss(learner_outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor], *,
                discount: float = 0.99, baseline_cost: float = 0.5, entropy_cost: float = 0.01,
                reward_clip: Optional[float] = 1.0, clip_rho_threshold: Optional[float] = 1.0,
                clip_pg_rho_threshold: Optional[float] = 1.0, lambda_: float = 1.0,
                reduction: str = "sum",
                action_dims: Optional[Sequence[int]] = None) -> Dict[str, torch.Tensor]:
    """V-trace actor-critic loss for one batch of unrolls (see the module docstring).

    Args:
        learner_outputs: the learner's re-run of the policy over the unrolls:
            ``policy_logits`` ``[T+1, B, A]`` and ``baseline`` ``[T+1, B]``.
        batch: the actors' unrolls: ``action`` (integer ``[T+1, B]``, or ``[T+1, B, K]`` for an
            action layout of K > 1 components), ``policy_logits`` (behaviour, ``[T+1, B, A]``),
            ``reward`` ``[T+1, B]``, ``done`` ``[T+1, B]``.
        discount: gamma. baseline_cost, entropy_cost: weights of those terms.
        reward_clip: rewards are clamped to ``[-reward_clip, reward_clip]`` (None: no clipping).
        clip_rho_threshold, clip_pg_rho_threshold, lambda_: V-trace settings.
        reduction: ``"sum"`` over time and batch (torchbeast) or ``"mean"``.
        action_dims: the action layout (:mod:`agents.action_dist`): log-probabilities and
            entropies are sums over its components; None: one categorical over the A logits.

    Returns:
        ``{"pg_loss", "baseline_loss", "entropy_loss", "total_loss"}``: scalar tensors, the
        three terms *unweighted* (torchbeast logs them already multiplied by their cost) and
        ``total_loss = pg_loss + baseline_cost * baseline_loss + entropy_cost * entropy_loss``.
        Gradients flow into the learner's logits and baseline only; the V-trace targets
        are constants.
    """
    _check_reduction(reduction)
    if not 0.0 <= discount <= 1.0:
        raise ValueError(f"discount must be in [0, 1], got {discount!r}")
    if reward_clip is not None and not reward_clip > 0:
        raise ValueError(f"reward_clip must be > 0 or None, got {reward_clip!r}")

    target_logits = _require(learner_outputs, "learner_outputs", "policy_logits")   # [T+1, B, A]
    learner_baseline = _require(learner_outputs, "learner_outputs", "baseline")     # [T+1, B]
    action = _require(batch, "batch", "action")                                     # [T+1, B]
    behavior_logits = _require(batch, "batch", "policy_logits")                     # [T+1, B, A]
    reward = _require(batch, "batch", "reward")                                     # [T+1, B]
    done = _require(batch, "batch", "done")                                         # [T+1, B]

    if target_logits.dim() != 3 or target_logits.shape[0] < 2:
        raise ValueError(f"learner_outputs['policy_logits'] must be [T+1, B, A] with T >= 1, "
                         f"got {list(target_logits.shape)}")
    T1, B, A = target_logits.shape
    dims = dims_or_single(action_dims, A)
    if num_logits(dims) != A:
        raise ValueError(f"learner_outputs['policy_logits'] have A = {A} entries but the action layout "
                         f"{dims} needs {num_logits(dims)}")
    for name, x, shape in (("learner_outputs['baseline']", learner_baseline, (T1, B)),
                           ("batch['action']", action, (T1, B) + action_shape(dims)),
                           ("batch['policy_logits']", behavior_logits, (T1, B, A)),
                           ("batch['reward']", reward, (T1, B)),
                           ("batch['done']", done, (T1, B))):
        if x.shape != shape:
            raise ValueError(f"{name} must be {list(shape)} to match learner_outputs['policy_logits'] "
                             f"{list(target_logits.shape)}, got {list(x.shape)}")

    values = learner_baseline[:-1]                                        # [T, B]  V(x_s)
    bootstrap_value = learner_baseline[-1]                                # [B]     V(x_T)
    r_t = reward[1:].to(values.dtype)                                     # [T, B]
    if reward_clip is not None:
        r_t = r_t.clamp(-reward_clip, reward_clip)
    not_done = 1.0 - done[1:].to(values.dtype)                            # [T, B]
    discount_t = discount * not_done                                      # [T, B]
    target_logits_t = target_logits[:-1]                                  # [T, B, A]
    actions_t = action[:-1]                                               # [T, B] (or [T, B, K])

    vtrace_returns = vtrace.from_logits(
        behavior_policy_logits=behavior_logits[:-1], target_policy_logits=target_logits_t,
        actions=actions_t, discounts=discount_t, rewards=r_t, values=values,
        bootstrap_value=bootstrap_value, clip_rho_threshold=clip_rho_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold, lambda_=lambda_, action_dims=dims)

    pg = policy_gradient_loss(target_logits_t, actions_t, vtrace_returns.pg_advantages, reduction,
                              action_dims=dims)
    base = baseline_loss(vtrace_returns.vs - values, reduction)
    ent = entropy_loss(target_logits_t, reduction, action_dims=dims)
    total = pg + baseline_cost * base + entropy_cost * ent
    return {"pg_loss": pg, "baseline_loss": base, "entropy_loss": ent, "total_loss": total}
