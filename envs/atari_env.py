"""Atari 2600 games (Bellemare et al., "The Arcade Learning Environment", JAIR 2013) with
the IMPALA preprocessing (Espeholt et al., 2018; docs/design.md#atari): 84x84 grey frames,
action repeat 4 with a max-pool over the last two frames, a stack of the last 4 frames,
up to 30 no-op starts, a lost life ends the training episode but not the evaluation one.

Backend: ale-py's own vectorised ``ale_py.vector_env.AtariVectorEnv`` (a gymnasium
``VectorEnv`` whose preprocessing runs in C++: the same steps as gymnasium's
``AtariPreprocessing`` + ``FrameStackObservation``, including OpenCV's INTER_AREA resize).
gymnasium's ``AtariPreprocessing`` itself cannot run here: it needs ``opencv-python``,
which is not a project dependency. One ``AtariVectorEnv`` per game present in the actor,
autoreset mode SAME_STEP, so ``done[i]`` marks the first observation of a new episode and
the reward returned with it is the last reward of the finished one (docs/design.md#data-conventions).

Episodes and returns:

- Evaluation mode (``eval_mode=True``): an episode is a whole game, all lives.
- Training mode: a lost life ends the agent's episode (``done``), and the game goes on
  from where it was (DeepMind's ``EpisodicLifeEnv`` semantics, ALE ``life_loss_info``);
  the emulator restarts only at game over. Each life is reported as one
  :class:`~envs.base.EpisodeInfo`, so training returns are per-life returns; the sum over
  a game's lives is the game score. (gymnasium's ``terminal_on_life_loss`` would instead
  restart the whole game after every lost life.)
- Returns are sums of the env's own unclipped rewards; clipping is the learner's job.
- ``max_episode_frames`` caps the emulator frames stepped by agent actions in one game
  (no-op starts not counted): 108,000 frames = 27,000 agent steps. It ends the episode
  as a truncation (still ``done``).
- No FIRE-on-reset; ``sticky_action_prob`` is ALE's ``repeat_action_probability``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, List, Sequence, Tuple

import numpy as np

from envs.base import ObsSpec, VecEnv
from envs.checks import check_actions
from envs.config import EnvConfig
from envs.episodes import EpisodeTracker
from envs.registry import EnvBuild, EnvFamily, register_env_family

ATARI_OBS = ObsSpec(shape=(4, 84, 84), dtype="uint8")
FULL_ACTION_SPACE = 18


def _rom_name(rom_id: str) -> str:
    """``space_invaders`` -> ``SpaceInvaders`` (ALE's own naming, as in ``ALE/SpaceInvaders-v5``)."""
    return rom_id.title().replace("_", "")


@lru_cache(maxsize=1)
def _rom_table() -> Dict[str, str]:
    """lower-case key without underscores -> rom id, for every ROM shipped inside ale-py."""
    from ale_py import roms
    return {rom.replace("_", ""): rom for rom in roms.get_all_rom_ids()}


def rom_id_of(name: str) -> str:
    """ALE game name, case-insensitive (``Pong``, ``pong``, ``space_invaders``) -> rom id."""
    key = name.strip().lower().replace("_", "")
    table = _rom_table()
    if key not in table:
        names = ", ".join(sorted(_rom_name(r) for r in table.values()))
        raise ValueError(f"unknown Atari game {name!r}; valid games: {names}")
    return table[key]


@lru_cache(maxsize=None)
def minimal_action_set(rom_id: str) -> Tuple[int, ...]:
    """The game's minimal ALE action set (loads the ROM; no stepping)."""
    from ale_py import ALEInterface, LoggerMode, roms
    ALEInterface.setLoggerMode(LoggerMode.Error)
    ale = ALEInterface()
    ale.loadROM(roms.get_rom_path(rom_id))
    return tuple(int(a.value) for a in ale.getMinimalActionSet())


def _num_actions(cfg: EnvConfig, rom_ids: Sequence[str]) -> int:
    if cfg.full_action_space:
        return FULL_ACTION_SPACE
    return len(minimal_action_set(rom_ids[0]))


class AtariVecEnv(VecEnv):
    """N Atari slots, one ``AtariVectorEnv`` per game present; see the module docstring."""

    def __init__(self, build: EnvBuild):
        from ale_py import ALEInterface, LoggerMode
        from ale_py.vector_env import AtariVectorEnv
        from gymnasium.vector import AutoresetMode

        ALEInterface.setLoggerMode(LoggerMode.Error)
        cfg = build.cfg
        self.num_envs = build.num_envs
        self.obs_spec = ATARI_OBS
        self.task_names = list(build.tasks)
        self.task_ids = build.task_ids.copy()
        rom_ids = [rom_id_of(t) for t in self.task_names]
        self.num_actions = _num_actions(cfg, rom_ids)
        # groups: (task id, vector env, local slots int64 [n_k], reset seeds int64 [n_k])
        self._groups: List[Tuple[int, object, np.ndarray, np.ndarray]] = []
        for tid, rom in enumerate(rom_ids):
            slots = build.slots_of(tid)
            if slots.size == 0:
                continue
            vec = AtariVectorEnv(
                rom, int(slots.size),
                frameskip=4, maxpool=True, grayscale=True, img_height=84, img_width=84,
                stack_num=4, noop_max=cfg.noop_max,
                episodic_life=False, life_loss_info=not cfg.eval_mode,
                reward_clipping=False, use_fire_reset=False,
                repeat_action_probability=cfg.sticky_action_prob,
                full_action_space=cfg.full_action_space,
                max_num_frames_per_episode=cfg.max_episode_frames,
                autoreset_mode=AutoresetMode.SAME_STEP,
                num_threads=max(1, cfg.env_threads),
            )
            seeds = np.array([build.seed(int(i)) for i in slots], dtype=np.int64)
            self._groups.append((tid, vec, slots, seeds))
        self._single = (len(self._groups) == 1)
        self._tracker = EpisodeTracker(self.task_ids, self.task_names)
        self._seeded = False
        self._started = False
        self._closed = False

    def reset(self) -> np.ndarray:
        if self._closed:
            raise RuntimeError("reset() on a closed AtariVecEnv")
        obs = np.empty((self.num_envs, *ATARI_OBS.shape), dtype=np.uint8)
        for _, vec, slots, seeds in self._groups:
            # Seed once; later resets continue each emulator's random stream.
            o, _ = vec.reset(seed=None if self._seeded else seeds)
            obs[slots] = o
        self._seeded = True
        self._started = True
        self._tracker.reset()
        return obs

    @staticmethod
    def _in_order(env_id: np.ndarray, *arrays: np.ndarray):
        """ALE returns results tagged with env ids; put them in slot order if they are not."""
        if (np.diff(env_id) == 1).all() and env_id[0] == 0:
            return arrays
        order = np.argsort(env_id)
        return tuple(a[order] for a in arrays)

    def step(self, actions: np.ndarray):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = check_actions(actions, self.num_envs, self.num_actions).astype(np.int64, copy=False)
        for _, vec, slots, _ in self._groups:
            vec.send(actions if self._single else actions[slots])
        if self._single:
            obs, rew, term, trunc, info = self._groups[0][1].recv()
            obs, rew, term, trunc = self._in_order(info["env_id"], obs, rew, term, trunc)
            reward = rew.astype(np.float32)
            done = term | trunc
        else:
            obs = np.empty((self.num_envs, *ATARI_OBS.shape), dtype=np.uint8)
            reward = np.empty(self.num_envs, dtype=np.float32)
            done = np.empty(self.num_envs, dtype=bool)
            for _, vec, slots, _ in self._groups:
                o, rew, term, trunc, info = vec.recv()
                o, rew, term, trunc = self._in_order(info["env_id"], o, rew, term, trunc)
                obs[slots] = o
                reward[slots] = rew
                done[slots] = term | trunc
        finished = self._tracker.update(reward, done)
        return obs, reward, done, finished

    def close(self) -> None:
        if not self._closed:
            for _, vec, _, _ in self._groups:
                vec.close()
            self._closed = True


@register_env_family("atari")
class AtariFamily(EnvFamily):
    """``atari:GAME[,GAME...]``: ALE games by name (case-insensitive), [4, 84, 84] uint8."""

    def parse_tasks(self, items: Sequence[str]) -> List[str]:
        if not items:
            raise ValueError("atari spec names no game; expected e.g. 'atari:Pong'")
        tasks = []
        for item in items:
            name = _rom_name(rom_id_of(item))
            if name in tasks:
                raise ValueError(f"Atari game {name!r} appears twice in the task set")
            tasks.append(name)
        return tasks

    def validate(self, cfg: EnvConfig, tasks: List[str]) -> None:
        if not 0.0 <= cfg.sticky_action_prob <= 1.0:
            raise ValueError(f"sticky_action_prob={cfg.sticky_action_prob} is outside [0, 1]")
        if cfg.noop_max < 0:
            raise ValueError(f"noop_max={cfg.noop_max} is negative")
        if cfg.max_episode_frames < 4:
            raise ValueError(f"max_episode_frames={cfg.max_episode_frames} is below one agent step (4 frames)")
        if len(tasks) > 1 and not cfg.full_action_space:
            sets = {t: minimal_action_set(rom_id_of(t)) for t in tasks}
            if len(set(sets.values())) > 1:
                sizes = ", ".join(f"{t}={len(s)}" for t, s in sets.items())
                raise ValueError(f"Atari games in the task set have different minimal action sets "
                                 f"({sizes}); set full_action_space=True")

    def describe(self, cfg: EnvConfig, tasks: List[str]) -> Tuple[ObsSpec, int]:
        return ATARI_OBS, _num_actions(cfg, [rom_id_of(t) for t in tasks])

    def make(self, build: EnvBuild) -> VecEnv:
        return AtariVecEnv(build)
