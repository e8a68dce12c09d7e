"""Acting policies: run the agent one step at a time for a vector of envs.

:class:`ActingPolicy` is what the actor loop (:class:`actors.actor.UnrollWriter`)
needs; two classes provide it:

* :class:`LocalPolicy` keeps its own copy of the agent and of the core state of every
  env in the actor process (``--inference actor``);
* :class:`actors.inference.InferenceClient` runs the agent on the learner's device,
  where the core state stays resident (``--inference learner``).
"""

from __future__ import annotations

from typing import Dict, Optional, Protocol, Tuple, runtime_checkable

import numpy as np
import torch

from agents.core import State


@runtime_checkable
class ActingPolicy(Protocol):
    """The acting-policy interface of the actor loop (``N`` envs, ``A`` actions).

    * ``carries_state``: False for cores whose state is reset at every unroll start
      (``srwm_no_carry``); the actor then calls ``reset_state()`` before each unroll.
    * ``act(obs, reward, done, task, unroll_start=False) -> (action [N], policy_logits
      [N, A], baseline [N])`` (action [N, K] for a MultiDiscrete layout of K components)
      first resets the state of rows with ``done``, then advances it one step. With
      ``unroll_start`` the inputs are entry 0 of the next unroll: before anything else
      the policy keeps its state as it is (the state before entry 0, before the
      done-resets), the initial core state of that unroll.
    * ``write_initial_state(into, group)``: write the kept state into the
      ``initial_core_state`` rows of the unroll being written. ``into`` ``{name: [N,
      ...]}`` are those rows; ``group`` is their group in the shared rollout buffers, or
      None when they are not in them (the Ray backend's per-unroll tensors). A policy
      that holds the state in this process copies it into ``into``; the inference
      client sends ``group`` and the server copies the state from its device straight
      into those rows of the buffers (``into`` must be the same rows; this process does
      not touch them). Until the first ``unroll_start`` step the kept state is the
      episode-start state.
    * ``reset_state()``: every row back to the episode-start state (the kept state too).
    * ``sync() -> version``: act with the learner's latest parameters from now on;
      returns their version.
    * ``close()``: release what the policy holds (a connection).
    """

    carries_state: bool

    def act(self, obs: np.ndarray, reward: np.ndarray, done: np.ndarray, task: np.ndarray,
            unroll_start: bool = False) -> Tuple[np.ndarray, torch.Tensor, torch.Tensor]: ...

    def write_initial_state(self, into: Dict[str, torch.Tensor], group: Optional[int]) -> None: ...

    def reset_state(self) -> None: ...

    def sync(self) -> int: ...

    def close(self) -> None: ...


class ParameterReader(Protocol):
    """Where a :class:`LocalPolicy` reads the learner's parameters from
    (:class:`actors.params.SharedParams`, :class:`actors.ray_backend.ObjectStoreParams`)."""

    def load_into(self, model: torch.nn.Module, *, last_version: int = -1) -> int: ...


class LocalPolicy:
    """:class:`ActingPolicy` with the agent and the core state in this process."""

    def __init__(self, agent: torch.nn.Module, num_envs: int, shared_params: Optional[ParameterReader] = None):
        self.agent = agent.eval()
        self.num_envs = num_envs
        self.shared_params = shared_params
        self.version = -1
        self.state: State = agent.initial_state(num_envs)
        self.unroll_start_state: State = agent.initial_state(num_envs)   # the kept state (write_initial_state)
        self.carries_state = bool(agent.carries_state)

    def reset_state(self) -> None:
        self.state = self.agent.initial_state(self.num_envs)
        self.unroll_start_state = self.agent.initial_state(self.num_envs)

    def sync(self) -> int:
        if self.shared_params is not None:
            self.version = self.shared_params.load_into(self.agent, last_version=self.version)
        return self.version

    @torch.inference_mode()
    def act(self, obs: np.ndarray, reward: np.ndarray, done: np.ndarray, task: np.ndarray,
            unroll_start: bool = False) -> Tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        if unroll_start:
            self.unroll_start_state = self.state_snapshot()
        inputs = {
            "obs": torch.from_numpy(np.asarray(obs)).unsqueeze(0),                # [1, N, ...]
            "reward": torch.from_numpy(np.asarray(reward, np.float32)).unsqueeze(0),  # [1, N]
            "done": torch.from_numpy(np.asarray(done, bool)).unsqueeze(0),        # [1, N]
            "task": torch.from_numpy(np.asarray(task, np.int64)).unsqueeze(0),    # [1, N]
        }
        out, self.state = self.agent(inputs, self.state, actions="sample")
        return out["action"][0].numpy(), out["policy_logits"][0], out["baseline"][0]

    def write_initial_state(self, into: Dict[str, torch.Tensor], group: Optional[int]) -> None:
        """Copy the kept state into ``into`` (``group`` is not needed here)."""
        for k, v in self.unroll_start_state.items():
            into[k].copy_(v)

    def state_snapshot(self) -> Dict[str, torch.Tensor]:
        """A copy of the running core state (not part of :class:`ActingPolicy`)."""
        return {k: v.clone() for k, v in self.state.items()}

    def close(self) -> None:
        pass
