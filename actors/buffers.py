"""Shared-memory rollout buffers.

Layout: every key is one shared tensor ``[R, T+1, ...]`` with one *row* per
environment unroll. Rows are grouped: actor ``a`` owns ``num_buffers`` groups of
``envs_per_actor`` consecutive rows, and fills one group per unroll (row ``i`` of a
group is env ``i`` of the actor). The learner gathers any ``B`` full rows into a
time-major batch ``[T+1, B, ...]``.

Entry ``t`` of a row holds ``obs_t``, ``reward_t`` (received on arriving at
``obs_t``), ``done_t`` (``obs_t`` starts a new episode), ``task_t`` and the behaviour
policy's outputs computed on ``obs_t``: ``action_t``, ``policy_logits_t``,
``baseline_t``. Entry 0 of unroll k+1 is entry T of unroll k (torchbeast). ``action`` is
``[R, T+1]`` for one action component and ``[R, T+1, K]`` for a MultiDiscrete layout of K.
``initial_core_state`` holds, per row, the core state right before entry 0: one
state per unroll, never one per step (docs/design.md#data-conventions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from agents.action_dist import action_shape, dims_or_single, num_logits
from agents.core import StateSpec

_NP_TO_TORCH = {"uint8": torch.uint8, "float32": torch.float32, "float64": torch.float32,
                "int64": torch.int64, "int32": torch.int32, "bool": torch.bool}


def torch_dtype(np_dtype: str) -> torch.dtype:
    try:
        return _NP_TO_TORCH[str(np.dtype(np_dtype))]
    except KeyError:
        raise ValueError(f"unsupported observation dtype {np_dtype!r}") from None


def rollout_specs(obs_shape: Tuple[int, ...], obs_dtype: str, num_actions: int,
                  action_dims: Optional[Tuple[int, ...]] = None) -> Dict[str, Tuple[tuple, torch.dtype]]:
    """Per-entry shape and dtype of every rollout key. ``action_dims``: the action layout
    (:mod:`agents.action_dist`; None: one head over ``num_actions``): an action is ``()``
    for one component, ``(K,)`` for K > 1."""
    dims = dims_or_single(action_dims, num_actions)
    if num_logits(dims) != num_actions:
        raise ValueError(f"the action layout {dims} has {num_logits(dims)} logits, not num_actions = {num_actions}")
    return {
        "obs": (tuple(obs_shape), torch_dtype(obs_dtype)),
        "reward": ((), torch.float32),
        "done": ((), torch.bool),
        "task": ((), torch.int64),
        "action": (action_shape(dims), torch.int64),
        "policy_logits": ((num_actions,), torch.float32),
        "baseline": ((), torch.float32),
    }


@dataclass
class BufferLayout:
    num_actors: int
    num_groups_per_actor: int
    envs_per_actor: int
    unroll_length: int

    @property
    def num_groups(self) -> int:
        return self.num_actors * self.num_groups_per_actor

    @property
    def num_rows(self) -> int:
        return self.num_groups * self.envs_per_actor

    def group_id(self, actor: int, slot: int) -> int:
        return actor * self.num_groups_per_actor + slot

    def rows(self, group: int) -> range:
        start = group * self.envs_per_actor
        return range(start, start + self.envs_per_actor)

    def actor_of(self, group: int) -> int:
        return group // self.num_groups_per_actor


class RolloutBuffers:
    """The shared tensors; picklable to spawned processes (torch shares the storage).
    ``action_dims``: the action layout (None: one head over ``num_actions``)."""

    def __init__(self, layout: BufferLayout, obs_shape, obs_dtype: str, num_actions: int,
                 state_spec: StateSpec, *, share_memory: bool = True,
                 action_dims: Optional[Tuple[int, ...]] = None):
        self.layout = layout
        self.action_dims = dims_or_single(action_dims, num_actions)
        R, T1 = layout.num_rows, layout.unroll_length + 1
        self.data: Dict[str, torch.Tensor] = {}
        for key, (shape, dtype) in rollout_specs(obs_shape, obs_dtype, num_actions, self.action_dims).items():
            t = torch.zeros(R, T1, *shape, dtype=dtype)
            self.data[key] = t.share_memory_() if share_memory else t
        self.initial_core_state = state_spec.allocate(R, share_memory=share_memory)
        # per group: the parameter version the actor acted with
        self.policy_version = torch.zeros(layout.num_groups, dtype=torch.int64)
        if share_memory:
            self.policy_version.share_memory_()

    def group_view(self, group: int) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """Views ``[N, T+1, ...]`` of one group's rows and ``[N, ...]`` of its initial states."""
        r = self.layout.rows(group)
        sl = slice(r.start, r.stop)
        return ({k: v[sl] for k, v in self.data.items()},
                {k: v[sl] for k, v in self.initial_core_state.items()})

    def gather(self, rows: torch.Tensor, *, pin_memory: bool = False
               ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """Copy rows out: batch ``{key: [T+1, B, ...]}`` and initial state ``{name: [B, ...]}``."""
        batch = {}
        for k, v in self.data.items():
            x = v.index_select(0, rows).transpose(0, 1).contiguous()   # [T+1, B, ...]
            batch[k] = x.pin_memory() if pin_memory else x
        state = {}
        for k, v in self.initial_core_state.items():
            x = v.index_select(0, rows)                                 # [B, ...]
            state[k] = x.pin_memory() if pin_memory else x
        return batch, state
