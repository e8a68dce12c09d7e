"""Acting policies: run the agent one step at a time for a vector of envs.

:class:`LocalPolicy` keeps its own copy of the agent and of the core state of every
env in the actor process (``--inference actor``). An inference-server client with
the same interface runs the agent on the learner's device instead
(``--inference learner``, see :mod:`actors.inference`). The actor loop only needs:

* ``act(obs, reward, done, task) -> (action [N], policy_logits [N, A], baseline [N])``
  which first resets the state of rows with ``done`` and then advances it;
* ``state_snapshot() -> {name: [N, ...]}``: the core state *before* the next ``act``;
* ``sync() -> version``: refresh the parameters from the learner;
* ``carries_state`` and ``reset_state()``: cores without carry-over across unrolls
  (``srwm_no_carry``) have their state reset at every unroll start.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import torch

from agents.core import State


class LocalPolicy:
    def __init__(self, agent: torch.nn.Module, num_envs: int, shared_params=None):
        self.agent = agent.eval()
        self.num_envs = num_envs
        self.shared_params = shared_params
        self.version = -1
        self.state: State = agent.initial_state(num_envs)
        # False for cores whose state is reset at every unroll start (srwm_no_carry)
        self.carries_state = bool(getattr(agent, "carries_state", True))

    def reset_state(self) -> None:
        self.state = self.agent.initial_state(self.num_envs)

    def sync(self) -> int:
        if self.shared_params is not None:
            self.version = self.shared_params.load_into(self.agent, last_version=self.version)
        return self.version

    @torch.inference_mode()
    def act(self, obs: np.ndarray, reward: np.ndarray, done: np.ndarray, task: np.ndarray
            ) -> Tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        inputs = {
            "obs": torch.from_numpy(np.asarray(obs)).unsqueeze(0),                # [1, N, ...]
            "reward": torch.from_numpy(np.asarray(reward, np.float32)).unsqueeze(0),  # [1, N]
            "done": torch.from_numpy(np.asarray(done, bool)).unsqueeze(0),        # [1, N]
            "task": torch.from_numpy(np.asarray(task, np.int64)).unsqueeze(0),    # [1, N]
        }
        out, self.state = self.agent(inputs, self.state)
        return out["action"][0].numpy(), out["policy_logits"][0], out["baseline"][0]

    def state_snapshot(self) -> Dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.state.items()}

    def close(self) -> None:
        pass


def load_state_rows(dst: Dict[str, torch.Tensor], src: Dict[str, torch.Tensor],
                    rows: Optional[slice] = None) -> None:
    """Copy a state dict into (rows of) another of the same spec."""
    for k, v in src.items():
        if rows is None:
            dst[k].copy_(v)
        else:
            dst[k][rows].copy_(v)
