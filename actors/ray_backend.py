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
(:class:`actors.pool.ActorCrashLoop`). The learner's own failure is the trainer's
business: periodic checkpoints and ``--resume``.

Connection (:func:`connect_ray`): ``--ray-address`` joins an existing cluster (the
checkout is shipped to the workers as the job's ``working_dir``); without it a local
instance is started whose every server listens on 127.0.0.1 only. Ray's token
authentication (``RAY_AUTH_MODE=token``, Ray >= 2.52) is switched on unless the user
set ``RAY_AUTH_MODE`` explicitly. See docs/ray.md.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.actor import ActorSpec, UnrollWriter, build_actor_env
from actors.buffers import rollout_specs
from actors.params import named_tensors
from actors.pool import ActorCrashLoop
from actors.source import RolloutSource

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
# what is not shipped to the workers with the code (on top of .gitignore)
_WORKING_DIR_EXCLUDES = [".git", ".venv", "runs", "__pycache__", ".pytest_cache", "*.pt", ".whl", ".gl"]
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"   # "0": node IP = loopback (read by ray's services)


# -- connecting to Ray ----------------------------------------------------------------

def keep_token_auth_on() -> str:
    """Switch Ray's token authentication on unless ``RAY_AUTH_MODE`` was set by the user.

    Ray >= 2.52 authenticates every control-plane RPC and HTTP request with one shared
    token when ``RAY_AUTH_MODE=token`` (token from ``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``; a local ``ray.init`` generates
    the file). Returns the mode in force.
    """
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None:
        if mode.lower() != "token":
            log.warning("RAY_AUTH_MODE=%s: Ray token authentication is OFF; anyone who can reach "
                        "the cluster's ports can run code on it", mode)
        return mode.lower()
    os.environ["RAY_AUTH_MODE"] = "token"
    try:   # Ray caches its config at import: refresh it so this process sees token mode too
        from ray._raylet import Config
        Config.initialize("")
    except (ImportError, AttributeError):   # Ray without token authentication
        pass
    return "token"


def _start_local_ray(num_cpus: int) -> None:
    """``ray.init`` a one-machine instance whose servers bind 127.0.0.1 only.

    Ray resolves ``_node_ip_address="127.0.0.1"`` to the machine's routable address on
    Linux unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (its single-machine mode); then
    GCS, raylet, object manager, workers and agents all listen on loopback.
    """
    from ray._private import ray_constants
    old_env, old_flag = os.environ.get(_LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, dashboard_host="127.0.0.1",
                 _node_ip_address="127.0.0.1")
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop(_LOOPBACK_ENV, None)
        else:
            os.environ[_LOOPBACK_ENV] = old_env


def connect_ray(address: str = "", num_cpus: Optional[int] = None, *, ship_code: bool = True) -> bool:
    """Join the cluster at ``address`` or start a loopback-only local instance.

    Returns True when this call connected (the caller then owns the connection and
    calls ``ray.shutdown()``: for a local instance that stops every Ray process, for a
    cluster it only disconnects); False when Ray was already initialised.

    Ray's core worker installs a failure-signal handler for SIGTERM that aborts the
    process; the trainer's own SIGINT/SIGTERM handlers (finish the update, checkpoint,
    stop) are put back after ``ray.init``.
    """
    if ray.is_initialized():
        return False
    keep_token_auth_on()
    saved = _python_signal_handlers()
    try:
        _init(address, num_cpus, ship_code)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return True


def _python_signal_handlers() -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}
    out = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        h = signal.getsignal(sig)
        if h is not None:                 # None: installed outside Python, cannot be restored
            out[sig] = h
    return out


def _init(address: str, num_cpus: Optional[int], ship_code: bool) -> None:
    if address:
        runtime_env = None
        if ship_code:
            runtime_env = {"working_dir": str(REPO_ROOT), "excludes": list(_WORKING_DIR_EXCLUDES)}
        try:
            ray.init(address=address, runtime_env=runtime_env)
        except ConnectionError as e:
            raise ConnectionError(f"--ray-address {address}: cannot connect to a Ray cluster ({e})") from None
    else:
        _start_local_ray(num_cpus if num_cpus is not None else max(os.cpu_count() or 1, 1))


# -- the actor side -------------------------------------------------------------------

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
        targets = named_tensors(model)
        total = sum(t.numel() for _, t in targets)
        if flat.shape != (total,):
            raise ValueError(f"published parameters have shape {flat.shape}, the actor's model needs ({total},)")
        src = torch.from_numpy(flat.copy())                                 # [P], writable
        with torch.no_grad():
            offset = 0
            for _, t in targets:
                n = t.numel()
                t.copy_(src[offset:offset + n].view_as(t))
                offset += n
        return version


