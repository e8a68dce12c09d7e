"""Batched inference on the learner's device (``--inference learner``).

IMPALA (Espeholt et al., ICML 2018) runs the policy in every actor. With the
fast-weight agents of Irie et al. (NeurIPS 2021, ICML 2022) on a GPU learner that
leaves the device idle while the CPUs run the IMPALA encoder (docs/design.md#measured-costs),
so this module moves acting onto the learner's device, as SEED RL does (Espeholt et
al., ICLR 2020): actors only step their envs and ask an :class:`InferenceServer`
for actions.

Data flow for one acting step of actor ``a`` (``E`` envs)::

    actor:  obs, reward, done, task -> shared-memory request slot [a]  --b"a"-->  socket
    server: gather the slots of every actor that asked within the timeout (<= max batch rows)
            -> ONE forward over the concatenated env rows, with their resident core
               state (indexed by env row, the state never leaves the device)
            -> action, policy logits, baseline -> shared-memory response slot [a]
    actor:  <--b""-- socket -> returns (action [E] (or [E, K]), logits [E, A], baseline [E])

* The core state of every env row stays resident on the device (``state[name]``
  ``[num_actors * E, ...]``); the agent resets rows whose ``done`` is set before the
  step (docs/design.md#data-conventions). Nothing is copied between processes per step except
  the observations in and the three outputs out, through shared memory: the socket
  only carries one-byte wake-ups.
* Each unroll's ``initial_core_state`` goes from the device straight into the rollout
  buffers (:class:`~actors.buffers.RolloutBuffers`, shared memory the trainer owns and
  hands the server at construction), never through the actor: the act request on
  entry 0 of the actor's next unroll (``act(..., unroll_start=True)``, sent as
  ``ACT_UNROLL_START``) first copies the actor's rows of the resident state into a
  second resident tensor, ``unroll_start_state`` (the state before entry 0, before the
  done-resets), on the device; once the actor has a free group to write the unroll
  into, ``write_initial_state(into, group)`` (``WRITE_INITIAL`` + the group) copies
  those rows into the group's ``initial_core_state`` rows. The kept copy is needed
  because the state must be taken before the last step of the previous unroll, when
  the next group may still be held by the learner. ``reset_state()`` resets the
  actor's rows of both to the episode-start state (a core without carry-over across
  unrolls, ``srwm_no_carry``, at every unroll start).
* The server runs as a thread of the trainer process with its OWN copy of the agent
  (eval mode, no gradients); :meth:`InferenceServer.update_params` copies the
  learner's parameters in under a lock, so a forward never sees a half-updated set
  and never races the learner's autograd. On CUDA the server works on its own
  stream, ordered against the learner's stream at every parameter copy.
* Every actor connects over a Unix socket in a private (0700) directory and says
  hello (actor index, number of envs). A new connection for an actor index replaces
  the old one (a restarted actor): the old connection is closed, a request it left
  waiting is dropped and the actor's rows (resident and kept) are reset to the
  episode-start state (:meth:`InferenceServer.reset_actor` does the same for the
  pool), so the new life's first unroll starts from it. A dead actor's
  socket reads EOF and is dropped the same way; its successor only reads a response
  on its own connection.

Batching: requests wait until every connected actor is waiting or until
``timeout_ms`` has passed since the oldest one arrived; then all waiting rows run,
in forwards of at most ``max_batch`` env rows. Before that, whenever ``max_batch``
rows or more are waiting, the oldest requests run at once in *full* forwards of
``max_batch`` rows and the remainder keeps waiting for more company (a request may
straddle two forwards; it is answered when its last rows are done). Within a
forward the rows are sorted by actor, so consecutive actors' rows are contiguous
and need no gather. The policy is :mod:`actors.inference.planner` (pure functions).

The package: :mod:`~actors.inference.wire` (shared-memory slots, messages),
:mod:`~actors.inference.planner` (batching), this module (the server thread),
:mod:`~actors.inference.client` (the actor's side). This module is over 400 lines
because it is one class whose socket loop and device work share one lock and one
resident state; what is pure (batching, wire format) lives in the modules above.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import selectors
import shutil
import socket
import tempfile
import threading
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Dict, List, Optional

import torch

from actors.buffers import RolloutBuffers
from actors.config import ActorConfig
from actors.inference import planner
from actors.inference.client import InferenceClient
from actors.inference.planner import Forward
from actors.inference.wire import (ACT, ACT_UNROLL_START, ERROR, HELLO, HELLO_TAG, INITIAL, INPUT_KEYS, OK,
                                   OUTPUT_KEYS, REQUESTS, RESET, WRITE_INITIAL, InferenceSlots, flat_rows)
from actors.params import named_tensors

log = logging.getLogger(__name__)


@dataclass
class _Peer:
    conn: Connection
    actor: int = -1          # -1 until the hello message arrives
    pid: int = 0


@dataclass
class _Request:
    peer: _Peer
    arrival: float           # perf_counter() when the request came in
    done: int = 0            # rows of the actor already run (a request may straddle forwards)


@dataclass
class ServerStats:
    """What the server did since the last :meth:`InferenceServer.take_stats`."""

    requests: int = 0            # act requests answered
    forwards: int = 0            # forward passes run
    rows: int = 0                # env rows run through the agent
    initial_states: int = 0      # unrolls' initial core states written into the rollout buffers
    resets: int = 0              # state resets served (cores without carry-over, at unroll starts)
    errors: int = 0              # requests answered with an error
    batch_rows: Counter = field(default_factory=Counter)   # rows per forward -> count
    time_forward: float = 0.0    # s in the forward (inputs to the device, agent, outputs back)
    time_wait_batch: float = 0.0  # s from a batch's first request to its forward

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("requests", "forwards", "rows", "initial_states", "resets", "errors",
                                            "time_forward", "time_wait_batch")}
        d["mean_batch_rows"] = self.rows / self.forwards if self.forwards else 0.0
        d["batch_rows"] = dict(sorted(self.batch_rows.items()))
        return d


class InferenceServer:
    """Dynamic-batching policy server on the learner's device (a thread of the trainer).

    ``InferenceServer(actor, agent, device, buffers=...)``: ``actor`` is the run's
    :class:`ActorConfig` (the server reads ``num_actors``, ``envs_per_actor``,
    ``inference_max_batch``, ``inference_timeout_ms`` and ``heartbeat_timeout_s``);
    ``agent`` is copied; ``buffers``: the shared rollout buffers the actors write, whose
    ``initial_core_state`` rows the server writes (None: a server that only acts, and
    refuses ``write_initial_state``).
    """

    def __init__(self, actor: ActorConfig, agent: torch.nn.Module, device=None, *,
                 buffers: Optional[RolloutBuffers] = None):
        a = actor
        self.num_actors = int(a.num_actors)
        self.envs_per_actor = int(a.envs_per_actor)
        self.num_rows = self.num_actors * self.envs_per_actor
        if a.inference_max_batch < 0:
            raise ValueError(f"--inference-max-batch must be >= 0, got {a.inference_max_batch}")
        if a.inference_timeout_ms < 0:
            raise ValueError(f"--inference-timeout-ms must be >= 0, got {a.inference_timeout_ms}")
        self.max_batch = int(a.inference_max_batch) or self.num_rows
        self.timeout_s = float(a.inference_timeout_ms) / 1000.0
        self.reply_timeout_s = float(a.heartbeat_timeout_s)
        if device is None:
            device = next(agent.parameters()).device
        self.device = torch.device(device)
        self.agent = copy.deepcopy(agent).to(self.device).eval()
        for p in self.agent.parameters():
            p.requires_grad_(False)
            p.grad = None
        self._targets = self._param_tensors(self.agent)
        self.state_spec = agent.state_spec()
        E = self.envs_per_actor
        self.state = self.agent.initial_state(self.num_rows, self.device)   # {name: [A * E, ...]}
        # per row, the state before entry 0 of the unroll its actor writes next
        self.unroll_start_state = self.agent.initial_state(self.num_rows, self.device)
        self._fresh = self.agent.initial_state(E, self.device)              # {name: [E, ...]}
        self.buffers = buffers
        if buffers is not None:
            self._check_buffers(buffers)
        self.slots = InferenceSlots.allocate(self.num_actors, E, agent.obs_shape, agent.obs_dtype,
                                             agent.num_actions, agent.action_dims)
        self._io = {k: flat_rows(v) for k, v in self.slots.io.items()}          # {key: [A * E, ...]}
        self.cuda = self.device.type == "cuda"
        self._stream = torch.cuda.Stream(self.device) if self.cuda else None
        self._staging: Dict[str, torch.Tensor] = {}
        if self.cuda:   # pinned host buffers for non-blocking copies
            for k in INPUT_KEYS + OUTPUT_KEYS:
                self._staging[k] = torch.empty_like(self._io[k]).pin_memory()
        if self.cuda:   # everything above ran on the default stream; the server uses its own
            torch.cuda.synchronize(self.device)
        self._lock = threading.Lock()     # guards self.agent's parameters and self.state
        self.version = 0
        self.stats = ServerStats()
        self.last_error = ""
        self._dir = tempfile.mkdtemp(prefix="impala-inference-")          # mode 0700
        self.address = os.path.join(self._dir, "socket")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)
        self._thread: Optional[threading.Thread] = None
        self._stopping = False
        self._listener: Optional[socket.socket] = None
        self._wake_r, self._wake_w = -1, -1
        self._peers: Dict[int, _Peer] = {}          # fileno -> peer
        self._by_actor: Dict[int, _Peer] = {}       # actor index -> its current peer

    # -- public interface --------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.address)
        self._listener.listen(max(64, 2 * self.num_actors))
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._stopping = False
        # a new thread does not inherit the OpenMP thread count: pass the trainer's on
        self._thread = threading.Thread(target=self._serve, args=(torch.get_num_threads(),),
                                        name="inference-server", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            self._finalizer()
            return
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._thread.join(timeout)
        self._thread = None
        for peer in list(self._peers.values()):
            self._close(peer)
        self._peers.clear()
        self._by_actor.clear()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._finalizer()

    def client(self) -> InferenceClient:
        """A picklable client for one actor process (it connects in :meth:`InferenceClient.connect`)."""
        return InferenceClient(self.address, self.slots, self.envs_per_actor, self.reply_timeout_s,
                               carries_state=bool(self.agent.carries_state))

    def _check_buffers(self, buffers: RolloutBuffers) -> None:
        lay = buffers.layout
        if (lay.num_actors, lay.envs_per_actor) != (self.num_actors, self.envs_per_actor):
            raise ValueError(f"the rollout buffers are laid out for {lay.num_actors} actors x {lay.envs_per_actor} "
                             f"envs, the server for {self.num_actors} x {self.envs_per_actor}")
        dst = buffers.initial_core_state
        if set(dst) != set(self.state) or any(
                dst[k].shape[1:] != v.shape[1:] or dst[k].dtype != v.dtype for k, v in self.state.items()):
            raise ValueError("the rollout buffers' initial_core_state does not match the agent's state spec")

    @staticmethod
    def _param_tensors(model: torch.nn.Module) -> List[torch.Tensor]:
        return [t for _, t in named_tensors(model)]

    @torch.no_grad()
    def update_params(self, agent: torch.nn.Module, version: int) -> None:
        """Copy ``agent``'s parameters (the learner's) into the server's agent."""
        src = self._param_tensors(agent)
        if len(src) != len(self._targets) or any(s.shape != t.shape for s, t in zip(src, self._targets)):
            raise ValueError("update_params: the agent does not match the server's agent architecture")
        with self._lock:
            if self.cuda:
                learner_stream = torch.cuda.current_stream(self.device)
                self._stream.wait_stream(learner_stream)        # after the optimiser step
                with torch.cuda.stream(self._stream):
                    torch._foreach_copy_(self._targets, src)
                learner_stream.wait_stream(self._stream)        # before the next optimiser step
            else:
                torch._foreach_copy_(self._targets, src)
            self.version = int(version)
            self.slots.version[0] = self.version

    @torch.no_grad()
    def reset_actor(self, actor_index: int) -> None:
        """Reset the resident core state of ``actor_index``'s envs, and the one kept for its
        next unroll, to the episode-start state (a restarted actor)."""
        self._check_actor(actor_index)
        self._reset_rows(actor_index)

    def actor_state(self, actor_index: int) -> Dict[str, torch.Tensor]:
        """A CPU copy of the resident core state of ``actor_index``'s envs: {name: [E, ...]}
        (tests and diagnostics; actors never need it)."""
        self._check_actor(actor_index)
        rows = self._rows(actor_index)
        with self._device_work():
            return {k: v[rows].to("cpu", copy=True) for k, v in self.state.items()}

    def _check_actor(self, actor_index: int) -> None:
        if not 0 <= actor_index < self.num_actors:
            raise ValueError(f"actor_index must be in [0, {self.num_actors}), got {actor_index}")

    def take_stats(self) -> dict:
        """Counters and timings since the last call (see :class:`ServerStats`)."""
        out, self.stats = self.stats, ServerStats()
        return out.as_dict()

    # -- state helpers ------------------------------------------------------------------
    @contextlib.contextmanager
    def _device_work(self, wait: bool = True):
        """Under the lock, without gradients: on CUDA the body's work is queued on the
        server's stream and, with ``wait``, finished before the block ends."""
        with self._lock, torch.no_grad():
            if not self.cuda:
                yield
                return
            with torch.cuda.stream(self._stream):
                yield
            if wait:
                self._stream.synchronize()

    def _rows(self, actor: int) -> slice:
        E = self.envs_per_actor
        return slice(actor * E, (actor + 1) * E)

    def _reset_rows(self, actor: int) -> None:
        """The actor's rows of the resident and of the kept state back to the episode-start state."""
        rows = self._rows(actor)
        with self._device_work():
            for k in self.state:
                self.state[k][rows].copy_(self._fresh[k])
                self.unroll_start_state[k][rows].copy_(self._fresh[k])

    def _keep_unroll_start(self, actor: int) -> None:
        """Keep the actor's rows of the resident state: the initial core state of its next unroll.
        On CUDA the copy is queued on the server's stream, ahead of the step that follows."""
        rows = self._rows(actor)
        with self._device_work(wait=False):
            for k, v in self.state.items():
                self.unroll_start_state[k][rows].copy_(v[rows])

    # -- the server thread ----------------------------------------------------------------
    def _serve(self, num_threads: int) -> None:
        torch.set_num_threads(num_threads)
        torch.set_grad_enabled(False)
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, "listen")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._sel = sel
        pending: Dict[int, _Request] = {}         # actor -> its waiting act request
        try:
            while not self._stopping:
                due = planner.deadline(pending, self.timeout_s)
                timeout = None if due is None else max(0.0, due - time.perf_counter())
                for key, _ in sel.select(timeout):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        try:
                            os.read(self._wake_r, 4096)
                        except OSError:
                            pass
                    else:
                        peer = key.data
                        req = self._receive(peer)
                        if req == ACT or req == ACT_UNROLL_START:
                            if req == ACT_UNROLL_START:
                                self._keep_unroll_start(peer.actor)
                            pending[peer.actor] = _Request(peer, time.perf_counter())
                        elif req is not None and req[:1] == WRITE_INITIAL:
                            self._write_initial(peer, INITIAL.unpack(req[1:])[0])
                        elif req == RESET:
                            self._reset_rows(peer.actor)
                            self.stats.resets += 1
                            self._reply(peer, OK)
                for a in [a for a, r in pending.items() if self._by_actor.get(a) is not r.peer]:
                    del pending[a]                # the actor died or was replaced
                self._dispatch(pending)
        except Exception as e:   # pragma: no cover - a bug; actors then time out and are restarted
            self.last_error = f"{type(e).__name__}: {e}"
            log.exception("inference server thread failed")
        finally:
            sel.close()

    def _dispatch(self, pending: Dict[int, "_Request"]) -> None:
        """Run the forwards that are ready; what is left keeps waiting (``pending`` is updated)."""
        while pending:
            now = time.perf_counter()
            forwards = planner.forwards_to_run(pending, len(self._by_actor), now,
                                               envs_per_actor=self.envs_per_actor,
                                               max_batch=self.max_batch, timeout_s=self.timeout_s)
            if not forwards:
                return
            self.stats.time_wait_batch += now - min(r.arrival for r in pending.values())
            self._run_forwards(pending, forwards)

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return
        sock.setblocking(True)
        peer = _Peer(Connection(sock.detach()))
        self._peers[peer.conn.fileno()] = peer
        self._sel.register(peer.conn.fileno(), selectors.EVENT_READ, peer)

    def _close(self, peer: _Peer) -> None:
        fd = None
        try:
            fd = peer.conn.fileno()
        except OSError:
            pass
        if fd is not None and self._peers.get(fd) is peer:
            del self._peers[fd]
            try:
                self._sel.unregister(fd)
            except Exception:     # already unregistered, or the selector is closed
                pass
        if peer.actor >= 0 and self._by_actor.get(peer.actor) is peer:
            del self._by_actor[peer.actor]
        try:
            peer.conn.close()
        except OSError:
            pass

    def _reply(self, peer: _Peer, msg: bytes) -> None:
        try:
            peer.conn.send_bytes(msg)
        except (OSError, ValueError):
            self._close(peer)

    def _receive(self, peer: _Peer) -> Optional[bytes]:
        """Read one message; handles the hello handshake. Returns an act/write/reset request or None."""
        try:
            msg = peer.conn.recv_bytes(64)
        except (EOFError, OSError, ValueError):
            self._close(peer)
            return None
        if peer.actor < 0:
            self._hello(peer, msg)
            return None
        if msg not in REQUESTS and not (msg[:1] == WRITE_INITIAL and len(msg) == INITIAL.size + 1):
            self._reply(peer, ERROR + f"unknown request {msg[:16]!r}".encode())
            return None
        return msg

    def _hello(self, peer: _Peer, msg: bytes) -> None:
        if len(msg) != HELLO.size + 1 or msg[:1] != HELLO_TAG:
            self._reply(peer, ERROR + b"expected a hello message")
            self._close(peer)
            return
        actor, num_envs, pid = HELLO.unpack(msg[1:])
        if not 0 <= actor < self.num_actors:
            err = f"actor_index must be in [0, {self.num_actors}), got {actor!r}"
        elif num_envs != self.envs_per_actor:
            err = f"num_envs {num_envs!r} does not match the server's envs_per_actor {self.envs_per_actor}"
        else:
            err = ""
        if err:
            self._reply(peer, ERROR + err.encode())
            self._close(peer)
            return
        old = self._by_actor.get(actor)
        if old is not None:            # a restarted actor: the old incarnation is gone
            self._close(old)
        peer.actor, peer.pid = actor, int(pid)
        self._by_actor[actor] = peer
        self._reset_rows(actor)
        self._reply(peer, OK)

    def _write_initial(self, peer: _Peer, group: int) -> None:
        """Copy the peer's kept rows into the ``initial_core_state`` rows of ``group``."""
        bufs = self.buffers
        if bufs is None:
            err = "this inference server was given no rollout buffers to write initial core states into"
        elif not 0 <= group < bufs.layout.num_groups or bufs.layout.actor_of(group) != peer.actor:
            err = f"group {group} is not one of actor {peer.actor}'s groups"
        else:
            err = ""
        if err:
            self.stats.errors += 1
            self._reply(peer, ERROR + err.encode())
            return
        src = self._rows(peer.actor)
        r = bufs.layout.rows(group)
        dst = slice(r.start, r.stop)
        with self._device_work():                  # the actor reads the rows once OK comes back
            for k, v in self.unroll_start_state.items():
                bufs.initial_core_state[k][dst].copy_(v[src], non_blocking=True)
        self.stats.initial_states += 1
        self._reply(peer, OK)

    def _run_forwards(self, pending: Dict[int, "_Request"], forwards: List[Forward]) -> None:
        """Run ``forwards``; answer the requests whose last rows are done."""
        E = self.envs_per_actor
        for chunk in forwards:
            try:
                self._forward(chunk)
                reply = OK
            except Exception as e:
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("inference server: forward failed")
                reply = ERROR + self.last_error.encode()
            for a, _, hi in chunk:
                req = pending.get(a)
                if req is None:
                    continue
                req.done = hi
                if hi == E or reply != OK:       # the actor's last rows are done (or failed)
                    del pending[a]
                    self.stats.requests += 1
                    self.stats.errors += reply != OK
                    self._reply(req.peer, reply)

    def _forward(self, chunk: Forward) -> None:
        """One forward over the env rows of ``chunk``, resident state in and out."""
        t0 = time.perf_counter()
        E = self.envs_per_actor
        spans = [(a * E + lo, a * E + hi) for a, lo, hi in chunk]
        B = sum(e - s for s, e in spans)
        contiguous = all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
        sl = slice(spans[0][0], spans[-1][1]) if contiguous else None
        idx_cpu = None if contiguous else torch.cat([torch.arange(s, e) for s, e in spans])   # [B]
        with self._lock:
            if self.cuda:
                with torch.cuda.stream(self._stream):
                    rows = sl if contiguous else idx_cpu.to(self.device)
                    inputs = {}
                    for k in INPUT_KEYS:
                        buf = self._staging[k][:B]
                        if contiguous:
                            buf.copy_(self._io[k][sl])
                        else:
                            torch.index_select(self._io[k], 0, idx_cpu, out=buf)
                        inputs[k] = buf.to(self.device, non_blocking=True).unsqueeze(0)   # [1, B, ...]
                    out = self._step(inputs, rows)
                    host = {}
                    for k in OUTPUT_KEYS:
                        host[k] = self._staging[k][:B]
                        host[k].copy_(out[k][0], non_blocking=True)
                self._stream.synchronize()
            else:
                inputs = {k: (self._io[k][sl] if contiguous else self._io[k].index_select(0, idx_cpu)
                              ).unsqueeze(0) for k in INPUT_KEYS}                   # [1, B, ...]
                out = self._step(inputs, sl if contiguous else idx_cpu)
                host = {k: out[k][0] for k in OUTPUT_KEYS}
        for k in OUTPUT_KEYS:                                            # scatter the outputs
            if contiguous:
                self._io[k][sl].copy_(host[k])
            else:
                self._io[k].index_copy_(0, idx_cpu, host[k])
        self.stats.forwards += 1
        self.stats.rows += B
        self.stats.batch_rows[B] += 1
        self.stats.time_forward += time.perf_counter() - t0

    def _step(self, inputs: Dict[str, torch.Tensor], rows) -> Dict[str, torch.Tensor]:
        """agent(inputs [1, B, ...], state rows) and write the new state rows back."""
        if isinstance(rows, slice):
            state = {k: v[rows] for k, v in self.state.items()}                    # [B, ...] views
        else:
            state = {k: v.index_select(0, rows) for k, v in self.state.items()}    # [B, ...]
        with torch.inference_mode():
            out, new_state = self.agent(inputs, state, actions="sample")
        for k, v in new_state.items():
            if isinstance(rows, slice):
                self.state[k][rows].copy_(v)
            else:
                self.state[k].index_copy_(0, rows, v)
        return out
