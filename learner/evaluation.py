"""Evaluate a checkpoint on held-out levels: load, plan episodes, run them, summarise.

The protocol is the SRWM paper's (Irie et al., "A Modern Self-Referential Weight
Matrix That Learns to Modify Itself", ICML 2022; DESIGN.md section 7), itself
following ProcGen's (Cobbe et al., ICML 2020): train on levels 0-199, report the
mean return on the 200-level splits test1/test2/test3 (seeds 1000, 1200, 1400) and
the generalisation gap to the training split.

Data flow::

    load_policy(run dir | file)                 checkpoint -> TrainConfig, Agent (weights loaded)
    plan_episodes(tasks, splits, episodes)      -> [EpisodeJob]: game, split, level, seed
    run_episodes(jobs, ...)                     --actors processes x --envs slots
        EpisodeRunner: one 1-env VecEnv per job (ProcGen: start_level = level, num_levels = 1)
                       batched agent step over the active slots, core state per slot
                       the FIRST episode of each env is the result; the env is then dropped
    summarise(results, ...)                     mean, standard error, 95% CI, normalised score

Determinism: every job carries its own seed (derived from ``--seed``, the game, the
split and the episode index), which seeds its env and, for sampled actions, its
own ``torch.Generator``; so an episode does not depend on which actor or slot ran it
or on what ran beside it (up to float rounding of batched matrix products, which
on CPU can differ between batch sizes in the last bit).

Episodes are spread evenly over a split's L levels: with N episodes, episode i plays
level ``start + (i * L) // N`` (N = L: every level once; N < L: an evenly spaced
subset; N > L: every level N / L times, +-1).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import os
import queue
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

log = logging.getLogger(__name__)

NO_LEVELS = -1            # level / level seed of an episode in an env without levels
ALL_EPISODES = "all"      # split name used for env families without levels (Atari, gym, ...)
Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


class EvaluationInputError(ValueError):
    """Bad input (checkpoint, environment, split, options): one-line message, exit code 2."""


# -- loading a checkpoint ---------------------------------------------------------------

@dataclass
class LoadedPolicy:
    """A checkpoint rebuilt into an agent with its weights loaded (eval mode)."""

    path: Path                  # the checkpoint file actually loaded
    cfg: object                 # launch.config.TrainConfig the run was trained with
    agent: torch.nn.Module
    obs_spec: object            # envs.base.ObsSpec
    num_actions: int
    task_names: List[str]       # the training task set, in task-id order
    steps: int                  # environment steps trained on
    updates: int


def load_policy(path_or_run: str | Path, device: str | torch.device = "cpu") -> LoadedPolicy:
    """Load a checkpoint file (or a run directory's newest good one) and rebuild its agent.

    Raises :class:`EvaluationInputError` with a one-line reason for a missing,
    corrupt or unsafe file, and for an architecture this code cannot rebuild
    (unknown core, different environment layout, mismatching weights).
    """
    from agents.model import build_agent, validate_model_config
    from envs import describe_env, validate_env_config
    from launch.config import config_from_dict
    from learner.checkpoint import CheckpointError, check_architecture, resolve_checkpoint

    try:
        payload, path = resolve_checkpoint(path_or_run, map_location="cpu")
    except CheckpointError as e:
        raise EvaluationInputError(str(e)) from None
    for key in ("config", "architecture", "learner"):
        if not isinstance(payload.get(key), dict):
            raise EvaluationInputError(f"checkpoint {path} has no {key!r} section")
    if Path(path_or_run).is_dir():
        check_run_config(Path(path_or_run), payload["config"], path)
    if not isinstance(payload["learner"].get("model"), dict):
        raise EvaluationInputError(f"checkpoint {path} has no model weights (learner.model)")
    try:
        cfg = config_from_dict(payload["config"])
    except (TypeError, ValueError) as e:
        raise EvaluationInputError(f"checkpoint {path} has an unreadable config ({e})") from None
    try:
        validate_model_config(cfg.model)
    except ValueError as e:
        raise EvaluationInputError(f"cannot rebuild the agent of checkpoint {path}: {e}") from None
    try:
        validate_env_config(cfg.env)
        obs_spec, num_actions, task_names = describe_env(cfg.env)
    except ValueError as e:
        raise EvaluationInputError(f"cannot rebuild the environment of checkpoint {path}: {e}") from None
    saved_tasks = payload.get("run", {}).get("task_names")
    if saved_tasks is not None and list(saved_tasks) != list(task_names):
        raise EvaluationInputError(f"checkpoint {path} was trained on tasks {list(saved_tasks)} but its "
                                   f"config describes {list(task_names)}")
    try:
        agent = build_agent(cfg.model, obs_spec, num_actions, len(task_names))
        check_architecture(payload["architecture"], agent.architecture())
    except (ValueError, CheckpointError) as e:
        raise EvaluationInputError(f"cannot rebuild the agent of checkpoint {path}: {e}") from None
    try:
        agent.load_state_dict(payload["learner"]["model"], strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise EvaluationInputError(f"checkpoint {path} weights do not fit the rebuilt agent: {first}") from None
    counters = payload["learner"].get("counters", {})
    agent = agent.to(torch.device(device)).eval()
    return LoadedPolicy(path=Path(path), cfg=cfg, agent=agent, obs_spec=obs_spec, num_actions=num_actions,
                        task_names=list(task_names), steps=int(counters.get("steps", 0)),
                        updates=int(counters.get("updates", 0)))


def check_run_config(run_dir: Path, ckpt_config: dict, path: Path) -> None:
    """A run directory's newest checkpoint must be of the model its config.json describes."""
    import json
    try:
        run_model = json.loads((run_dir / "config.json").read_text()).get("model", {})
    except (OSError, ValueError, AttributeError):
        return                                   # no readable config.json: the checkpoint decides
    ckpt_model = ckpt_config.get("model", {}) if isinstance(ckpt_config, dict) else {}
    speed_only = ("encoder_dtype", "compile_encoder")
    for key in sorted(set(run_model) | set(ckpt_model)):
        if key not in speed_only and key in run_model and key in ckpt_model \
                and run_model[key] != ckpt_model[key]:
            raise EvaluationInputError(
                f"the newest checkpoint of {run_dir} ({path.name}) has model {key} {ckpt_model[key]!r} but the "
                f"run's config.json has {run_model[key]!r}; name the checkpoint file to evaluate it anyway")


# -- what to evaluate -------------------------------------------------------------------

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


def resolve_tasks(env_spec: str, loaded: LoadedPolicy) -> Tuple[List[EvalTask], str]:
    """The games of ``env_spec`` (default: the checkpoint's), checked against the agent.

    Returns the tasks and the env family. A game outside the training set is allowed
    unless the agent reads a task id; observation layout and action count must match.
    """
    from envs import describe_env
    from envs.config import parse_env_string

    cfg_env = loaded.cfg.env
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
            obs_spec, num_actions, _ = describe_env(dataclasses.replace(cfg_env, env=single, split=""))
        except ValueError as e:
            raise EvaluationInputError(f"--env {single!r}: {e}") from None
        if tuple(obs_spec.shape) != tuple(loaded.obs_spec.shape) or obs_spec.dtype != loaded.obs_spec.dtype:
            raise EvaluationInputError(
                f"{single} gives observations {list(obs_spec.shape)} {obs_spec.dtype} but the checkpoint's "
                f"agent takes {list(loaded.obs_spec.shape)} {loaded.obs_spec.dtype}")
        if num_actions != loaded.num_actions:
            raise EvaluationInputError(f"{single} has {num_actions} actions but the checkpoint's agent has "
                                       f"{loaded.num_actions}")
        if name in loaded.task_names:
            task_id = loaded.task_names.index(name)
        elif loaded.cfg.model.use_task_id:
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


# -- running episodes -------------------------------------------------------------------

@dataclass
class EpisodeResult:
    job: EpisodeJob
    episode_return: float
    length: int
    level_seed: int       # as the env reported it (ProcGen: the level played)
    truncated: bool       # stopped by --max-steps, not by the game
    video: str = ""       # path of the recorded video, if any


@dataclass
class RunnerSettings:
    """How episodes are run (picklable: sent to spawned evaluation workers)."""

    env_config: object                 # envs.EnvConfig: the checkpoint's, with evaluation overrides
    num_envs: int = 8                  # episodes stepped together per process
    greedy: bool = False
    device: str = "cpu"
    max_steps: int = 0                 # per-episode step cap (0 = none; the game's own limits apply)
    video_dir: str = ""                # where recorded episodes go
    video_format: str = "mp4"
    video_scale: int = 4
    video_fps: int = 20
    threads: int = 1                   # torch threads per worker process


def job_env_config(base, job: EpisodeJob):
    """The EnvConfig of one job: a single game, a single level, the job's seed, evaluation mode."""
    cfg = dataclasses.replace(base, env=job.env_spec, split="", seed=job.seed, eval_mode=True)
    if job.level != NO_LEVELS:
        cfg = dataclasses.replace(cfg, start_level=job.level, num_levels=1)
    return cfg


@dataclass
class _Slot:
    job: EpisodeJob
    env: object
    obs: np.ndarray                    # [*obs_shape]
    reward: float = 0.0
    done: bool = True                  # the first observation starts the episode
    episode_return: float = 0.0
    length: int = 0
    generator: Optional[torch.Generator] = None
    frames: Optional[List[np.ndarray]] = None


class EpisodeRunner:
    """Runs jobs on up to ``num_envs`` envs at once with one batched agent step."""

    def __init__(self, agent: torch.nn.Module, settings: RunnerSettings):
        self.agent = agent.eval()
        self.settings = settings
        self.device = torch.device(settings.device)

    def _start(self, job: EpisodeJob) -> _Slot:
        from envs import make_vec_env
        env = make_vec_env(job_env_config(self.settings.env_config, job), 1)
        obs = np.asarray(env.reset())[0]
        gen = None
        if not self.settings.greedy:
            gen = torch.Generator().manual_seed(job.seed)
        return _Slot(job=job, env=env, obs=obs, generator=gen, frames=[] if job.record else None)

    def _actions(self, logits: torch.Tensor, slots: Sequence[_Slot]) -> np.ndarray:
        logits = logits.detach().to("cpu", torch.float64)                     # [N, A]
        if self.settings.greedy:
            return logits.argmax(dim=-1).numpy()
        probs = torch.softmax(logits, dim=-1)                                 # [N, A]
        return np.array([int(torch.multinomial(probs[i], 1, generator=s.generator))
                         for i, s in enumerate(slots)], dtype=np.int64)

    def _finish(self, slot: _Slot, episode_return: float, length: int, level_seed: int,
                truncated: bool, on_result: Callable[[EpisodeResult], None]) -> None:
        """Report the episode's result; a video that cannot be written fails the evaluation
        (VideoWriteError) only after the result has been reported, so no result is lost."""
        video, failure = "", None
        if slot.frames is not None:
            try:
                video = self._write_video(slot)
            except Exception as e:
                failure = e
        try:
            slot.env.close()
        except Exception:
            pass
        on_result(EpisodeResult(job=slot.job, episode_return=float(episode_return), length=int(length),
                                level_seed=int(level_seed), truncated=truncated, video=video))
        if failure is not None:
            reason = (failure.strerror if isinstance(failure, OSError) and failure.strerror
                      else " ".join(str(failure).split())[:300])
            raise VideoWriteError(f"cannot write the video of {slot.job.game} {slot.job.split} episode "
                                  f"{slot.job.episode} into {self.settings.video_dir}: {reason}")

    def _write_video(self, slot: _Slot) -> str:
        s = self.settings
        job = slot.job
        level = f"-level{job.level}" if job.level != NO_LEVELS else ""
        path = Path(s.video_dir) / f"{job.game}-{job.split}-ep{job.episode:04d}{level}.{s.video_format}"
        write_video(path, slot.frames, fps=s.video_fps)
        return str(path)

    @torch.inference_mode()
    def run(self, next_job: Callable[[], Optional[EpisodeJob]],
            on_result: Callable[[EpisodeResult], None]) -> None:
        """Pull jobs until ``next_job()`` returns None; call ``on_result`` for each finished one."""
        s = self.settings
        slots: List[_Slot] = []
        state = self.agent.initial_state(0, self.device)
        exhausted = False
        try:
            while True:
                new = []
                while not exhausted and len(slots) + len(new) < s.num_envs:
                    job = next_job()
                    if job is None:
                        exhausted = True
                        break
                    new.append(self._start(job))
                if new:
                    fresh = self.agent.initial_state(len(new), self.device)
                    state = {k: torch.cat([state[k], fresh[k]]) for k in state}
                    slots.extend(new)
                if not slots:
                    return
                inputs = {
                    "obs": torch.from_numpy(np.stack([sl.obs for sl in slots])).unsqueeze(0),    # [1, N, ...]
                    "reward": torch.tensor([[sl.reward for sl in slots]], dtype=torch.float32),  # [1, N]
                    "done": torch.tensor([[sl.done for sl in slots]], dtype=torch.bool),         # [1, N]
                    "task": torch.tensor([[sl.job.task_id for sl in slots]], dtype=torch.int64),  # [1, N]
                }
                inputs = {k: v.to(self.device) for k, v in inputs.items()}
                out, state = self.agent(inputs, state)
                actions = self._actions(out["policy_logits"][0], slots)             # [N]
                keep = []
                for i, sl in enumerate(slots):
                    if sl.frames is not None:
                        sl.frames.append(observation_frame(sl.obs, s.video_scale))
                    obs, reward, done, finished = sl.env.step(actions[i:i + 1])
                    sl.obs = np.asarray(obs)[0]
                    sl.reward = float(reward[0])
                    sl.done = bool(done[0])
                    sl.episode_return += sl.reward
                    sl.length += 1
                    if finished:
                        ep = finished[0]
                        if sl.job.level != NO_LEVELS and ep.level_seed != sl.job.level:
                            raise RuntimeError(f"{sl.job.env_spec} reported level {ep.level_seed} for an "
                                               f"episode planned on level {sl.job.level}")
                        self._finish(sl, ep.episode_return, ep.length, ep.level_seed, False, on_result)
                    elif sl.done:
                        raise RuntimeError(f"env {sl.job.env_spec} started a new episode without reporting "
                                           f"the finished one")
                    elif s.max_steps and sl.length >= s.max_steps:
                        self._finish(sl, sl.episode_return, sl.length, sl.job.level, True, on_result)
                    else:
                        keep.append(i)
                if len(keep) != len(slots):
                    idx = torch.tensor(keep, dtype=torch.long, device=self.device)
                    state = {k: v.index_select(0, idx) for k, v in state.items()}
                    slots = [slots[i] for i in keep]
        finally:
            for sl in slots:
                try:
                    sl.env.close()
                except Exception:
                    pass


def _worker_main(worker: int, checkpoint: str, settings: RunnerSettings, jobs, results) -> None:
    """A spawned evaluation process: load the checkpoint, pull jobs, push results."""
    import traceback
    try:
        torch.set_num_threads(settings.threads)
        loaded = load_policy(checkpoint, settings.device)
        runner = EpisodeRunner(loaded.agent, settings)
        runner.run(jobs.get, lambda r: results.put(("result", r)))
        results.put(("done", worker))
    except BaseException as e:  # report, then exit: the parent stops the evaluation
        results.put(("error", worker, f"{type(e).__name__}: {e}", traceback.format_exc()))


class EvaluationWorkerError(RuntimeError):
    """An evaluation worker process failed."""


class VideoWriteError(RuntimeError):
    """A recorded episode's video could not be written (its result was reported first)."""


def run_episodes(jobs: Sequence[EpisodeJob], loaded: LoadedPolicy, settings: RunnerSettings,
                 num_actors: int = 1, on_result: Optional[Callable[[EpisodeResult], None]] = None
                 ) -> List[EpisodeResult]:
    """Run every job; results in plan order. ``num_actors`` 1 runs in this process."""
    results: Dict[int, EpisodeResult] = {}

    def collect(r: EpisodeResult) -> None:
        results[r.job.index] = r
        if on_result is not None:
            on_result(r)

    if settings.video_dir and any(j.record for j in jobs):
        Path(settings.video_dir).mkdir(parents=True, exist_ok=True)
    num_actors = max(1, min(num_actors, len(jobs)))
    if num_actors == 1:
        pending = iter(jobs)
        EpisodeRunner(loaded.agent, settings).run(lambda: next(pending, None), collect)
    else:
        _run_in_processes(jobs, str(loaded.path), settings, num_actors, collect)
    missing = [j.index for j in jobs if j.index not in results]
    if missing:
        raise EvaluationWorkerError(f"{len(missing)} planned episodes produced no result")
    return [results[j.index] for j in jobs]


def _run_in_processes(jobs: Sequence[EpisodeJob], checkpoint: str, settings: RunnerSettings,
                      num_actors: int, collect: Callable[[EpisodeResult], None]) -> None:
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    job_q, result_q = ctx.Queue(), ctx.Queue()
    for job in jobs:
        job_q.put(job)
    for _ in range(num_actors):
        job_q.put(None)
    procs = [ctx.Process(target=_worker_main, args=(w, checkpoint, settings, job_q, result_q),
                         daemon=True, name=f"eval-worker-{w}") for w in range(num_actors)]
    for p in procs:
        p.start()
    done_workers = 0
    received = 0
    try:
        while received < len(jobs) or done_workers < num_actors:
            try:
                msg = result_q.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise EvaluationWorkerError(f"evaluation worker {dead[0].name} died with exit code "
                                                f"{dead[0].exitcode}") from None
                if all(p.exitcode == 0 for p in procs) and result_q.empty():
                    break
                continue
            if msg[0] == "result":
                collect(msg[1])
                received += 1
            elif msg[0] == "done":
                done_workers += 1
            else:
                _, worker, message, tb = msg
                log.debug("evaluation worker %d traceback:\n%s", worker, tb)
                raise EvaluationWorkerError(f"evaluation worker {worker} failed: {message}")
    finally:
        for p in procs:
            p.join(timeout=5.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5.0)


# -- summarising ------------------------------------------------------------------------

def return_stats(returns: Sequence[float]) -> Dict[str, Optional[float]]:
    """Mean, standard error (sample std / sqrt(n)) and normal-approximation 95% CI."""
    x = np.asarray(returns, dtype=np.float64)      # [n]
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    se = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    ci = [mean - Z_95 * se, mean + Z_95 * se] if se is not None else None
    return {"episodes": n, "mean_return": mean, "std_err": se, "ci95": ci}


def summarise(results: Sequence[EpisodeResult], tasks: Sequence[EvalTask], splits: Sequence[Split],
              distribution_mode: str, constant_set: str, family: str) -> dict:
    """Per game and split statistics, mean normalised score per split, generalisation gaps."""
    from envs.scores import ATARI_HUMAN_CONSTANTS, constant_set_label, human_normalised_score, normalised_score

    def score(mean_return: float, game: str):
        if family == "procgen":
            return normalised_score(mean_return, game, distribution_mode, constant_set)
        if family == "atari":
            return human_normalised_score(mean_return, game)
        return None

    games: Dict[str, Dict[str, dict]] = {}
    for task in tasks:
        games[task.name] = {}
        for split in splits:
            rs = [r for r in results if r.job.game == task.name and r.job.split == split.name]
            st = return_stats([r.episode_return for r in rs])
            st["mean_length"] = float(np.mean([r.length for r in rs])) if rs else math.nan
            st["truncated"] = int(sum(r.truncated for r in rs))
            st["normalised_score"] = score(st["mean_return"], task.name)
            games[task.name][split.name] = st
    mean_norm = {}
    for split in splits:
        scores = [games[t.name][split.name]["normalised_score"] for t in tasks]
        scores = [s for s in scores if s is not None]
        mean_norm[split.name] = {"value": float(np.mean(scores)) if scores else None,
                                 "games_with_constants": len(scores), "games": len(tasks)}
    gap = {}
    names = [s.name for s in splits]
    if "train" in names and len(names) > 1:
        for task in tasks:
            tr = games[task.name]["train"]
            gap[task.name] = {}
            for split in splits:
                if split.name == "train":
                    continue
                te = games[task.name][split.name]
                norm = (None if tr["normalised_score"] is None or te["normalised_score"] is None
                        else tr["normalised_score"] - te["normalised_score"])
                gap[task.name][split.name] = {"return": tr["mean_return"] - te["mean_return"],
                                              "normalised_score": norm}
        gap["mean_normalised_score"] = {
            s.name: (None if mean_norm["train"]["value"] is None or mean_norm[s.name]["value"] is None
                     else mean_norm["train"]["value"] - mean_norm[s.name]["value"])
            for s in splits if s.name != "train"}
    return {
        "score_constants": (f"human-normalised, {ATARI_HUMAN_CONSTANTS}" if family == "atari"
                            else constant_set_label(constant_set, distribution_mode, family)),
        "splits": {s.name: {"start_level": s.start_level if s.has_levels else None,
                            "num_levels": s.num_levels if s.has_levels else None} for s in splits},
        "games": games,
        "mean_normalised_score": mean_norm,
        "generalisation_gap": gap,
    }


# -- videos -----------------------------------------------------------------------------

def observation_frame(obs: np.ndarray, scale: int = 4) -> np.ndarray:
    """What the agent saw as an RGB image ``[H*scale, W*scale, 3]`` uint8 (nearest-neighbour).

    ``[3, H, W]`` (ProcGen) is shown as colour; ``[K, H, W]`` frame stacks (Atari) show
    their newest frame in grey; ``[H, W]`` is grey.
    """
    x = np.asarray(obs)
    if x.ndim == 3 and x.shape[0] == 3:
        img = x.transpose(1, 2, 0)                              # [H, W, 3]
    elif x.ndim == 3:
        img = np.repeat(x[-1][:, :, None], 3, axis=2)           # [H, W, 3]
    elif x.ndim == 2:
        img = np.repeat(x[:, :, None], 3, axis=2)               # [H, W, 3]
    else:
        raise ValueError(f"cannot draw an observation of shape {list(x.shape)} as an image")
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if scale > 1:
        img = img.repeat(scale, axis=0).repeat(scale, axis=1)   # [H*s, W*s, 3]
    return np.ascontiguousarray(img)


def can_record(obs_shape: Sequence[int]) -> bool:
    return len(obs_shape) in (2, 3)


def find_ffmpeg() -> Optional[str]:
    """An ffmpeg executable: $IMAGEIO_FFMPEG_EXE, imageio-ffmpeg's binary, or ffmpeg on PATH.

    imageio-ffmpeg 0.3 cannot be imported without ``pkg_resources`` (gone from recent
    setuptools), so its bundled binary is also looked up by path.
    """
    exe = os.environ.get("IMAGEIO_FFMPEG_EXE")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        pass
    spec = importlib.util.find_spec("imageio_ffmpeg")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            for p in sorted(Path(loc, "binaries").glob("ffmpeg*")):
                if p.is_file() and os.access(p, os.X_OK):
                    return str(p)
    return shutil.which("ffmpeg")


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: int = 20) -> Path:
    """Write RGB frames ``[H, W, 3]`` uint8 as MP4 (H.264 through ffmpeg) or GIF (Pillow)."""
    path = Path(path)
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    h, w = frames[0].shape[:2]
    if path.suffix == ".gif":
        from PIL import Image
        images = [Image.fromarray(f) for f in frames]
        # GIF stores durations in 1/100 s; identical consecutive frames are merged by Pillow,
        # their durations summed, so the playing time stays len(frames) / fps.
        images[0].save(path, save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0)
        return path
    if path.suffix != ".mp4":
        raise ValueError(f"unknown video format {path.suffix!r}; use .mp4 or .gif")
    exe = find_ffmpeg()
    if exe is None:
        raise RuntimeError("no ffmpeg found for MP4 output (install imageio-ffmpeg) - use --video-format gif")
    if h % 2 or w % 2:
        raise ValueError(f"MP4 frames need even sizes, got {w}x{h}")
    cmd = [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-vcodec", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p",
           "-crf", "18", "-r", str(fps), str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(b"".join(np.ascontiguousarray(f, dtype=np.uint8).tobytes() for f in frames))
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}: {err.decode(errors='replace').strip()[:300]}")
    return path


def default_video_format() -> str:
    """``mp4`` where an ffmpeg is available, else ``gif``."""
    return "mp4" if find_ffmpeg() is not None else "gif"

