"""Pixel sanity tasks: ``pixel:see[:SIZE]`` and ``pixel:recall[:SIZE[:DELAY]]``.

Tiny image environments that check that an agent learns *from pixels*, through the
real convolutional encoders, in seconds instead of the hours a real game needs. A
coloured square appears in one of four positions (the quadrants of the frame, each
with its own colour); the rewarded action is the index of that position.

``SIZE`` picks the observation format and therefore the encoder (``--encoder auto``):

* ``64`` (default): RGB ``[3, 64, 64]`` uint8, like ProcGen -> the IMPALA ResNet;
* ``84``: grey ``[4, 84, 84]`` uint8, a stack of the last four frames like Atari
  (zeros before the episode's first frame) -> the Nature CNN.

Variants (``t`` = step within the episode):

* ``see``: episodes of 4 steps; every step shows a new random target and a correct
  action earns 0.25 (the last step also carries the "answer now" bar along the top edge). Needs no memory:
  the optimal return is 1.0, a random policy scores 0.25.
* ``recall``: the target is shown only at ``t = 0``; then ``DELAY`` blank frames
  follow (default 5), the last with the "answer now" bar, and the action taken there
  earns 1.0 if it names the target. The episode ends after that answer. Optimal 1.0,
  any memoryless policy 0.25. With ``SIZE`` 84 the frame stack remembers the last 4
  frames, so ``DELAY`` must be at least 4 for the task to need a memory core.

As everywhere (:mod:`envs.base`), ``done[i]`` marks the first observation of a new
episode and the reward returned with it is the last reward of the finished one.
Fully numpy-vectorised; seeds derive from the env config like every family.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from envs.base import ObsSpec, VecEnv
from envs.checks import check_actions
from envs.config import EnvConfig
from envs.episodes import EpisodeTracker
from envs.registry import EnvBuild, EnvFamily, register_env_family

VARIANTS = ("see", "recall")
SIZES = (64, 84)
NUM_TARGETS = 4
SEE_EPISODE_LENGTH = 4
DEFAULT_DELAY = 5
MAX_DELAY = 1000
STACK = 4
# RGB colour of the square at each position (top-left, top-right, bottom-left, bottom-right);
# in the grey format each becomes its own intensity.
COLOURS = np.array([[255, 64, 64], [64, 255, 64], [64, 128, 255], [255, 255, 64]], dtype=np.uint8)
BAR_VALUE = 255


def parse_pixel_arg(items: Sequence[str]) -> Tuple[str, int, int]:
    """Spec items after ``pixel:`` -> (variant, size, delay)."""
    if len(items) != 1:
        raise ValueError(f"pixel spec takes one task VARIANT[:SIZE[:DELAY]] (variants: "
                         f"{', '.join(VARIANTS)}), got {','.join(items) or 'none'!r}")
    parts = items[0].split(":")
    variant = parts[0].strip().lower()
    if variant not in VARIANTS:
        raise ValueError(f"unknown pixel variant {parts[0]!r}; valid variants: {', '.join(VARIANTS)}")
    if len(parts) > (3 if variant == "recall" else 2):
        form = "recall[:SIZE[:DELAY]]" if variant == "recall" else "see[:SIZE]"
        raise ValueError(f"pixel spec {items[0]!r} has too many fields; expected {form}")
    try:
        size = int(parts[1]) if len(parts) > 1 else SIZES[0]
        delay = int(parts[2]) if len(parts) > 2 else DEFAULT_DELAY
    except ValueError:
        raise ValueError(f"pixel spec {items[0]!r}: SIZE and DELAY must be integers") from None
    if size not in SIZES:
        raise ValueError(f"pixel SIZE={size} is not one of {', '.join(map(str, SIZES))}")
    if variant == "recall":
        lowest = STACK if size == 84 else 1
        if not lowest <= delay <= MAX_DELAY:
            raise ValueError(f"pixel recall DELAY={delay} is outside [{lowest}, {MAX_DELAY}]"
                             + (" (the 4-frame stack would show the target)" if delay < lowest else ""))
    return variant, size, delay


def pixel_task_name(variant: str, size: int, delay: int) -> str:
    return f"pixel:recall:{size}:{delay}" if variant == "recall" else f"pixel:see:{size}"


def _from_name(task: str) -> Tuple[str, int, int]:
    return parse_pixel_arg([task.split(":", 1)[1]])


def obs_spec_for(size: int) -> ObsSpec:
    return ObsSpec(shape=(3, 64, 64) if size == 64 else (STACK, 84, 84), dtype="uint8")


class PixelVecEnv(VecEnv):
    """N independent pixel-task episodes; see the module docstring."""

    def __init__(self, build: EnvBuild, variant: str, size: int, delay: int):
        self.variant, self.size, self.delay = variant, size, delay
        self.num_envs = build.num_envs
        self.obs_spec = obs_spec_for(size)
        self.num_actions = NUM_TARGETS
        self.task_names = list(build.tasks)
        self.task_ids = build.task_ids.copy()
        self._last_t = SEE_EPISODE_LENGTH - 1 if variant == "see" else delay
        self._rng = np.random.default_rng(build.seed())
        n = self.num_envs
        self._t = np.zeros(n, dtype=np.int64)          # [N] step within the episode
        self._target = np.zeros(n, dtype=np.int64)     # [N] position shown (or to recall)
        self._stack = np.zeros((n, STACK, 84, 84), dtype=np.uint8) if size == 84 else None
        self._tracker = EpisodeTracker(self.task_ids, self.task_names)
        self._started = False
        # square geometry: a side of 3/16 of the frame, centred in each quadrant
        side = size * 3 // 16
        self._boxes = []
        for pos in range(NUM_TARGETS):
            cy = size // 4 + (size // 2) * (pos // 2)
            cx = size // 4 + (size // 2) * (pos % 2)
            self._boxes.append((cy - side // 2, cy - side // 2 + side, cx - side // 2, cx - side // 2 + side))
        self._bar_rows = max(2, size // 16)
        grey = COLOURS.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        self._grey = np.clip(np.round(grey), 0, 255).astype(np.uint8)

    @property
    def targets(self) -> np.ndarray:
        """int64 [N]: every slot's current target position (for scripted policies in tests)."""
        return self._target.copy()

    def _frames(self) -> np.ndarray:
        """The current frame of every slot: RGB [N, 3, S, S] or grey [N, S, S] uint8."""
        n, s = self.num_envs, self.size
        rgb = self.size == 64
        frame = np.zeros((n, 3, s, s) if rgb else (n, s, s), dtype=np.uint8)
        show = np.ones(n, bool) if self.variant == "see" else (self._t == 0)
        for pos, (y0, y1, x0, x1) in enumerate(self._boxes):
            rows = np.flatnonzero(show & (self._target == pos))
            if rows.size:
                if rgb:
                    frame[rows, :, y0:y1, x0:x1] = COLOURS[pos][None, :, None, None]
                else:
                    frame[rows, y0:y1, x0:x1] = self._grey[pos]
        answer = np.flatnonzero(self._t == self._last_t)
        if answer.size:
            if rgb:
                frame[answer, :, :self._bar_rows, :] = BAR_VALUE
            else:
                frame[answer, :self._bar_rows, :] = BAR_VALUE
        return frame

    def _obs(self, new_episode: np.ndarray) -> np.ndarray:
        frame = self._frames()
        if self._stack is None:
            return frame
        self._stack[new_episode] = 0                      # a new episode starts from an empty stack
        self._stack[:, :-1] = self._stack[:, 1:]
        self._stack[:, -1] = frame
        return self._stack.copy()

    def reset(self) -> np.ndarray:
        self._t[:] = 0
        self._target[:] = self._rng.integers(NUM_TARGETS, size=self.num_envs)
        self._tracker.reset()
        self._started = True
        return self._obs(np.ones(self.num_envs, bool))

    def step(self, actions: np.ndarray):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = check_actions(actions, self.num_envs, self.num_actions)
        answering = self._t == self._last_t if self.variant == "recall" else np.ones(self.num_envs, bool)
        correct = answering & (actions == self._target)
        reward = correct.astype(np.float32) * (1.0 / SEE_EPISODE_LENGTH if self.variant == "see" else 1.0)
        done = self._t == self._last_t                                   # [N]
        self._t += 1
        self._t[done] = 0
        if self.variant == "see":
            self._target[:] = self._rng.integers(NUM_TARGETS, size=self.num_envs)
        elif done.any():
            self._target[done] = self._rng.integers(NUM_TARGETS, size=int(done.sum()))
        finished = self._tracker.update(reward, done)
        return self._obs(done), reward, done, finished


@register_env_family("pixel")
class PixelFamily(EnvFamily):
    """``pixel:see[:SIZE]`` and ``pixel:recall[:SIZE[:DELAY]]``: pixel sanity tasks, 4 actions."""

    def parse_tasks(self, items: Sequence[str]) -> List[str]:
        return [pixel_task_name(*parse_pixel_arg(items))]

    def describe(self, cfg: EnvConfig, tasks: List[str]) -> Tuple[ObsSpec, int]:
        return obs_spec_for(_from_name(tasks[0])[1]), NUM_TARGETS

    def make(self, build: EnvBuild) -> VecEnv:
        return PixelVecEnv(build, *_from_name(build.tasks[0]))
