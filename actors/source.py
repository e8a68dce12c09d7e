"""Rollout sources: where the learner loop gets its batches from.

A source hides the actor backend from the trainer. Interface:

* ``start()`` / ``stop()``;
* ``get_batch(batch_size, timeout) -> (batch {key: [T+1, B, ...]}, initial_state
  {name: [B, ...]}, info) | None`` where ``info`` has ``policy_versions`` [B];
* ``publish(agent) -> version``: make new parameters visible to the actors;
* ``drain_episodes() -> list[EpisodeInfo]`` and ``drain_timing() -> dict``;
* ``restarts`` and ``queue_sizes()`` for logging.

:class:`LocalRolloutSource` is the local-process backend: shared-memory buffers, a
:class:`~actors.pool.LocalActorPool` and a queue of full rows. Full groups are split
into rows, any ``B`` rows make a batch (so B need not be a multiple of the envs per
actor), and a group is handed back to its actor once all its rows are copied out.
"""

from __future__ import annotations

from collections import deque
from typing import Dict, List, Optional

import torch

from actors.buffers import BufferLayout, RolloutBuffers
from actors.params import SharedParams
from actors.pool import LocalActorPool


def merge_timing(acc: Dict[str, float], t: Dict[str, float]) -> None:
    for k, v in t.items():
        acc[k] = acc.get(k, 0.0) + v


class RolloutSource:
    """Episode and timing bookkeeping shared by every backend (see the module docstring)."""

    def __init__(self):
        self._episodes: list = []
        self._timing: Dict[str, float] = {}

    def _record(self, episodes: list, timing: Dict[str, float]) -> None:
        """Keep what an actor reported with a finished unroll until the trainer drains it."""
        self._episodes.extend(episodes)
        merge_timing(self._timing, timing)

    def drain_episodes(self) -> list:
        out, self._episodes = self._episodes, []
        return out

    def drain_timing(self) -> Dict[str, float]:
        out, self._timing = self._timing, {}
        return out


class LocalRolloutSource(RolloutSource):
    def __init__(self, config, agent, *, obs_shape, obs_dtype, num_actions, num_tasks,
                 pin_memory: bool = False, inference_server=None):
        super().__init__()
        a = config.actor
        self.layout = BufferLayout(a.num_actors, a.num_buffers, a.envs_per_actor, a.unroll_length)
        self.buffers = RolloutBuffers(self.layout, obs_shape, obs_dtype, num_actions, agent.state_spec())
        cpu_agent = agent if next(agent.parameters()).device.type == "cpu" else None
        if cpu_agent is None:
            import copy
            cpu_agent = copy.deepcopy(agent).cpu()
        self.params = SharedParams(cpu_agent)
        self.inference_server = inference_server
        self.pool = LocalActorPool(config, self.buffers, self.params, obs_shape=obs_shape,
                                   obs_dtype=obs_dtype, num_actions=num_actions, num_tasks=num_tasks,
                                   inference_server=inference_server)
        self.pin_memory = pin_memory
        self.pending: deque = deque()                  # (group, row) of full rows, oldest first
        self.remaining: Dict[int, int] = {}            # group -> rows not yet copied out

    @property
    def restarts(self) -> int:
        return self.pool.restarts

    def start(self) -> None:
        if self.inference_server is not None:
            self.inference_server.start()
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()
        if self.inference_server is not None:
            self.inference_server.stop()

    def publish(self, agent) -> int:
        version = self.params.publish(agent)
        if self.inference_server is not None:
            self.inference_server.update_params(agent, version)
        return version

    @property
    def version(self) -> int:
        return self.params.version

    def _drain(self, timeout: float) -> None:
        for ev in self.pool.poll(timeout):
            rows = self.layout.rows(ev.group)
            self.pending.extend((ev.group, r) for r in rows)
            self.remaining[ev.group] = len(rows)
            self._record(ev.episodes, ev.timing)

    def get_batch(self, batch_size: int, timeout: float = 0.1):
        self._drain(0.0 if len(self.pending) >= batch_size else timeout)
        if len(self.pending) < batch_size:
            return None
        taken = [self.pending.popleft() for _ in range(batch_size)]
        rows = torch.tensor([r for _, r in taken], dtype=torch.int64)
        batch, state = self.buffers.gather(rows, pin_memory=self.pin_memory)
        groups = torch.tensor([g for g, _ in taken], dtype=torch.int64)
        versions = self.buffers.policy_version.index_select(0, groups).clone()
        for g, _ in taken:
            self.remaining[g] -= 1
            if self.remaining[g] == 0:
                del self.remaining[g]
                self.pool.release(g)
        return batch, state, {"policy_versions": versions}

    def queue_sizes(self) -> Dict[str, float]:
        return {"queue/full_rows": len(self.pending),
                "queue/held_groups": len(self.pool.held),
                "queue/free_groups": self.layout.num_groups - len(self.pool.held)}

    def pids(self) -> List[int]:
        return self.pool.pids()