class RolloutActor:
    """One Ray actor: a vectorised env, a CPU copy of the agent, an UnrollWriter."""

    def __init__(self, spec: ActorSpec, param_server):
        from actors.policy import LocalPolicy
        from agents.model import build_agent
        from envs.base import ObsSpec
        cfg = spec.config
        torch.set_num_threads(max(1, cfg.actor.actor_threads))
        self.spec = spec
        self.env = build_actor_env(spec)
        agent = build_agent(cfg.model, ObsSpec(tuple(spec.obs_shape), spec.obs_dtype),
                            spec.num_actions, spec.num_tasks)
        self.state_spec = agent.state_spec()
        self.policy = LocalPolicy(agent, self.env.num_envs, ObjectStoreParams(param_server))
        self.specs = rollout_specs(spec.obs_shape, spec.obs_dtype, spec.num_actions)
        self.T = cfg.actor.unroll_length
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
            cfg = self.spec.config
            first_life = self.spec.actor_index == 0 and self.spec.incarnation == 0
            self.writer = UnrollWriter(self.env, self.policy, self.T,
                                       crash_at_step=cfg.run.debug_crash_at_step if first_life else 0)
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


class RayRolloutSource(RolloutSource):
    """Rollout source over Ray actors; same interface as :class:`actors.source.LocalRolloutSource`."""

    def __init__(self, config, agent, *, obs_shape, obs_dtype, num_actions, num_tasks,
                 pin_memory: bool = False):
        super().__init__()
        a = config.actor
        if a.inference != "actor":
            raise ValueError(f"--inference {a.inference} is not supported with --backend ray: Ray actors act "
                             f"with their own CPU copy of the agent (--inference actor)")
        self.config = config
        self.obs = (tuple(obs_shape), str(obs_dtype), int(num_actions), int(num_tasks))
        self.T, self.N, self.credits = a.unroll_length, a.envs_per_actor, a.num_buffers
        self.specs = rollout_specs(obs_shape, obs_dtype, num_actions)
        self.state_spec = agent.state_spec()
        self.pin_memory = pin_memory
        self.broadcast_every = config.run.ray_broadcast_every
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
        self.crash_times: deque = deque()

    # -- parameters ------------------------------------------------------------------
    @staticmethod
    def _flatten(agent) -> np.ndarray:
        with torch.no_grad():
            flat = torch.cat([t.detach().reshape(-1).float() for _, t in named_tensors(agent)])
        return flat.cpu().numpy()                                             # [P] float32

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
        run, a = self.config.run, self.config.actor
        need = a.num_actors * run.ray_cpus_per_actor
        t0 = time.monotonic()
        self.owns_ray = connect_ray(run.ray_address, num_cpus=max(int(math.ceil(need)), 1))
        self.started = True
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        log.info("ray: %s in %.1f s: %d node(s), %g CPUs, %g GPUs; RAY_AUTH_MODE=%s",
                 f"connected to {run.ray_address}" if run.ray_address else "local instance on 127.0.0.1",
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
                f"{a.num_actors} x {run.ray_cpus_per_actor:g} = {need:g})")
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
        spec = ActorSpec(slot.index, slot.incarnation, self.config, obs_shape, obs_dtype,
                         num_actions, num_tasks)
        slot.handle = _RemoteRolloutActor.options(
            num_cpus=self.config.run.ray_cpus_per_actor, max_restarts=0, max_task_retries=0,
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
        now = time.monotonic()
        self.crash_times.append(now)
        while self.crash_times and now - self.crash_times[0] > 60.0:
            self.crash_times.popleft()
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
        limit = self.config.actor.max_crashes_per_minute
        if len(self.crash_times) > limit:
            raise ActorCrashLoop(f"{len(self.crash_times)} actor crashes within a minute "
                                 f"(limit {limit}); last: actor {slot.index}: {reason}")
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
        hb = self.config.actor.heartbeat_timeout_s
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
    def queue_sizes(self) -> Dict[str, float]:
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
        if self.owns_ray and not self.config.run.ray_address:
            import psutil
            try:
                return [p.pid for p in psutil.Process().children(recursive=True)]
            except psutil.Error:
                return []
        here = ray.get_runtime_context().get_node_id()
        return [s.info["pid"] for s in self.slots if s.info.get("node_id") == here and "pid" in s.info]
