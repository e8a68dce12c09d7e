"""The actor side of the Ray backend: one Ray actor per env vector, and the parameters.

* :class:`ParameterServer` (0 CPUs, on the driver's node) holds the reference to the
  latest parameters the learner put in the object store;
* :class:`ObjectStoreParams` is a Ray actor's view of them (``load_into`` like
  :class:`actors.params.SharedParams`);
* :class:`RolloutActor` owns a vectorised env, a CPU copy of the agent and an
  :class:`~actors.actor.UnrollWriter`; ``unroll()`` returns one unroll as numpy arrays.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Optional, Tuple

import numpy as np
import ray
import torch

from actors.actor import ActorSpec, UnrollWriter, build_actor_env
from actors.buffers import rollout_specs
from actors.params import load_flat, num_flat


class ParameterServer:
    """Holds the reference to the latest published parameters (0 CPUs, driver's node).

    The reference sits in a list so Ray passes it through unresolved: an actor fetches
    the array (``ray.get``) only when the version is new to it.
    """

    def __init__(self):
        self.version = -1
        self.box: Optional[list] = None

    def set(self, version: int, box: list) -> None:
        if version > self.version:
            self.version, self.box = version, box

    def get(self, known_version: int) -> Optional[Tuple[int, list]]:
        return None if self.version <= known_version else (self.version, self.box)


class ObjectStoreParams:
    """The actor's view of the published parameters: ``load_into`` like SharedParams."""

    def __init__(self, server, poll_s: float = 0.02):
        self.server = server
        self.poll_s = poll_s

    def load_into(self, model: torch.nn.Module, *, last_version: int = -1, timeout_s: float = 120.0) -> int:
        """Copy newer parameters into ``model``; wait for the first set. Returns the version held."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = ray.get(self.server.get.remote(last_version))
            if got is not None:
                break
            if last_version >= 0:
                return last_version          # nothing newer: keep acting with what we have
            if time.monotonic() > deadline:
                raise TimeoutError(f"no parameters published by the learner within {timeout_s:.0f} s")
            time.sleep(self.poll_s)
        version, box = got
        flat = np.asarray(ray.get(box[0]), dtype=np.float32)                # [P], read-only view
        total = num_flat(model)
        if flat.shape != (total,):
            raise ValueError(f"published parameters have shape {flat.shape}, the actor's model needs ({total},)")
        load_flat(model, torch.from_numpy(flat.copy()))                     # [P], writable
        return version


class RolloutActor:
    """One Ray actor: a vectorised env, a CPU copy of the agent, an UnrollWriter."""

    def __init__(self, spec: ActorSpec, param_server):
        from actors.policy import LocalPolicy
        from agents.model import build_agent
        from envs.base import ObsSpec
        torch.set_num_threads(max(1, spec.actor.actor_threads))
        self.spec = spec
        self.env = build_actor_env(spec)
        agent = build_agent(spec.model, ObsSpec(tuple(spec.obs_shape), spec.obs_dtype),
                            spec.num_actions, spec.num_tasks, spec.action_dims)
        self.state_spec = agent.state_spec()
        self.policy = LocalPolicy(agent, self.env.num_envs, ObjectStoreParams(param_server))
        self.specs = rollout_specs(spec.obs_shape, spec.obs_dtype, spec.num_actions, spec.action_dims)
        self.T = spec.actor.unroll_length
        self.writer: Optional[UnrollWriter] = None

    def info(self) -> dict:
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "host": socket.gethostname(), "actor": self.spec.actor_index,
                "incarnation": self.spec.incarnation}

    def unroll(self) -> dict:
        """Act for T steps; returns time-major numpy arrays (see the module docstring)."""
        t0 = time.perf_counter()
        version = self.policy.sync()
        if self.writer is None:
            self.writer = UnrollWriter(self.env, self.policy, self.T, crash_at_step=self.spec.crash_at_step)
        self.writer.timing.wait += time.perf_counter() - t0
        N, T1 = self.env.num_envs, self.T + 1
        data = {k: torch.zeros(T1, N, *shape, dtype=dtype) for k, (shape, dtype) in self.specs.items()}
        views = {k: v.transpose(0, 1) for k, v in data.items()}             # [N, T+1, ...] views
        state = self.state_spec.allocate(N)                                 # {name: [N, ...]}
        episodes = self.writer.fill(views, state)
        return {"data": {k: v.numpy() for k, v in data.items()},          # [T+1, N, ...]
                "state": {k: v.numpy() for k, v in state.items()},        # [N, ...]
                "version": version, "episodes": episodes, "timing": self.writer.take_timing()}


_RemoteParameterServer = ray.remote(ParameterServer)
_RemoteRolloutActor = ray.remote(RolloutActor)
