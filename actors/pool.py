"""Local actor processes and their supervision.

The pool spawns one process per actor (``torch.multiprocessing``, spawn), each with its
own duplex pipe to the trainer. It

* delivers ``("full", group, episodes, timing)`` events to the learner loop,
* hands groups back to their actor once the learner has copied them out,
* watches every actor: a process that exits, breaks its pipe, reports an error or
  stops beating its heartbeat is (killed and) restarted with fresh envs; the group it
  was writing is discarded, never trained on; groups it had already handed over stay
  valid and are returned to the new incarnation once consumed;
* stops the run when more than ``max_crashes_per_minute`` crashes happen in a minute,
  naming the actor and its error;
* fails loudly (:class:`ActorProtocolError`) when an actor breaks the protocol in a way
  only a bug can (a group written twice): that is not a crash to restart.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Dict, List, Optional, Set

import torch
import torch.multiprocessing as mp

from actors.actor import ActorSpec, actor_main
from actors.config import ActorConfig
from actors.crashes import ActorCrashLoop, CrashWindow, injected_crash_step
from agents.model import ModelConfig
from envs import EnvConfig

if TYPE_CHECKING:
    from actors.inference import InferenceServer

log = logging.getLogger(__name__)

__all__ = ["LocalActorPool", "ActorCrashLoop", "ActorProtocolError", "Event"]


class ActorProtocolError(RuntimeError):
    """An actor broke the pool's protocol (a bug, not a crash): the run stops."""


@dataclass
class _ActorSlot:
    index: int
    process: Optional[mp.Process] = None
    conn: object = None
    incarnation: int = 0
    last_error: str = ""


@dataclass
class Event:
    kind: str             # "full"
    group: int
    actor: int
    episodes: list = field(default_factory=list)
    timing: dict = field(default_factory=dict)


