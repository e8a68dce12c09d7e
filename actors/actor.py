"""The actor: step a vectorised env with the policy and write unrolls.

Data flow (docs/design.md#data-conventions)::

    env.step(action) -> obs, reward, done -> policy.act -> action, logits, baseline
                     -> entry t of the unroll (entry 0 = entry T of the last unroll)

The policy acts on entry 0 of each unroll with ``unroll_start=True``, which keeps the
core state that precedes it; at the start of the unroll the actor has the policy write
that state into ``initial_core_state`` (``write_initial_state``: a local policy copies
it, the inference server writes it from its device straight into the shared rollout
buffers); the learner re-runs the core from it.

:class:`UnrollWriter` is transport-agnostic (shared-memory buffers for the local
backend, plain tensors shipped through the object store for Ray). ``actor_main`` is
the entry point of a local actor process: it talks to the learner through its own
pipe (``("full", group, episodes, timing)`` up, ``("free", group)`` / ``("stop",)``
down), so one actor dying never corrupts a queue the others share.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from actors.config import ActorConfig
from actors.policy import ActingPolicy, LocalPolicy
from agents.model import ModelConfig
from envs import EnvConfig
from envs.base import EpisodeInfo


@dataclass
class Timing:
    """Seconds spent per activity since the last report."""

    env: float = 0.0
    inference: float = 0.0
    write: float = 0.0
    wait: float = 0.0
    steps: int = 0

    def as_dict(self) -> dict:
        return {"env": self.env, "inference": self.inference, "write": self.write,
                "wait": self.wait, "steps": self.steps}


class UnrollWriter:
    """Produces unrolls of T+1 entries from a vectorised env and a policy."""

    def __init__(self, env, policy: ActingPolicy, unroll_length: int, crash_at_step: int = 0):
        self.env = env
        self.policy = policy
        self.T = unroll_length
        self.crash_at_step = crash_at_step
        self.total_steps = 0
        self.timing = Timing()
        n = env.num_envs
        t0 = time.perf_counter()
        self.obs = env.reset()
        self.reward = np.zeros(n, np.float32)
        self.done = np.ones(n, bool)
        self.task = np.asarray(env.task_ids, np.int64)
        self.timing.env += time.perf_counter() - t0
        t0 = time.perf_counter()
        # the pending entry is entry 0 of the first unroll: the policy keeps the state before it
        self.action, self.logits, self.baseline = policy.act(self.obs, self.reward, self.done, self.task,
                                                             unroll_start=True)
        self.timing.inference += time.perf_counter() - t0

    def _write(self, views: Dict[str, torch.Tensor], t: int) -> None:
        views["obs"][:, t] = torch.from_numpy(np.asarray(self.obs))
        views["reward"][:, t] = torch.from_numpy(self.reward)
        views["done"][:, t] = torch.from_numpy(self.done)
        views["task"][:, t] = torch.from_numpy(self.task)
        views["action"][:, t] = torch.from_numpy(np.asarray(self.action, np.int64))
        views["policy_logits"][:, t] = self.logits
        views["baseline"][:, t] = self.baseline

    def fill(self, views: Dict[str, torch.Tensor], initial_state: Dict[str, torch.Tensor],
             heartbeat=None, *, group: Optional[int] = None) -> List[EpisodeInfo]:
        """Write one unroll into ``views`` ``{key: [N, T+1, ...]}`` and ``initial_state``
        ``{name: [N, ...]}``; ``group``: their group in the shared rollout buffers (None when
        they are not in them; an inference client needs it, see
        :meth:`~actors.policy.ActingPolicy.write_initial_state`)."""
        if not self.policy.carries_state:
            # a core without carry-over (e.g. srwm_no_carry) starts every unroll from the
            # episode-start state: re-act on the pending entry from that state so the
            # behaviour policy is exactly what the learner re-runs
            self.policy.reset_state()
            t0 = time.perf_counter()
            self.action, self.logits, self.baseline = self.policy.act(
                self.obs, self.reward, self.done, self.task, unroll_start=True)
            self.timing.inference += time.perf_counter() - t0
        t0 = time.perf_counter()
        self.policy.write_initial_state(initial_state, group)
        self._write(views, 0)
        self.timing.write += time.perf_counter() - t0
        episodes: List[EpisodeInfo] = []
        for t in range(1, self.T + 1):
            t0 = time.perf_counter()
            self.total_steps += 1
            if self.crash_at_step and self.total_steps == self.crash_at_step:
                raise RuntimeError(f"injected env failure at step {self.total_steps}")
            self.obs, reward, done, finished = self.env.step(self.action)
            self.reward = np.asarray(reward, np.float32)
            self.done = np.asarray(done, bool)
            episodes.extend(finished)
            t1 = time.perf_counter()
            # entry T is entry 0 of the next unroll: the policy keeps the state before it
            self.action, self.logits, self.baseline = self.policy.act(
                self.obs, self.reward, self.done, self.task, unroll_start=t == self.T)
            t2 = time.perf_counter()
            self._write(views, t)
            t3 = time.perf_counter()
            self.timing.env += t1 - t0
            self.timing.inference += t2 - t1
            self.timing.write += t3 - t2
            self.timing.steps += self.env.num_envs
            if heartbeat is not None:
                heartbeat()
        return episodes

    def take_timing(self) -> dict:
        d = self.timing.as_dict()
        self.timing = Timing()
        return d


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphans after kill -9)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except Exception:
        pass


@dataclass
class ActorSpec:
    """What an actor process needs to build its env and policy (picklable): the env, model
    and actor sections of the run's configuration (never the whole of it), the env's
    spaces, and which actor life it is."""

    actor_index: int
    incarnation: int            # restarts of this actor so far (each life seeds its envs anew)
    env: EnvConfig              # env family, tasks, base seed
    model: ModelConfig          # the agent an actor builds for itself (--inference actor)
    actor: ActorConfig          # envs per actor, unroll length, torch threads
    obs_shape: tuple
    obs_dtype: str
    num_actions: int
    num_tasks: int
    free_groups: List[int] = field(default_factory=list)
    action_dims: Optional[Tuple[int, ...]] = None   # the action layout; None: one head over num_actions
    crash_at_step: int = 0      # fault injection for tests: raise at this env step (0 = never;
                                # actors.crashes.injected_crash_step)


def build_actor_env(spec: ActorSpec):
    from envs import make_vec_env
    return make_vec_env(spec.env, spec.actor.envs_per_actor, actor_index=spec.actor_index,
                        num_actors=spec.actor.num_actors, seed_offset=spec.incarnation * 100_003)


def actor_main(spec: ActorSpec, buffers, shared_params, conn, heartbeats, inference_client=None) -> None:
    """Entry point of a local actor process."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # the trainer coordinates shutdown
    torch.set_num_threads(max(1, spec.actor.actor_threads))
    idx = spec.actor_index
    ppid = os.getppid()

    def beat():
        heartbeats[idx] = time.time()

    env = None
    try:
        beat()
        env = build_actor_env(spec)
        if inference_client is not None:
            policy = inference_client
            policy.connect(idx, env.num_envs)
        else:
            from agents.model import build_agent
            from envs.base import ObsSpec
            agent = build_agent(spec.model, ObsSpec(tuple(spec.obs_shape), spec.obs_dtype),
                                spec.num_actions, spec.num_tasks, spec.action_dims)
            policy = LocalPolicy(agent, env.num_envs, shared_params)
        version = policy.sync()
        writer = UnrollWriter(env, policy, spec.actor.unroll_length, crash_at_step=spec.crash_at_step)
        layout = buffers.layout
        free = set(spec.free_groups)
        slot = 0
        while True:
            group = layout.group_id(idx, slot)
            t0 = time.perf_counter()
            while group not in free or conn.poll():
                if not conn.poll(1.0):
                    beat()
                    if os.getppid() != ppid:
                        return
                    continue
                msg = conn.recv()
                if msg[0] == "free":
                    free.add(msg[1])
                elif msg[0] == "stop":
                    return
            writer.timing.wait += time.perf_counter() - t0
            free.discard(group)
            views, init_state = buffers.group_view(group)
            episodes = writer.fill(views, init_state, heartbeat=beat, group=group)
            buffers.policy_version[group] = version
            conn.send(("full", group, episodes, writer.take_timing()))
            version = policy.sync()
            slot = (slot + 1) % layout.num_groups_per_actor
    except (KeyboardInterrupt, BrokenPipeError, EOFError):
        pass
    except Exception as e:  # report, then die: the supervisor restarts us
        try:
            conn.send(("error", idx, f"{type(e).__name__}: {e}", traceback.format_exc()))
        except Exception:
            pass
        sys.exit(1)
    finally:
        if env is not None:
            try:
                env.close()
            except Exception:
                pass
