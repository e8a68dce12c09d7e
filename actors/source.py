"""Rollout sources: where the learner loop gets its batches from.

A source hides the actor backend from the trainer; :class:`RolloutSource` is its
interface. :class:`LocalRolloutSource` is the local-process backend: shared-memory
buffers, a :class:`~actors.pool.LocalActorPool`, a queue of full rows and, with
``--inference learner``, the :class:`~actors.inference.InferenceServer` (given the
buffers, whose ``initial_core_state`` rows it writes). Full groups
are split into rows, any ``B`` rows make a batch (so B need not be a multiple of the
envs per actor), and a group is handed back to its actor once all its rows are copied
out. The Ray backend is :class:`actors.ray_backend.RayRolloutSource`.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Dict, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import torch

from actors.buffers import BufferLayout, RolloutBuffers
from actors.config import ActorConfig
from actors.inference import InferenceServer
from actors.params import SharedParams
from actors.pool import LocalActorPool
from agents.model import ModelConfig
from envs import EnvConfig
from envs.base import EpisodeInfo

Batch = Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], Dict[str, torch.Tensor]]


@runtime_checkable
class RolloutSource(Protocol):
    """What the learner loop needs from an actor backend.

    * ``start()`` / ``stop()`` (``stop`` is safe before ``start`` and twice);
    * ``get_batch(batch_size, timeout) -> (batch {key: [T+1, B, ...]}, initial_state
      {name: [B, ...]}, info) | None`` where ``info["policy_versions"]`` is int64 [B];
    * ``publish(agent) -> version``: make new parameters visible to the actors;
      ``version``: the latest version published;
    * ``drain_episodes()``: the episodes finished since the last call;
      ``drain_timing()``: the actors' seconds per activity (and ``steps``) since then;
    * ``restarts``: actor restarts so far; ``pids()``: local processes a hard exit kills;
    * ``scalar_columns``: the names ``take_scalars()`` returns, logged as they are:
      queue sizes now and the backend's counters since the last call.
    """

    @property
    def restarts(self) -> int: ...

    @property
    def scalar_columns(self) -> Sequence[str]: ...

    @property
    def version(self) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def get_batch(self, batch_size: int, timeout: float = 0.1) -> Optional[Batch]: ...

    def publish(self, agent: torch.nn.Module) -> int: ...

    def drain_episodes(self) -> List[EpisodeInfo]: ...

    def drain_timing(self) -> Dict[str, float]: ...

    def take_scalars(self) -> Dict[str, float]: ...

    def pids(self) -> List[int]: ...


def merge_timing(acc: Dict[str, float], t: Dict[str, float]) -> None:
    for k, v in t.items():
        acc[k] = acc.get(k, 0.0) + v


class Reports:
    """What actors report with their unrolls (episodes, timing), kept until the trainer drains it."""

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


QUEUE_COLUMNS = ("queue/full_rows", "queue/held_groups", "queue/free_groups")
#: the inference server's counters since the last log row (``--inference learner``)
SERVER_COLUMNS = ("inference/batch_rows", "inference/forwards", "inference/requests", "inference/errors",
                  "time/server_forward", "time/server_wait_batch")


class LocalRolloutSource(Reports):
    def __init__(self, agent, *, env: EnvConfig, model: ModelConfig, actor: ActorConfig, obs_shape, obs_dtype,
                 num_actions, num_tasks, pin_memory: bool = False):
        """``env``, ``model``, ``actor``: the sections of the run's configuration the actors are
        built from (the source itself reads ``actor``: the buffer layout and ``inference``).
        With ``--inference learner`` the source builds the inference server on ``agent``'s
        device (``inference_server``), the actors act through it and no parameters are
        published to shared memory: no actor reads them."""
        super().__init__()
        a = actor
        self.layout = BufferLayout(a.num_actors, a.num_buffers, a.envs_per_actor, a.unroll_length)
        self.buffers = RolloutBuffers(self.layout, obs_shape, obs_dtype, num_actions, agent.state_spec(),
                                      action_dims=agent.action_dims)
        inference_server = InferenceServer(a, agent, buffers=self.buffers) if a.inference == "learner" else None
        self.inference_server: Optional[InferenceServer] = inference_server
        self.params: Optional[SharedParams] = None
        self._version = 1                  # like SharedParams: the initial parameters are version 1
        if inference_server is None:
            on_cpu = next(agent.parameters()).device.type == "cpu"
            self.params = SharedParams(agent if on_cpu else copy.deepcopy(agent).cpu())
        else:
            inference_server.update_params(agent, self._version)
        self.scalar_columns = QUEUE_COLUMNS + (SERVER_COLUMNS if inference_server is not None else ())
        self.pool = LocalActorPool(self.buffers, self.params, env=env, model=model, actor=actor,
                                   obs_shape=obs_shape, obs_dtype=obs_dtype, num_actions=num_actions,
                                   num_tasks=num_tasks, inference_server=inference_server)
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
        if self.params is not None:
            self._version = self.params.publish(agent)
        else:
            self._version += 1
            self.inference_server.update_params(agent, self._version)
        return self._version

    @property
    def version(self) -> int:
        return self._version

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

    def take_scalars(self) -> Dict[str, float]:
        out = {"queue/full_rows": len(self.pending),
               "queue/held_groups": len(self.pool.held),
               "queue/free_groups": self.layout.num_groups - len(self.pool.held)}
        if self.inference_server is not None:
            st = self.inference_server.take_stats()
            out.update({"inference/batch_rows": st["mean_batch_rows"], "inference/forwards": st["forwards"],
                        "inference/requests": st["requests"], "inference/errors": st["errors"],
                        "time/server_forward": st["time_forward"],
                        "time/server_wait_batch": st["time_wait_batch"]})
        return out

    def pids(self) -> List[int]:
        return self.pool.pids()