class LocalActorPool:
    """``env``, ``model``, ``actor``: the sections of the run's configuration every actor is
    built from (:class:`~actors.actor.ActorSpec`); the pool itself reads ``actor`` (number of
    actors, heartbeat timeout, crash limit)."""

    def __init__(self, buffers, shared_params, *, env: EnvConfig, model: ModelConfig, actor: ActorConfig,
                 obs_shape, obs_dtype, num_actions, num_tasks,
                 inference_server: Optional["InferenceServer"] = None):
        self.env, self.model, self.actor = env, model, actor
        self.buffers = buffers
        self.layout = buffers.layout
        self.shared_params = shared_params
        self.obs = (tuple(obs_shape), obs_dtype, num_actions, num_tasks)
        self.inference_server = inference_server
        self.ctx = mp.get_context("spawn")
        n = actor.num_actors
        self.heartbeats = torch.zeros(n, dtype=torch.float64).share_memory_()
        self.slots = [_ActorSlot(i) for i in range(n)]
        self.held: Set[int] = set()           # groups handed to the learner, not yet released
        self.restarts = 0
        self.crashes = CrashWindow(actor.max_crashes_per_minute)
        self.closed = False

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        for slot in self.slots:
            self._spawn(slot)

    def _spawn(self, slot: _ActorSlot) -> None:
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        groups = [self.layout.group_id(slot.index, s) for s in range(self.layout.num_groups_per_actor)]
        free = [g for g in groups if g not in self.held]
        obs_shape, obs_dtype, num_actions, num_tasks = self.obs
        spec = ActorSpec(slot.index, slot.incarnation, self.env, self.model, self.actor, obs_shape, obs_dtype,
                         num_actions, num_tasks, free, action_dims=self.buffers.action_dims,
                         crash_at_step=injected_crash_step(slot.index, slot.incarnation))
        client = self.inference_server.client() if self.inference_server is not None else None
        self.heartbeats[slot.index] = time.time()
        p = self.ctx.Process(target=actor_main, name=f"actor-{slot.index}",
                             args=(spec, self.buffers, self.shared_params, child_conn,
                                   self.heartbeats, client), daemon=True)
        p.start()
        child_conn.close()
        slot.process, slot.conn = p, parent_conn

    def _restart(self, slot: _ActorSlot, reason: str) -> None:
        slot.last_error = reason
        log.warning("actor %d died (%s); restarting", slot.index, reason)
        self._kill(slot)
        self.crashes.record(slot.index, reason)
        if self.inference_server is not None:
            self.inference_server.reset_actor(slot.index)
        slot.incarnation += 1
        self.restarts += 1
        self._spawn(slot)

    def _kill(self, slot: _ActorSlot) -> None:
        p = slot.process
        if p is not None:
            if p.is_alive():
                p.kill()
            p.join(timeout=5)
        if slot.conn is not None:
            try:
                slot.conn.close()
            except Exception:
                pass
        slot.process, slot.conn = None, None

    def stop(self, timeout: float = 10.0) -> None:
        """Ask every actor to stop, then join (kill what does not exit in time)."""
        if self.closed:
            return
        self.closed = True
        for slot in self.slots:
            if slot.conn is not None:
                try:
                    slot.conn.send(("stop",))
                except Exception:
                    pass
        deadline = time.monotonic() + timeout
        for slot in self.slots:
            p = slot.process
            if p is not None:
                p.join(timeout=max(0.0, deadline - time.monotonic()))
        for slot in self.slots:
            self._kill(slot)

    # -- events ----------------------------------------------------------------------
    def poll(self, timeout: float) -> List[Event]:
        """Wait up to ``timeout`` s for actor messages; restart dead actors."""
        conns = {slot.conn: slot for slot in self.slots if slot.conn is not None}
        sentinels = {slot.process.sentinel: slot for slot in self.slots if slot.process is not None}
        ready = wait(list(conns) + list(sentinels), timeout=timeout)
        events: List[Event] = []
        dead: Dict[int, str] = {}
        for r in ready:
            if r in conns:
                slot = conns[r]
                while True:
                    try:
                        if not slot.conn.poll():
                            break
                        msg = slot.conn.recv()
                    except (EOFError, OSError, ConnectionError) as e:
                        dead.setdefault(slot.index, f"pipe closed ({type(e).__name__})")
                        break
                    except Exception as e:   # a torn message from a killed actor
                        dead.setdefault(slot.index, f"unreadable message ({type(e).__name__}: {e})")
                        break
                    if msg[0] == "full":
                        _, group, episodes, timing = msg
                        if group in self.held:   # a bug, not a crash: restarting would hide it
                            raise ActorProtocolError(
                                f"actor {slot.index} wrote group {group} twice (the learner still holds it)")
                        self.held.add(group)
                        events.append(Event("full", group, slot.index, episodes, timing))
                    elif msg[0] == "error":
                        dead[slot.index] = msg[2]
                        break
        for slot in self.slots:
            p = slot.process
            if p is not None and not p.is_alive() and slot.index not in dead:
                dead[slot.index] = f"process exited with code {p.exitcode}"
        now = time.time()
        hb_timeout = self.actor.heartbeat_timeout_s
        for slot in self.slots:
            if slot.index not in dead and now - float(self.heartbeats[slot.index]) > hb_timeout:
                dead[slot.index] = f"no heartbeat for {hb_timeout:.0f} s"
        for i, reason in dead.items():
            self._restart(self.slots[i], reason)
        return events

    def release(self, group: int) -> None:
        """The learner has copied ``group`` out: hand it back to its actor."""
        self.held.discard(group)
        slot = self.slots[self.layout.actor_of(group)]
        if slot.conn is not None:
            try:
                slot.conn.send(("free", group))
            except Exception:
                pass   # the actor is dying; its next incarnation gets the group as free

    def alive(self) -> List[bool]:
        return [s.process is not None and s.process.is_alive() for s in self.slots]

    def pids(self) -> List[int]:
        return [s.process.pid for s in self.slots if s.process is not None]
