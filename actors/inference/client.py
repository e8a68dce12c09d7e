"""The inference client: the acting policy of an actor process with ``--inference learner``.

It provides :class:`actors.policy.ActingPolicy`: the actor writes its inputs into its
shared-memory request slot, wakes the server (:mod:`actors.inference.server`) with a
one-byte message over its Unix socket and reads the outputs from its response slot
(:mod:`actors.inference.wire`). The core state stays resident on the server, which also
writes each unroll's ``initial_core_state`` rows into the rollout buffers itself.
"""

from __future__ import annotations

import os
import time
from multiprocessing.connection import Client, Connection
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from actors.inference.wire import (ACT, ACT_UNROLL_START, ERROR, HELLO, HELLO_TAG, INITIAL, INPUT_KEYS,
                                   OUTPUT_KEYS, RESET, WRITE_INITIAL, InferenceServerError, InferenceSlots)


class InferenceClient:
    """:class:`actors.policy.ActingPolicy` served by the inference server on the learner's device.

    Picklable before :meth:`connect`; the connection is made in the actor process.
    """

    def __init__(self, address: str, slots: InferenceSlots, envs_per_actor: int, reply_timeout_s: float,
                 *, carries_state: bool):
        self.address = address
        # False for cores whose state is reset at every unroll start (srwm_no_carry)
        self.carries_state = carries_state
        self.slots = slots
        self.envs_per_actor = envs_per_actor
        self.reply_timeout_s = reply_timeout_s
        self.conn: Optional[Connection] = None
        self.actor_index = -1
        self._obs_shape = tuple(slots.io["obs"].shape[2:])

    def __getstate__(self):
        d = dict(self.__dict__)
        d["conn"] = None
        d["actor_index"] = -1
        return d

    def connect(self, actor_index: int, num_envs: int, timeout_s: float = 30.0) -> None:
        if num_envs != self.envs_per_actor:
            raise ValueError(f"num_envs {num_envs} does not match the inference server's "
                             f"envs_per_actor {self.envs_per_actor}")
        n_actors = self.slots.io["obs"].shape[0]
        if not 0 <= actor_index < n_actors:
            raise ValueError(f"actor_index must be in [0, {n_actors}), got {actor_index}")
        deadline = time.monotonic() + timeout_s
        while True:   # the server may still be binding its socket
            try:
                self.conn = Client(self.address, family="AF_UNIX")
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise ConnectionError(f"no inference server at {self.address}") from None
                time.sleep(0.05)
        self.conn.send_bytes(HELLO_TAG + HELLO.pack(int(actor_index), int(num_envs), os.getpid()))
        self._wait_reply()
        self.actor_index = actor_index
        io = self.slots.io
        self._in = {k: io[k][actor_index] for k in INPUT_KEYS}              # [E, ...] views
        self._out = {k: io[k][actor_index] for k in OUTPUT_KEYS}

    def _wait_reply(self) -> None:
        if not self.conn.poll(self.reply_timeout_s):
            raise TimeoutError(f"the inference server did not answer within {self.reply_timeout_s:.0f} s")
        msg = self.conn.recv_bytes()
        if msg[:1] == ERROR:
            raise InferenceServerError(msg[1:].decode(errors="replace"))

    def _call(self, request: bytes) -> None:
        if self.conn is None:
            raise RuntimeError("InferenceClient.connect() must be called before acting")
        self.conn.send_bytes(request)
        self._wait_reply()

    def sync(self) -> int:
        """The parameter version the server acts with (it always uses the learner's latest)."""
        return int(self.slots.version[0])

    def act(self, obs: np.ndarray, reward: np.ndarray, done: np.ndarray, task: np.ndarray,
            unroll_start: bool = False) -> Tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """One step on the server; ``unroll_start``: the server first keeps the resident state
        of this actor's envs as the next unroll's initial core state (same round trip)."""
        if self.conn is None:
            raise RuntimeError("InferenceClient.connect() must be called before acting")
        obs = np.asarray(obs)
        if obs.shape != (self.envs_per_actor,) + self._obs_shape:
            raise ValueError(f"obs must be [{self.envs_per_actor}, {', '.join(map(str, self._obs_shape))}], "
                             f"got {list(obs.shape)}")
        self._in["obs"].copy_(torch.from_numpy(obs))
        self._in["reward"].copy_(torch.from_numpy(np.asarray(reward, np.float32)))
        self._in["done"].copy_(torch.from_numpy(np.asarray(done, bool)))
        self._in["task"].copy_(torch.from_numpy(np.asarray(task, np.int64)))
        self._call(ACT_UNROLL_START if unroll_start else ACT)
        return (self._out["action"].numpy().copy(), self._out["policy_logits"].clone(),
                self._out["baseline"].clone())

    def write_initial_state(self, into: Dict[str, torch.Tensor], group: Optional[int]) -> None:
        """Have the server copy the kept state of this actor's envs (see :meth:`act`) from its
        device straight into the ``initial_core_state`` rows of ``group`` in the rollout
        buffers it was given; ``into``, this process's view of those rows, is not touched."""
        if group is None:
            raise ValueError("the inference server writes initial core states into the shared rollout "
                             "buffers only: write_initial_state needs the group of the rows")
        self._call(WRITE_INITIAL + INITIAL.pack(int(group)))

    def reset_state(self) -> None:
        """Reset the resident core state of this actor's envs to the episode-start state."""
        self._call(RESET)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None
