"""Environment options (one dataclass, every field a future command-line flag) and
the environment-spec string.

The spec string names a family and its tasks::

    procgen:bigfish                                     one ProcGen game
    procgen:bigfish,fruitbot,maze,leaper,plunder,starpilot   a multi-task set
    atari:Pong   atari:Pong,Breakout                    ALE game names, case-insensitive
    gym:CartPole-v1                                     any registered gymnasium env
    gym:popgym:popgym-RepeatFirstEasy-v0                import a module, then make its env id
    gym:CartPole-v1,Acrobot-v1                          a multi-task set (equal spaces)
    popgym:RepeatPreviousEasy,RepeatFirstEasy           POPGym envs by short name
    majority   majority:LEN[:K]                         the majority-vote (integration) task
    memory   memory:DELAY   memory:DELAY:K              the cue-recall memory task
    counting   counting:EPISODE_LEN                     the deterministic counting test env
    pixel:see:64   pixel:recall:84:5                    pixel sanity tasks (envs.pixel_env)

Level splits follow docs/design.md#level-splits (the SRWM paper's evaluation protocol, Irie
et al., ICML 2022): 200 levels each, starting at 0 (train), 1000, 1200, 1400 (test1-3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

INT32_MAX = 2**31 - 1

# name -> (start_level, num_levels); docs/design.md#level-splits.
LEVEL_SPLITS: Dict[str, Tuple[int, int]] = {
    "train": (0, 200),
    "test1": (1000, 200),
    "test2": (1200, 200),
    "test3": (1400, 200),
}

DEFAULT_ENV = "procgen:bigfish,fruitbot,maze,leaper,plunder,starpilot"


@dataclass
class EnvConfig:
    """Options of the environment layer; see :mod:`envs` for what each family reads."""

    env: str = field(default=DEFAULT_ENV, metadata={"help": (
        "environment spec: procgen:GAME[,GAME...] | atari:GAME[,GAME...] | "
        "gym:[MODULE:]ENV_ID[,...] | popgym:NAME[,NAME...] | memory[:DELAY[:K]] | "
        "majority[:LEN[:K]] | counting[:EPISODE_LEN] | pixel:see[:SIZE] | pixel:recall[:SIZE[:DELAY]]; "
        "a comma list is a multi-task set")})
    env_import: str = field(default="", metadata={"help": (
        "comma list of Python modules to import before the env is made (they register "
        "gymnasium envs); imported in the trainer, every actor and evaluation")})
    distribution_mode: str = field(default="easy", metadata={"help": (
        "ProcGen level distribution: easy, hard, extreme, memory or exploration "
        "(memory, extreme and exploration exist only for some games)")})
    num_levels: int = field(default=200, metadata={"help": (
        "ProcGen: number of distinct levels, seeds start_level..start_level+num_levels-1 "
        "(0 = unlimited)")})
    start_level: int = field(default=0, metadata={"help": "ProcGen: first level seed"})
    split: str = field(default="", metadata={"help": (
        "ProcGen named level split overriding start_level/num_levels: "
        "train (0, 200 levels), test1 (1000), test2 (1200), test3 (1400); empty = off")})
    seed: int = field(default=0, metadata={"help": (
        "base seed; every actor and env slot derives its own seed from it, the actor index "
        "and the seed offset")})
    sticky_action_prob: float = field(default=0.0, metadata={"help": (
        "Atari: probability of repeating the previous action (ALE repeat_action_probability; "
        "0 is the paper's setting)")})
    full_action_space: bool = field(default=False, metadata={"help": (
        "Atari: use all 18 ALE actions (needed for multi-task Atari sets whose games have "
        "different minimal action sets)")})
    noop_max: int = field(default=30, metadata={"help": (
        "Atari: at most this many no-op actions at the start of each game")})
    eval_mode: bool = field(default=False, metadata={"help": (
        "Atari: evaluation episodes span all lives; in training mode a lost life ends the episode")})
    max_episode_frames: int = field(default=108_000, metadata={"help": (
        "Atari: cap on emulator frames per episode (108000 frames = 27000 agent steps)")})
    env_threads: int = field(default=0, metadata={"help": (
        "worker threads inside each vectorised ProcGen/Atari env object; 0 = step in the "
        "actor's own thread (best when actor processes already fill the cores)")})


def level_range(cfg: EnvConfig) -> Tuple[int, int]:
    """(start_level, num_levels) after applying ``cfg.split``."""
    if cfg.split:
        if cfg.split not in LEVEL_SPLITS:
            raise ValueError(f"unknown level split {cfg.split!r}; valid splits: "
                             f"{', '.join(LEVEL_SPLITS)}")
        return LEVEL_SPLITS[cfg.split]
    return cfg.start_level, cfg.num_levels


@dataclass(frozen=True)
class EnvSpecString:
    """A parsed spec string: ``family`` and the raw, comma-separated ``items`` after the colon."""

    family: str
    items: Tuple[str, ...]

    @property
    def arg(self) -> str:
        return ",".join(self.items)


def parse_env_string(env: str) -> EnvSpecString:
    """Split ``FAMILY[:A,B,...]`` (syntax only; the family checks its items)."""
    if not isinstance(env, str) or not env.strip():
        raise ValueError(f"empty environment spec {env!r}; expected e.g. 'procgen:bigfish'")
    family, _, rest = env.strip().partition(":")
    family = family.strip().lower()
    items: List[str] = [s.strip() for s in rest.split(",")] if rest.strip() else []
    if any(not s for s in items):
        raise ValueError(f"environment spec {env!r} has an empty name in its comma list")
    return EnvSpecString(family=family, items=tuple(items))
