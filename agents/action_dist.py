"""The policy's action distribution: one categorical head per action component
(docs/design.md#the-agent).

An *action layout* ``dims = (n_1, ..., n_K)`` describes the action space: ``(n,)`` for
gymnasium's ``Discrete(n)`` (every env family but one), ``tuple(nvec)`` for
``MultiDiscrete(nvec)``. The policy's logits stay one tensor ``[..., sum(dims)]``, cut
into K consecutive blocks, block ``k`` the logits of component ``k``. An action is int64
``[...]`` for one component (a plain index, as before layouts existed) and ``[..., K]``
for K > 1 (component ``k`` in ``[0, n_k)``).

The components are independent given the observation (a factored categorical)::

    pi(a | x)     = prod_k softmax(l_k)[a_k]
    log pi(a | x) = sum_k log_softmax(l_k)[a_k]    # so pi/mu = prod_k pi_k/mu_k in V-trace
    H(pi(. | x))  = sum_k H(softmax(l_k))

Every place that samples, takes the argmax, or computes log-probabilities or the
entropy calls these functions (the agent, V-trace, the losses, the evaluation). For a
one-component layout each reduces to the plain categorical computation, bit for bit the
code that existed before layouts.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

ActionDims = Tuple[int, ...]

__all__ = ["ActionDims", "as_action_dims", "dims_or_single", "num_logits", "action_shape", "split_logits", "sample",
           "greedy", "log_prob", "entropy", "check_actions"]


def as_action_dims(dims: Union[int, Sequence[int]]) -> ActionDims:
    """The layout as a tuple of positive ints: an int ``n`` is ``(n,)``; ValueError otherwise."""
    if isinstance(dims, bool):
        raise ValueError(f"an action layout must be an int or a sequence of ints, got {dims!r}")
    if isinstance(dims, int):
        dims = (dims,)
    try:
        out = tuple(dims)
    except TypeError:
        raise ValueError(f"an action layout must be an int or a sequence of ints, got {dims!r}") from None
    if not out or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in out):
        raise ValueError(f"an action layout must be one or more positive ints, got {dims!r}")
    return out


def dims_or_single(action_dims: Optional[Union[int, Sequence[int]]], width: int) -> ActionDims:
    """The layout ``action_dims`` (:func:`as_action_dims`), or one categorical over ``width``
    logits, ``(width,)``, when it is None (the default everywhere a layout is optional)."""
    return (int(width),) if action_dims is None else as_action_dims(action_dims)


def num_logits(dims: ActionDims) -> int:
    """Width of the logits: ``sum(dims)``."""
    return int(sum(dims))


def action_shape(dims: ActionDims) -> Tuple[int, ...]:
    """Shape of one action: ``()`` for one component, ``(K,)`` for K > 1."""
    return () if len(dims) == 1 else (len(dims),)


def split_logits(logits: torch.Tensor, dims: ActionDims) -> Tuple[torch.Tensor, ...]:
    """``[..., sum(dims)]`` -> one ``[..., n_k]`` view per component (the logits themselves for one)."""
    if logits.shape[-1] != num_logits(dims):
        raise ValueError(f"logits have {logits.shape[-1]} entries in their last dimension; the action "
                         f"layout {tuple(dims)} needs {num_logits(dims)}")
    if len(dims) == 1:
        return (logits,)
    return tuple(torch.split(logits, list(dims), dim=-1))


def _components(actions: torch.Tensor, dims: ActionDims) -> Tuple[torch.Tensor, ...]:
    return (actions,) if len(dims) == 1 else tuple(actions.unbind(-1))


def sample(logits: torch.Tensor, dims: ActionDims,
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One action per row of ``logits`` ``[..., sum(dims)]`` -> int64 ``[...]`` or ``[..., K]``.

    Sampled from ``softmax`` in the logits' dtype, one ``torch.multinomial`` call per
    component, in component order, from ``generator`` (default: torch's global one). A
    component whose probabilities are not finite (a policy whose weights went non-finite)
    is sampled uniformly instead of raising: the learner sees the non-finite logits and
    stops the run.
    """
    lead = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1])                              # [M, sum(dims)]
    picks = []
    for part in split_logits(flat, dims):
        probs = F.softmax(part, dim=-1)                                      # [M, n_k]
        bad = ~torch.isfinite(probs).all(dim=-1, keepdim=True)               # [M, 1]
        probs = torch.where(bad, torch.full_like(probs, 1.0 / probs.shape[-1]), probs)
        picks.append(torch.multinomial(probs, 1, generator=generator))       # [M, 1]
    if len(dims) == 1:
        return picks[0].view(lead)
    return torch.cat(picks, dim=-1).view(*lead, len(dims))


def greedy(logits: torch.Tensor, dims: ActionDims) -> torch.Tensor:
    """The most likely action: the argmax of each component -> int64 ``[...]`` or ``[..., K]``."""
    parts = split_logits(logits, dims)
    if len(dims) == 1:
        return logits.argmax(dim=-1)
    return torch.stack([p.argmax(dim=-1) for p in parts], dim=-1)


def log_prob(logits: torch.Tensor, actions: torch.Tensor, dims: ActionDims) -> torch.Tensor:
    """``log pi(a | x) = sum_k log_softmax(l_k)[a_k]``: logits ``[..., sum(dims)]``, integer
    actions ``[...]`` (one component) or ``[..., K]`` -> ``[...]``; differentiable in the logits."""
    total = None
    for part, a in zip(split_logits(logits, dims), _components(actions, dims)):
        lp = F.log_softmax(part, dim=-1).gather(-1, a.long().unsqueeze(-1)).squeeze(-1)
        total = lp if total is None else total + lp
    return total


def entropy(logits: torch.Tensor, dims: ActionDims) -> torch.Tensor:
    """``H = sum_k -sum_a pi_k(a) log pi_k(a)``: logits ``[..., sum(dims)]`` -> ``[...]``."""
    total = None
    for part in split_logits(logits, dims):
        log_pi = F.log_softmax(part, dim=-1)
        h = -(log_pi.exp() * log_pi).sum(dim=-1)
        total = h if total is None else total + h
    return total


def check_actions(actions: torch.Tensor, dims: ActionDims, name: str = "actions") -> None:
    """TypeError/ValueError (one line) unless ``actions`` (shape ``[...]`` or ``[..., K]``,
    checked by the caller) is an integer tensor whose component ``k`` lies in ``[0, n_k)``."""
    if actions.is_floating_point() or actions.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {actions.dtype}")
    if actions.numel() == 0:
        return
    if len(dims) == 1:
        lo, hi = int(actions.min()), int(actions.max())
        if lo < 0 or hi >= dims[0]:
            raise ValueError(f"{name} must lie in [0, {dims[0]}) for {dims[0]} logits, "
                             f"got values in [{lo}, {hi}]")
        return
    flat = actions.reshape(-1, len(dims))
    lo, hi = flat.min(dim=0).values.tolist(), flat.max(dim=0).values.tolist()
    for k, n in enumerate(dims):
        if lo[k] < 0 or hi[k] >= n:
            raise ValueError(f"{name} component {k} must lie in [0, {n}) (action layout {tuple(dims)}), "
                             f"got values in [{lo[k]}, {hi[k]}]")
