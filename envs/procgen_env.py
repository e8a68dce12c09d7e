"""ProcGen (Cobbe et al., "Leveraging Procedural Generation to Benchmark Reinforcement
Learning", ICML 2020) through procgen-mirror's vectorised ``procgen.ProcgenGym3Env``.

One library env object per task present in the actor steps all of that task's slots
in one ``act`` + ``observe`` call. gym3 semantics map directly onto ours: ``observe()``
returns ``(reward, obs, first)`` where ``first[i]`` marks the first observation of a new
episode and ``reward[i]`` is the reward of the previous action, i.e. the last reward of
the finished episode when ``first[i]`` is set (docs/design.md#data-conventions).

Observations are ``[N, 3, 64, 64]`` uint8, channels first. They are a zero-copy
channels-first *view* of a fresh ``[N, 64, 64, 3]`` buffer (new every step, so it may
be kept), with the strides of torch's ``channels_last`` memory format, not a
C-contiguous array: a contiguous transposing copy costs about a third of the
library's own step time (``python -m launch.bench_envs``), while the consumer copies
observations into its rollout buffers anyway and the transpose happens inside that
copy (``buffer.copy_(torch.from_numpy(obs))``). Convolutions take the view as it is
(channels_last), possibly rounding differently in the last bits than on a contiguous
copy. Call ``np.ascontiguousarray(obs)`` where a contiguous array is needed.

Level seeds: procgen reports ``prev_level_seed`` (the level the step was played on)
and ``level_seed`` (the level of the returned observation); on a step with
``first[i]`` set, ``prev_level_seed`` is the level of the episode that just ended,
which is what :class:`~envs.base.EpisodeInfo` records.

Distribution modes per game follow procgen's ``Game::parse_options`` (src/game.cpp:
extreme and memory modes are asserted for a fixed list of games, and a failed assert
kills the process) and ``EXPLORATION_LEVEL_SEEDS`` in procgen/env.py, so they are
checked here before any library object exists. Exploration mode plays one fixed level
per game and ignores ``start_level``/``num_levels``.
"""

from __future__ import annotations

import contextlib
import io
from typing import List, Sequence, Tuple

import numpy as np

from envs.base import ObsSpec, VecEnv
from envs.checks import check_actions
from envs.config import INT32_MAX, LEVEL_SPLITS, EnvConfig, level_range
from envs.episodes import EpisodeTracker
from envs.registry import EnvBuild, EnvFamily, register_env_family

PROCGEN_GAMES: Tuple[str, ...] = (
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball",
    "fruitbot", "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
)

# Which games have each distribution mode (procgen src/game.cpp and procgen/env.py).
MODE_GAMES = {
    "easy": frozenset(PROCGEN_GAMES),
    "hard": frozenset(PROCGEN_GAMES),
    "extreme": frozenset({"chaser", "dodgeball", "leaper", "starpilot"}),
    "memory": frozenset({"caveflyer", "dodgeball", "heist", "jumper", "maze", "miner"}),
    "exploration": frozenset({"caveflyer", "climber", "coinrun", "heist", "jumper", "leaper",
                              "maze", "ninja"}),
}

PROCGEN_NUM_ACTIONS = 15
PROCGEN_OBS = ObsSpec(shape=(3, 64, 64), dtype="uint8")


def import_procgen():
    """Import procgen quietly (it imports the legacy ``gym``, which prints a notice)."""
    with contextlib.redirect_stderr(io.StringIO()):
        import procgen
    return procgen


def _finished_level_seeds(env) -> np.ndarray:
    """int64 [n]: ``prev_level_seed`` of every env of a ``ProcgenGym3Env`` after ``observe()``.

    Reads gym3's info buffers (``CEnv._info``, refreshed by ``observe``) directly:
    ``get_info()`` builds one dict per env and costs about as much as the rest of
    this layer together. Falls back to ``get_info()`` if gym3 ever drops the attribute.
    """
    buffers = getattr(env, "_info", None)
    if isinstance(buffers, dict) and "prev_level_seed" in buffers:
        return buffers["prev_level_seed"].astype(np.int64)
    return np.array([d["prev_level_seed"] for d in env.get_info()], dtype=np.int64)


