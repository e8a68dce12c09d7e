"""What to evaluate: level splits, games, the plan of episodes, and what an episode gave.

Pure functions of their arguments (env specs are only described, never stepped); the
episode runner (:mod:`learner.evaluation.runner`) executes the plan and the statistics
(:mod:`learner.evaluation.stats`) summarise its results.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from learner.evaluation.loading import LoadedPolicy

NO_LEVELS = -1            # level / level seed of an episode in an env without levels
ALL_EPISODES = "all"      # split name used for env families without levels (Atari, gym, ...)


class EvaluationInputError(ValueError):
    """Bad input (checkpoint, environment, split, options): one-line message, exit code 2."""


@dataclass(frozen=True)
class Split:
    """A range of ProcGen level seeds ``[start_level, start_level + num_levels)``."""

    name: str
    start_level: int
    num_levels: int

    @property
    def has_levels(self) -> bool:
        return self.num_levels > 0

    def describe(self) -> str:
        if not self.has_levels:
            return self.name
        return f"{self.name} (levels {self.start_level}-{self.start_level + self.num_levels - 1})"


def resolve_splits(names: Sequence[str], start_level: Optional[int] = None,
                   num_levels: Optional[int] = None) -> List[Split]:
    """Named splits (``train``, ``test1`` ...; comma lists allowed) and/or one explicit range."""
    from envs.config import INT32_MAX, LEVEL_SPLITS

    splits: List[Split] = []
    for item in names:
        for name in (s.strip() for s in str(item).split(",")):
            if not name:
                continue
            if name not in LEVEL_SPLITS:
                raise EvaluationInputError(f"unknown split {name!r}; valid splits: {', '.join(LEVEL_SPLITS)}")
            if any(s.name == name for s in splits):
                raise EvaluationInputError(f"split {name!r} is given twice")
            splits.append(Split(name, *LEVEL_SPLITS[name]))
    if start_level is not None or num_levels is not None:
        if start_level is None or num_levels is None:
            raise EvaluationInputError("--start-level and --num-levels go together; give both")
        if start_level < 0:
            raise EvaluationInputError(f"--start-level must be >= 0, got {start_level}")
        if num_levels < 1:
            raise EvaluationInputError(f"--num-levels must be >= 1 for evaluation, got {num_levels}")
        if start_level + num_levels - 1 > INT32_MAX:
            raise EvaluationInputError(f"levels {start_level}..{start_level + num_levels - 1} run past the "
                                       f"largest ProcGen level seed {INT32_MAX}")
        name = f"levels{start_level}-{start_level + num_levels - 1}"
        splits.append(Split(name, start_level, num_levels))
    return splits


@dataclass(frozen=True)
class EvalTask:
    """One game to evaluate: its name, the single-task env spec, and the task id fed to the agent."""

    name: str
    env_spec: str
    task_id: int


def resolve_tasks(env_spec: str, loaded: "LoadedPolicy") -> Tuple[List[EvalTask], str]:
    """The games of ``env_spec`` (default: the checkpoint's), checked against the agent.

    Returns the tasks and the env family. A game outside the training set is allowed
    unless the agent reads a task id; observation layout and action layout must match.
    """
    from envs import describe_env
    from envs.config import parse_env_string

    cfg_env = loaded.env
    spec = env_spec or cfg_env.env
    try:
        parsed = parse_env_string(spec)
        _, _, names = describe_env(dataclasses.replace(cfg_env, env=spec, split=""))
    except ValueError as e:
        raise EvaluationInputError(f"--env {spec!r}: {e}") from None
    if parsed.family != parse_env_string(cfg_env.env).family:
        raise EvaluationInputError(f"--env {spec!r} is a {parsed.family} environment but the checkpoint was "
                                   f"trained on {cfg_env.env!r}")
    tasks = []
    for name in names:
        single = spec if len(names) == 1 else f"{parsed.family}:{name}"
        try:
            obs_spec, num_actions, _ = desc = describe_env(dataclasses.replace(cfg_env, env=single, split=""))
        except ValueError as e:
            raise EvaluationInputError(f"--env {single!r}: {e}") from None
        if tuple(obs_spec.shape) != tuple(loaded.obs_spec.shape) or obs_spec.dtype != loaded.obs_spec.dtype:
            raise EvaluationInputError(
                f"{single} gives observations {list(obs_spec.shape)} {obs_spec.dtype} but the checkpoint's "
                f"agent takes {list(loaded.obs_spec.shape)} {loaded.obs_spec.dtype}")
        if tuple(desc.action_dims) != tuple(loaded.action_dims):
            if len(desc.action_dims) == len(loaded.action_dims) == 1:
                raise EvaluationInputError(f"{single} has {num_actions} actions but the checkpoint's agent "
                                           f"has {loaded.num_actions}")
            raise EvaluationInputError(f"{single} has the action layout {tuple(desc.action_dims)} but the "
                                       f"checkpoint's agent has {tuple(loaded.action_dims)}")
        if name in loaded.task_names:
            task_id = loaded.task_names.index(name)
        elif loaded.model.use_task_id:
            raise EvaluationInputError(f"game {name!r} is not in the checkpoint's task set "
                                       f"{loaded.task_names} and its agent reads a task id")
        else:
            task_id = 0
        tasks.append(EvalTask(name=name, env_spec=single, task_id=task_id))
    return tasks, parsed.family


@dataclass(frozen=True)
class EpisodeJob:
    """One planned evaluation episode."""

    index: int          # position in the plan: the order of the report
    game: str
    env_spec: str       # single-task env spec, e.g. "procgen:bigfish"
    task_id: int        # task id fed to the agent (the checkpoint's task index)
    split: str
    episode: int        # index within (game, split)
    level: int          # ProcGen level seed, NO_LEVELS without levels
    seed: int           # seeds the env and, for sampled actions, the action generator
    record: bool = False


def episode_levels(split: Split, episodes: int) -> List[int]:
    """Level of each episode: ``start + (i * L) // N`` (evenly spread), or NO_LEVELS."""
    if not split.has_levels:
        return [NO_LEVELS] * episodes
    return [split.start_level + (i * split.num_levels) // episodes for i in range(episodes)]


def _key(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def plan_episodes(tasks: Sequence[EvalTask], splits: Sequence[Split], episodes: int, seed: int,
                  record: int = 0) -> List[EpisodeJob]:
    """Every (game, split, episode) as a job; the first ``record`` of each (game, split) are recorded."""
    from envs.registry import derive_seed

    if episodes < 1:
        raise EvaluationInputError(f"--episodes must be at least 1, got {episodes}")
    if seed < 0:
        raise EvaluationInputError(f"--seed must be >= 0, got {seed}")
    jobs: List[EpisodeJob] = []
    for task in tasks:
        for split in splits:
            for i, level in enumerate(episode_levels(split, episodes)):
                jobs.append(EpisodeJob(index=len(jobs), game=task.name, env_spec=task.env_spec,
                                       task_id=task.task_id, split=split.name, episode=i, level=level,
                                       seed=derive_seed(seed, _key(task.name), _key(split.name), i),
                                       record=i < record))
    return jobs


@dataclass
class EpisodeResult:
    job: EpisodeJob
    episode_return: float
    length: int
    level_seed: int       # as the env reported it (ProcGen: the level played)
    truncated: bool       # stopped by --max-steps, not by the game
    video: str = ""       # path of the recorded video, if any
