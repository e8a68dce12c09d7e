"""The episode runner: run planned evaluation episodes, in this process or in workers.

:class:`EpisodeRunner` steps up to ``num_envs`` single-env VecEnvs (one per job) with one
batched agent step over the active slots, keeping each slot's core state; the FIRST
episode of each env is the job's result and the env is then dropped.
:func:`run_episodes` runs a plan in this process or spreads it over spawned worker
processes that each load the checkpoint (:mod:`learner.evaluation.loading`).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from agents import action_dist
from learner.evaluation.loading import LoadedPolicy, load_policy
from learner.evaluation.plan import NO_LEVELS, EpisodeJob, EpisodeResult
from learner.evaluation.video import observation_frame, write_video

log = logging.getLogger(__name__)


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
        """int64 [N] (or [N, K] for a layout of K components): the argmax of each component
        with ``greedy``, else sampled in float64 from each episode's own generator."""
        dims = self.agent.action_dims
        logits = logits.detach().to("cpu", torch.float64)                     # [N, A]
        if self.settings.greedy:
            return action_dist.greedy(logits, dims).numpy()
        return np.stack([action_dist.sample(logits[i], dims, generator=s.generator).numpy()
                         for i, s in enumerate(slots)]).astype(np.int64)

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
