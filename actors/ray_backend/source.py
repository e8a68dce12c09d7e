"""The Ray actor backend: actors on many machines, one learner (``--backend ray``).

IMPALA's decoupled actor-learner architecture (Espeholt et al., "IMPALA: Scalable
Distributed Deep-RL with Importance Weighted Actor-Learner Architectures", ICML 2018)
spread over a Ray cluster: the actors are Ray actors scheduled with the ``SPREAD``
strategy across the cluster's nodes (``--ray-cpus-per-actor`` CPUs each); the learner
is the driver process, on the node where ``python -m launch.train`` runs (the GPU
node). Nothing here opens a socket of its own: every byte travels through Ray.

Data flow::

    learner  publish(agent) --every K updates--> ray.put(flat float32 params [P])
                 -> ParameterServer.set(version, [ref])                (driver's node)
    actor    unroll(): ParameterServer.get(known version) -> ray.get(ref) if newer
                 -> UnrollWriter.fill(views [N, T+1, ...], initial_core_state [N, ...])
                 -> return {data: {key: ndarray [T+1, N, ...]}, state: {name: [N, ...]},
                            version, episodes, timing}                 (object store)
    learner  ray.wait(in-flight refs) -> rows of finished unrolls -> get_batch(B)
                 -> ({key: [T+1, B, ...]}, {name: [B, ...]}, {"policy_versions": [B]})

Every unroll carries its ``initial_core_state`` (the fast-weight state copy,
docs/design.md#data-conventions) and the parameter version it was acted with, so the trainer logs
the policy lag: learner updates between acting and learning. Arrays are numpy, which
Ray's object store hands over without a copy; the learner copies each batch once.

Flow control mirrors the local backend: each actor owns ``num_buffers`` unroll
credits; a credit is in flight (an ``unroll`` call queued or running on the actor)
or held (a finished unroll whose rows the learner has not all taken yet). A batch may
mix rows of several unrolls, so B need not be a multiple of the envs per actor.

Failures: an actor whose call fails (its node gone, ``ray.kill``, an exception in
its env) or that produces nothing for ``--heartbeat-timeout-s`` is killed and
recreated with fresh envs; its in-flight unrolls are discarded, finished ones stay
valid. More than ``--max-crashes-per-minute`` restarts in a minute stop the run
(:class:`actors.crashes.ActorCrashLoop`). The learner's own failure is the trainer's
business: periodic checkpoints and ``--resume``.

Connection and security: :mod:`actors.ray_backend.connect`; the Ray actors and the
parameter server: :mod:`actors.ray_backend.actor`; this module is the learner's side,
:class:`RayRolloutSource` (an :class:`actors.source.RolloutSource`).

Length: about 410 lines, one class (the rollout source of the trainer) whose credit
accounting, restarts and batch assembly share one state; the connection and the Ray
actor live in :mod:`~actors.ray_backend.connect` and :mod:`~actors.ray_backend.actor`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np
import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.actor import ActorSpec
from actors.buffers import rollout_specs
from actors.config import ActorConfig, RayConfig
from actors.crashes import CrashWindow, injected_crash_step
from actors.params import flatten_params
from actors.ray_backend.actor import _RemoteParameterServer, _RemoteRolloutActor
from actors.ray_backend.connect import connect_ray
from actors.source import QUEUE_COLUMNS, Reports
from agents.model import ModelConfig
from envs import EnvConfig

log = logging.getLogger(__name__)


# -- the learner side -----------------------------------------------------------------

@dataclass
class _Unroll:
    """A finished unroll held by the learner until all its rows are taken."""

    actor: int
    data: Dict[str, np.ndarray]      # {key: [T+1, N, ...]}
    state: Dict[str, np.ndarray]     # {name: [N, ...]}
    version: int
    remaining: int


@dataclass
class _Slot:
    index: int
    handle: object = None
    incarnation: int = 0
    inflight: int = 0                # unroll calls submitted, not yet returned
    held: int = 0                    # finished unrolls with rows not yet taken
    busy_since: float = 0.0          # when the oldest in-flight call was last making progress
    info: dict = field(default_factory=dict)   # node_id, pid, host of the current incarnation
    info_ref: object = None
    last_error: str = ""


class RayRolloutSource(Reports):
    """Rollout source over Ray actors; same interface as :class:`actors.source.LocalRolloutSource`."""

    def __init__(self, agent, *, env: EnvConfig, model: ModelConfig, actor: ActorConfig,
                 ray_config: RayConfig, obs_shape, obs_dtype, num_actions, num_tasks, pin_memory: bool = False):
        """``env``, ``model``, ``actor``: the sections of the run's configuration the actors are
        built from (the source reads ``actor`` too); ``ray_config``: where the actors run."""
        super().__init__()
        a = actor
        if a.inference != "actor":
            raise ValueError(f"--inference {a.inference} is not supported with --backend ray: Ray actors act "
                             f"with their own CPU copy of the agent (--inference actor)")
        self.env, self.model, self.actor, self.ray_config = env, model, actor, ray_config
        self.obs = (tuple(obs_shape), str(obs_dtype), int(num_actions), int(num_tasks))
        self.T, self.N, self.credits = a.unroll_length, a.envs_per_actor, a.num_buffers
        self.action_dims = tuple(agent.action_dims)
        self.specs = rollout_specs(obs_shape, obs_dtype, num_actions, self.action_dims)
        self.state_spec = agent.state_spec()
        self.pin_memory = pin_memory
        self.broadcast_every = ray_config.ray_broadcast_every
        self._initial_params = self._flatten(agent)
        self.slots = [_Slot(i) for i in range(a.num_actors)]
        self.param_server = None
        self.owns_ray = False
        self.started = False
        self.closed = False
        self._version = 1                       # like SharedParams: the initial parameters are version 1
        self._broadcast_version = 0
        self._inflight: Dict[object, Tuple[int, int]] = {}     # ref -> (actor, incarnation)
        self._discarded: list = []                             # refs of lost actors, errors unread
        self._unrolls: Dict[int, _Unroll] = {}
        self._next_uid = 0
        self.pending: deque = deque()                          # (uid, row), oldest first
        self.restarts = 0
        self.crashes = CrashWindow(a.max_crashes_per_minute)
        self.scalar_columns = QUEUE_COLUMNS + ("ray/in_flight_unrolls",)

    # -- parameters ------------------------------------------------------------------
    @staticmethod
    def _flatten(agent) -> np.ndarray:
        return flatten_params(agent).cpu().numpy()                           # [P] float32

    def _broadcast(self, flat: np.ndarray, version: int) -> None:
        ref = ray.put(flat)
        self.param_server.set.remote(version, [ref])
        self._broadcast_version = version

    def publish(self, agent) -> int:
        """Count a new parameter version; put it in the object store every K versions."""
        self._version += 1
        if self.param_server is None:           # not started: start() broadcasts the latest
            self._initial_params = self._flatten(agent)
        elif self._version - self._broadcast_version >= self.broadcast_every:
            self._broadcast(self._flatten(agent), self._version)
        return self._version

    @property
    def version(self) -> int:
        return self._version

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        rc, a = self.ray_config, self.actor
        need = a.num_actors * rc.ray_cpus_per_actor
        t0 = time.monotonic()
        self.owns_ray = connect_ray(rc.ray_address, num_cpus=max(int(math.ceil(need)), 1))
        self.started = True
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        log.info("ray: %s in %.1f s: %d node(s), %g CPUs, %g GPUs; RAY_AUTH_MODE=%s",
                 f"connected to {rc.ray_address}" if rc.ray_address else "local instance on 127.0.0.1",
                 time.monotonic() - t0, len(nodes), ray.cluster_resources().get("CPU", 0),
                 ray.cluster_resources().get("GPU", 0), os.environ.get("RAY_AUTH_MODE", "?"))
        if not self.pin_memory and ray.cluster_resources().get("GPU", 0) > 0:
            log.warning("ray: the cluster has GPUs but the learner runs on the CPU of this node: start "
                        "launch.train on the GPU node (the learner runs where the command runs)")
        t1 = time.monotonic()
        here = ray.get_runtime_context().get_node_id()
        self.param_server = _RemoteParameterServer.options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()
        self._broadcast(self._initial_params, self._version)
        self._initial_params = None
        for slot in self.slots:
            self._spawn(slot)
            self._top_up(slot)                  # queued behind the actor's construction
        infos = [slot.info_ref for slot in self.slots]
        timeout = a.heartbeat_timeout_s
        ready, not_ready = ray.wait(infos, num_returns=len(infos), timeout=timeout)
        if not_ready:
            cpus = ray.cluster_resources().get("CPU", 0)
            raise RuntimeError(
                f"{len(not_ready)} of {len(infos)} Ray actors did not start within {timeout:.0f} s "
                f"(the cluster has {cpus:g} CPUs; the actors need --num-actors x --ray-cpus-per-actor = "
                f"{a.num_actors} x {rc.ray_cpus_per_actor:g} = {need:g})")
        for slot in self.slots:
            self._record_info(slot)
        log.info("ray: %d actors ready in %.1f s on %d node(s)", len(self.slots), time.monotonic() - t1,
                 len({s.info.get("node_id") for s in self.slots}))

    def _record_info(self, slot: _Slot) -> None:
        """Fetch the actor's node and pid (its ``info`` call ran before any unroll)."""
        try:
            slot.info = ray.get(slot.info_ref, timeout=10)
        except Exception as e:                   # died while starting: the poll loop restarts it
            slot.info = {}
            slot.last_error = f"{type(e).__name__}"

    def _spawn(self, slot: _Slot) -> None:
        obs_shape, obs_dtype, num_actions, num_tasks = self.obs
        spec = ActorSpec(slot.index, slot.incarnation, self.env, self.model, self.actor, obs_shape, obs_dtype,
                         num_actions, num_tasks, action_dims=self.action_dims,
                         crash_at_step=injected_crash_step(slot.index, slot.incarnation))
        slot.handle = _RemoteRolloutActor.options(
            num_cpus=self.ray_config.ray_cpus_per_actor, max_restarts=0, max_task_retries=0,
            scheduling_strategy="SPREAD", name=None).remote(spec, self.param_server)
        slot.inflight = 0
        slot.info = {}
        slot.info_ref = slot.handle.info.remote()
        slot.busy_since = time.monotonic()

    def _top_up(self, slot: _Slot) -> None:
        """Keep ``num_buffers`` unroll credits of ``slot`` in flight or held."""
        if slot.handle is None or self.closed:
            return
        if slot.inflight == 0:
            slot.busy_since = time.monotonic()
        while slot.inflight + slot.held < self.credits:
            ref = slot.handle.unroll.remote()
            self._inflight[ref] = (slot.index, slot.incarnation)
            slot.inflight += 1

    def _restart(self, slot: _Slot, reason: str) -> None:
        slot.last_error = reason
        log.warning("ray actor %d (incarnation %d) lost (%s); recreating it",
                    slot.index, slot.incarnation, reason)
        for ref, (i, inc) in list(self._inflight.items()):
            if i == slot.index:
                del self._inflight[ref]           # discarded: never trained on
                self._discarded.append(ref)
        try:
            ray.kill(slot.handle, no_restart=True)
        except Exception:
            pass
        self.crashes.record(slot.index, reason)
        slot.incarnation += 1
        self.restarts += 1
        self._spawn(slot)
        self._top_up(slot)

    def stop(self) -> None:
        """Kill every actor; shut Ray down when this source started it (or connected)."""
        if self.closed:
            return
        self.closed = True
        if not self.started:
            return
        refs = list(self._inflight) + self._discarded
        self._inflight.clear()
        self._discarded = []
        self._unrolls.clear()
        self.pending.clear()
        try:
            for slot in self.slots:
                if slot.handle is not None:
                    try:
                        ray.kill(slot.handle, no_restart=True)
                    except Exception:
                        pass
                    slot.handle = None
            # the actors go first, so none is left asking a dead parameter server
            self._reap(refs, timeout=5.0)
            if self.param_server is not None:
                ray.kill(self.param_server, no_restart=True)
                self.param_server = None
        except Exception as e:            # a broken connection must not keep Ray running
            log.warning("ray: error while stopping the actors (%s: %s)", type(e).__name__, e)
        finally:
            if self.owns_ray:
                ray.shutdown()

    @staticmethod
    def _reap(refs: list, timeout: float) -> list:
        """Read the errors of discarded calls (else Ray logs them as unhandled); returns the rest."""
        if not refs:
            return []
        ready, rest = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        for ref in ready:
            try:
                ray.get(ref)
            except Exception:
                pass
        return rest

    # -- results ---------------------------------------------------------------------
    def _poll(self, timeout: float) -> None:
        """Collect finished unrolls (waiting up to ``timeout`` s); restart lost actors."""
        self._discarded = self._reap(self._discarded, timeout=0)
        refs = list(self._inflight)
        ready: list = []
        if refs:
            first, _ = ray.wait(refs, num_returns=1, timeout=timeout)
            if first:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        elif timeout > 0:
            time.sleep(min(timeout, 0.01))
        lost: Dict[int, str] = {}
        for ref in ready:
            owner = self._inflight.pop(ref, None)
            if owner is None:
                continue
            i, inc = owner
            slot = self.slots[i]
            if inc != slot.incarnation or i in lost:
                self._discarded.append(ref)
                continue
            slot.inflight -= 1
            try:
                out = ray.get(ref)
            except ray.exceptions.RayTaskError as e:          # the actor's own code raised
                lost[i] = str(e).strip().splitlines()[-1][:300]
                continue
            except ray.exceptions.RayError as e:              # actor, node or object gone
                lost[i] = f"{type(e).__name__}"
                continue
            self._accept(slot, out)
        now = time.monotonic()
        hb = self.actor.heartbeat_timeout_s
        for slot in self.slots:
            if slot.index not in lost and slot.inflight > 0 and now - slot.busy_since > hb:
                lost[slot.index] = f"no unroll for {hb:.0f} s"
        for i, reason in lost.items():
            self._restart(self.slots[i], reason)
        for slot in self.slots:
            if slot.index not in lost:
                self._top_up(slot)

    def _accept(self, slot: _Slot, out: dict) -> None:
        uid = self._next_uid
        self._next_uid += 1
        self._unrolls[uid] = _Unroll(slot.index, out["data"], out["state"], int(out["version"]), self.N)
        self.pending.extend((uid, r) for r in range(self.N))
        slot.held += 1
        slot.busy_since = time.monotonic()
        if not slot.info and slot.info_ref is not None:
            self._record_info(slot)
        self._record(out["episodes"], out["timing"])

    def get_batch(self, batch_size: int, timeout: float = 0.1):
        """``B`` rows as ``({key: [T+1, B, ...]}, {name: [B, ...]}, {"policy_versions": [B]})`` or None."""
        self._poll(0.0 if len(self.pending) >= batch_size else timeout)
        if len(self.pending) < batch_size:
            return None
        taken = [self.pending.popleft() for _ in range(batch_size)]
        runs: List[Tuple[int, int, int]] = []             # (uid, first row, count), rows consecutive
        for uid, r in taken:
            if runs and runs[-1][0] == uid and runs[-1][1] + runs[-1][2] == r:
                runs[-1] = (uid, runs[-1][1], runs[-1][2] + 1)
            else:
                runs.append((uid, r, 1))
        T1, B = self.T + 1, batch_size
        batch = {k: torch.empty(T1, B, *shape, dtype=dtype, pin_memory=self.pin_memory)
                 for k, (shape, dtype) in self.specs.items()}                  # [T+1, B, ...]
        state = {k: torch.empty(B, *s.shape, dtype=s.dtype, pin_memory=self.pin_memory)
                 for k, s in self.state_spec.items()}                          # [B, ...]
        versions = torch.empty(B, dtype=torch.int64)
        out_np = {k: v.numpy() for k, v in batch.items()}
        state_np = {k: v.numpy() for k, v in state.items()}
        col = 0
        for uid, r0, n in runs:
            u = self._unrolls[uid]
            for k, dst in out_np.items():
                dst[:, col:col + n] = u.data[k][:, r0:r0 + n]
            for k, dst in state_np.items():
                dst[col:col + n] = u.state[k][r0:r0 + n]
            versions[col:col + n] = u.version
            col += n
            u.remaining -= n
            if u.remaining == 0:
                del self._unrolls[uid]
                slot = self.slots[u.actor]
                slot.held -= 1
                self._top_up(slot)
        return batch, state, {"policy_versions": versions}

    # -- logging ---------------------------------------------------------------------
    def take_scalars(self) -> Dict[str, float]:
        held = sum(s.held for s in self.slots)
        return {"queue/full_rows": len(self.pending), "queue/held_groups": held,
                "queue/free_groups": len(self._inflight), "ray/in_flight_unrolls": len(self._inflight)}

    def actor_nodes(self) -> List[str]:
        """The Ray node id of every live actor (in actor order; '' while unknown)."""
        out = []
        for slot in self.slots:
            if not slot.info and slot.info_ref is not None:
                self._record_info(slot)
            out.append(slot.info.get("node_id", ""))
        return out

    def pids(self) -> List[int]:
        """Processes the trainer's hard exit (a second Ctrl-C) kills at once.

        With a local instance this source started: every process of it (GCS, raylet,
        agents, workers: all descendants of this process). Otherwise the actors that
        run on this machine; Ray reclaims the others when the driver is gone.
        """
        if not self.started or self.closed:
            return []
        if self.owns_ray and not self.ray_config.ray_address:
            import psutil
            try:
                return [p.pid for p in psutil.Process().children(recursive=True)]
            except psutil.Error:
                return []
        here = ray.get_runtime_context().get_node_id()
        return [s.info["pid"] for s in self.slots if s.info.get("node_id") == here and "pid" in s.info]