class ProcgenVecEnv(VecEnv):
    """N ProcGen slots, one ``ProcgenGym3Env`` per task present; see the module docstring."""

    def __init__(self, build: EnvBuild):
        procgen = import_procgen()
        cfg = build.cfg
        start_level, num_levels = level_range(cfg)
        self.num_envs = build.num_envs
        self.obs_spec = PROCGEN_OBS
        self.num_actions = PROCGEN_NUM_ACTIONS
        self.task_names = list(build.tasks)
        self.task_ids = build.task_ids.copy()
        # groups: (task id, library env, local slots int64 [n_k])
        self._groups: List[Tuple[int, object, np.ndarray]] = []
        for tid, game in enumerate(self.task_names):
            slots = build.slots_of(tid)
            if slots.size == 0:
                continue
            kwargs = dict(num=int(slots.size), env_name=game,
                          distribution_mode=cfg.distribution_mode,
                          rand_seed=build.seed(tid), num_threads=cfg.env_threads)
            if cfg.distribution_mode != "exploration":  # exploration fixes its own level
                kwargs.update(num_levels=num_levels, start_level=start_level)
            self._groups.append((tid, procgen.ProcgenGym3Env(**kwargs), slots))
        # One group holding every slot in order: hand the library's arrays through as they are.
        self._single = (len(self._groups) == 1)
        self._tracker = EpisodeTracker(self.task_ids, self.task_names)
        self._started = False
        self._closed = False

    def _observe(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """obs HWC uint8 [N, 64, 64, 3], reward f32 [N], first bool [N], and the finished
        episodes' level seeds int64 [N] (None when no episode finished)."""
        if self._single:
            _, env, _ = self._groups[0]
            rew, ob, first = env.observe()  # fresh copies (gym3 reuse_arrays=False)
            seeds = _finished_level_seeds(env) if first.any() else None
            return ob["rgb"], rew, first, seeds
        n = self.num_envs
        obs = np.empty((n, 64, 64, 3), dtype=np.uint8)
        rew_all = np.empty(n, dtype=np.float32)
        first_all = np.empty(n, dtype=bool)
        seeds_all = None
        for _, env, slots in self._groups:
            rew, ob, first = env.observe()
            obs[slots] = ob["rgb"]
            rew_all[slots] = rew
            first_all[slots] = first
            if first.any():
                if seeds_all is None:
                    seeds_all = np.full(n, -1, dtype=np.int64)
                seeds_all[slots] = _finished_level_seeds(env)
        return obs, rew_all, first_all, seeds_all

    def reset(self) -> np.ndarray:
        if self._closed:
            raise RuntimeError("reset() on a closed ProcgenVecEnv")
        if self._started:
            # gym3 envs cannot be reset directly; action -1 makes procgen end every
            # episode at once (Game::step's forced reset). The cut episodes are not reported.
            for _, env, slots in self._groups:
                env.act(np.full(slots.size, -1, dtype=np.int32))
        obs, _, _, _ = self._observe()
        self._tracker.reset()
        self._started = True
        return obs.transpose(0, 3, 1, 2)  # [N, 3, 64, 64] view

    def step(self, actions: np.ndarray):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = check_actions(actions, self.num_envs, self.num_actions)  # procgen casts to int32
        if self._single:
            self._groups[0][1].act(actions)
        else:
            for _, env, slots in self._groups:
                env.act(actions[slots])
        obs, reward, done, seeds = self._observe()
        finished = self._tracker.update(reward, done, seeds, any_done=seeds is not None)
        return obs.transpose(0, 3, 1, 2), reward, done, finished

    def close(self) -> None:
        if not self._closed:
            for _, env, _ in self._groups:
                env.close()
            self._closed = True


@register_env_family("procgen")
class ProcgenFamily(EnvFamily):
    """``procgen:GAME[,GAME...]``: the 16 ProcGen games, 15 actions, [3, 64, 64] uint8."""

    has_level_splits = True

    def parse_tasks(self, items: Sequence[str]) -> List[str]:
        if not items:
            raise ValueError(f"procgen spec names no game; valid games: {', '.join(PROCGEN_GAMES)}")
        tasks = []
        for item in items:
            game = item.lower()
            if game not in PROCGEN_GAMES:
                raise ValueError(f"unknown procgen game {item!r}; valid games: {', '.join(PROCGEN_GAMES)}")
            if game in tasks:
                raise ValueError(f"procgen game {game!r} appears twice in the task set")
            tasks.append(game)
        return tasks

    def validate(self, cfg: EnvConfig, tasks: List[str]) -> None:
        mode = cfg.distribution_mode
        if mode not in MODE_GAMES:
            raise ValueError(f"unknown procgen distribution_mode {mode!r}; valid modes: "
                             f"{', '.join(MODE_GAMES)}")
        lacking = [g for g in tasks if g not in MODE_GAMES[mode]]
        if lacking:
            raise ValueError(f"procgen distribution_mode {mode!r} is not available for "
                             f"{', '.join(lacking)}; games with {mode} mode: "
                             f"{', '.join(sorted(MODE_GAMES[mode]))}")
        if cfg.split and cfg.split not in LEVEL_SPLITS:
            raise ValueError(f"unknown level split {cfg.split!r}; valid splits: {', '.join(LEVEL_SPLITS)}")
        if cfg.start_level < 0:
            raise ValueError(f"start_level={cfg.start_level} is negative")
        if cfg.num_levels < 0:
            raise ValueError(f"num_levels={cfg.num_levels} is negative (0 means unlimited)")
        if mode == "exploration":
            if cfg.split:
                raise ValueError(f"split {cfg.split!r} cannot apply in exploration mode, "
                                 f"which plays one fixed level per game")
            return  # exploration ignores start_level/num_levels
        if cfg.num_levels == 0 and cfg.start_level != 0 and not cfg.split:
            raise ValueError(f"start_level={cfg.start_level} has no effect with num_levels=0 "
                             f"(unlimited levels draw from all seeds); set num_levels > 0")
        start, num = level_range(cfg)
        if start + num > INT32_MAX:
            raise ValueError(f"start_level+num_levels={start + num} overflows int32 "
                             f"(max {INT32_MAX})")

    def describe(self, cfg: EnvConfig, tasks: List[str]) -> Tuple[ObsSpec, int]:
        return PROCGEN_OBS, PROCGEN_NUM_ACTIONS

    def make(self, build: EnvBuild) -> VecEnv:
        return ProcgenVecEnv(build)
