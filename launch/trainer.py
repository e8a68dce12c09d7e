"""The training run: run directory, actors, learner loop, logging, checkpoints, signals.

The composition root: it wires the rollout source (actors, inference server; see
:mod:`actors.source`), the learner, checkpoints, signals and logging. One learner loop
serves every actor backend::

    source.get_batch(B) -> Learner.step -> source.publish(params) -> log / checkpoint

:meth:`Trainer.run` is the whole run; :meth:`Trainer.start`, :meth:`Trainer.step` (one
update cycle: get a batch, learner step, publish parameters, episode statistics) and
:meth:`Trainer.stop` are public so that the benchmarks (:mod:`launch.bench`) measure the
very loop training runs.

Shutdown: the first SIGINT or SIGTERM finishes the current update, writes a final
checkpoint, stops and joins every actor and exits; a second SIGINT exits at once
(actors die with their parent through PR_SET_PDEATHSIG). Shared memory is
file-descriptor backed, so nothing is left in /dev/shm even after ``kill -9``.

Failures (an actor crash loop, a checkpoint that cannot be written, too many non-finite
updates, anything else) end the loop: :meth:`Trainer.run` returns a summary whose
``status`` and ``error`` (one line) say how the run ended; it does not raise. A final
checkpoint is written only when there are updates it would add (never an untrained
one in place of a trained one), never with non-finite parameters, and not again after a
checkpoint write has just failed.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from envs.stats import EpisodeStats
from launch.config import config_to_dict
from learner.checkpoint import checkpoint_dir, list_checkpoints, save_checkpoint
from learner.device import resolve_device
from learner.learner import Learner, NonFiniteError
from learner.logger import RunLogger

log = logging.getLogger(__name__)


def task_columns(task_names) -> list:
    """Log columns of the per-task episode statistics."""
    cols = ["return/mean"]
    for t in task_names:
        cols += [f"return/{t}", f"length/{t}", f"episodes/{t}"]
    return cols


def task_scalars(stats: EpisodeStats) -> Dict[str, float]:
    """``return/<task>``, ``length/<task>`` (recent window), ``episodes/<task>`` (total) and
    ``return/mean`` over the tasks that have finished an episode."""
    out, returns = {}, []
    for name, s in stats.summary().items():
        if s.window_count:
            out[f"return/{name}"] = s.mean_return
            out[f"length/{name}"] = s.mean_length
            returns.append(s.mean_return)
        out[f"episodes/{name}"] = float(s.count)
    if returns:
        out["return/mean"] = float(np.mean(returns))
    return out


LEARNER_COLUMNS = ["sps", "total_loss", "pg_loss", "baseline_loss", "entropy_loss", "entropy",
                   "grad_norm", "learning_rate", "skipped_updates", "update_ok", "updates", "policy_lag",
                   "actor_restarts", "time/env", "time/inference", "time/learn", "time/copy",
                   "time/wait_batch"]


class _Signals:
    """First SIGINT/SIGTERM asks for a clean stop; a second SIGINT exits at once."""

    def __init__(self, on_hard_exit):
        self.stop_requested = False
        self.reason = ""
        self.on_hard_exit = on_hard_exit
        self._old = {}

    def install(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:   # not in the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.stop_requested and signum == signal.SIGINT:
            self.on_hard_exit()
            os._exit(130)
        self.stop_requested = True
        self.reason = signal.Signals(signum).name
        log.warning("%s received: finishing the update, writing a checkpoint and stopping "
                    "(press Ctrl-C again to exit at once)", self.reason)

    def restore(self):
        for sig, h in self._old.items():
            signal.signal(sig, h)


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, folder gone or read-only, ...)."""


def one_line(text: str, limit: int = 500) -> str:
    return " ".join(str(text).split())[:limit]


def failure_summary(error: BaseException, **counters) -> dict:
    """The summary of a run that failed before its loop could report: status and one-line error."""
    msg = one_line(f"{type(error).__name__}: {error}")
    out = {"status": f"failed: {msg}", "steps": 0, "updates": 0, "elapsed_s": 0.0,
           "skipped_updates": 0, "actor_restarts": 0, "error": msg,
           "traceback": traceback.format_exception(error)}
    out.update(counters)
    return out


class Trainer:
    """Owns a run directory and drives one training run to completion."""

    def __init__(self, cfg, run_dir: Optional[Path], *, agent, obs_spec, num_actions: int, task_names,
                 resume_payload: Optional[dict] = None, loss_hook=None):
        """``run_dir`` None: no run directory (benchmarks driving :meth:`step`); :meth:`run`
        and :meth:`checkpoint` need one."""
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.obs_spec = obs_spec
        self.num_actions = num_actions
        self.task_names = list(task_names)
        self.device = resolve_device(cfg.run.device)
        if cfg.learner.learner_threads > 0:
            torch.set_num_threads(cfg.learner.learner_threads)
        T, B = cfg.actor.unroll_length, cfg.actor.batch_size
        self.learner = Learner(cfg.learner, agent, total_steps=cfg.run.total_steps,
                               steps_per_update=T * B, device=self.device,
                               reward_clip=cfg.model.reward_clip)
        self.architecture = agent.architecture()
        self.config_dict = config_to_dict(cfg)
        self.stats = EpisodeStats(self.task_names)
        self.restarts_before = 0
        self.loss_hook = loss_hook
        self.saved_updates: Optional[int] = None    # updates of the newest checkpoint on disk
        if resume_payload is not None:
            self.learner.load_state_dict(resume_payload["learner"])
            run = resume_payload.get("run", {})
            if "task_stats" in run:
                self.stats.load_state_dict(run["task_stats"])
            self.restarts_before = int(run.get("actor_restarts", 0))
            self.saved_updates = self.learner.updates
        self.source = None
        self.inference_server = None
        self.logger: Optional[RunLogger] = None
        self.timing: Dict[str, float] = defaultdict(float)   # learner side: time/wait_batch, time/learn, time/copy
        self.lags: list = []                                  # policy lag of each update since the last log row
        self.last_stats: Dict[str, float] = {}                # the newest learner step's scalars

    # -- pieces ------------------------------------------------------------------------
    def make_source(self):
        """The rollout source of ``--backend``, given only the sections of the configuration it
        reads; with ``--inference learner`` the local source builds the inference server
        (kept as ``self.inference_server``) and hands it its rollout buffers."""
        cfg = self.cfg
        actors = dict(env=cfg.env, model=cfg.model, actor=cfg.actor, obs_shape=self.obs_spec.shape,
                      obs_dtype=self.obs_spec.dtype, num_actions=self.num_actions,
                      num_tasks=len(self.task_names), pin_memory=self.device.type == "cuda")
        self.inference_server = None
        if cfg.run.backend == "ray":
            from actors.ray_backend import RayRolloutSource
            return RayRolloutSource(self.learner.agent, ray_config=cfg.ray, **actors)
        from actors.source import LocalRolloutSource
        # --inference learner: the source builds the server on the learner's device (where
        # self.learner.agent lives) and gives it the rollout buffers it owns
        source = LocalRolloutSource(self.learner.agent, **actors)
        self.inference_server = source.inference_server
        return source

    def checkpoint(self) -> Path:
        """Write a checkpoint; CheckpointWriteError (one line) when it cannot be written."""
        if not self.learner.parameters_finite():
            raise NonFiniteError("the parameters are not finite; no checkpoint written "
                                 "(the newest one on disk is the last good one)")
        payload = {
            "config": self.config_dict,
            "architecture": self.architecture,
            "learner": self.learner.state_dict(),
            "run": {"task_stats": self.stats.state_dict(),
                    "actor_restarts": self.restarts_before + (self.source.restarts if self.source else 0),
                    "task_names": self.task_names},
        }
        try:
            path = save_checkpoint(self.run_dir, payload, self.learner.updates,
                                   keep=self.cfg.run.keep_checkpoints)
        except Exception as e:
            d = checkpoint_dir(self.run_dir)
            try:
                st = os.statvfs(d)
                free = f"; {st.f_bavail * st.f_frsize:,} bytes free on its file system"
            except OSError:
                free = ""
            reason = (f"[Errno {e.errno}] {e.strerror}" if isinstance(e, OSError) and e.strerror
                      else f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}")
            newest = self.newest_checkpoint()
            newest = f"; the newest checkpoint is {newest}" if newest else ""
            raise CheckpointWriteError(one_line(f"cannot write checkpoint ckpt-{self.learner.updates:09d}.pt "
                                                f"in {d}: {reason}{free}{newest}")) from None
        self.saved_updates = self.learner.updates
        return path

    def newest_checkpoint(self) -> Optional[str]:
        files = list_checkpoints(self.run_dir)
        return files[-1].name if files else None

    # -- one update cycle ---------------------------------------------------------------
    def start(self) -> None:
        """Build the rollout source unless built, start the actors and publish the parameters."""
        if self.source is None:
            self.source = self.make_source()
        self.source.start()
        self.source.publish(self.learner.agent)

    def step(self, learn: bool = True) -> bool:
        """One cycle of the loop: wait up to 50 ms for a batch of B unrolls, add the finished
        episodes to the statistics (and the log), take a learner step on the batch and
        publish the new parameters. True when an update was made.

        ``learn=False`` takes the batch and drops it, handing the buffers back to the actors
        (the benchmarks measure the actors alone this way)."""
        t0 = time.perf_counter()
        got = self.source.get_batch(self.cfg.actor.batch_size, timeout=0.05)
        self.timing["time/wait_batch"] += time.perf_counter() - t0
        episodes = self.source.drain_episodes()
        self.stats.add(episodes)
        if self.logger is not None:
            self.logger.log_episodes(self.learner.steps, episodes)
        if got is None or not learn:
            return False
        batch, state, info = got
        t1 = time.perf_counter()
        self.last_stats = self.learner.step(batch, state, loss_hook=self.loss_hook)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        version = self.source.publish(self.learner.agent)
        t3 = time.perf_counter()
        self.timing["time/learn"] += t2 - t1
        self.timing["time/copy"] += t3 - t2
        self.lags.append(float((version - 1 - info["policy_versions"]).float().mean()))
        return True

    def stop(self) -> None:
        """Stop and join the actors (and the inference server)."""
        if self.source is not None:
            self.source.stop()

    def log_row(self, sps: float) -> None:
        """One log row (TensorBoard, CSV, progress bar); clears the timing and lags it reports."""
        timing = self.source.drain_timing()
        scalars = dict(self.last_stats)
        scalars.update(task_scalars(self.stats))
        scalars.update(self.source.take_scalars())
        scalars.update({"sps": sps, "updates": self.learner.updates,
                        "actor_restarts": self.restarts_before + self.source.restarts,
                        "policy_lag": float(np.mean(self.lags)) if self.lags else None,
                        "time/env": timing.get("env", 0.0), "time/inference": timing.get("inference", 0.0)})
        scalars.update(self.timing)
        self.logger.log(self.learner.steps, scalars)
        ret = scalars.get("return/mean")
        self.logger.progress(self.learner.steps, {"sps": f"{sps:.0f}",
                                                  "return": "-" if ret is None else f"{ret:.2f}"})
        self.timing.clear()
        self.lags.clear()

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        self.source = self.make_source()
        try:
            logger = self.logger = RunLogger(
                self.run_dir, LEARNER_COLUMNS + list(self.source.scalar_columns)
                + task_columns(self.task_names) + self.learner.diagnostic_columns(),
                total_steps=cfg.run.total_steps, start_step=self.learner.steps,
                progress=cfg.run.progress, rewind=True)
        except BaseException:
            self.source.stop()
            raise
        signals = _Signals(on_hard_exit=self._hard_exit).install()
        status = "finished"
        error: Optional[BaseException] = None
        t_start = time.time()
        last_log = last_ckpt = time.time()
        steps_at_log = self.learner.steps
        try:
            self.start()
            while self.learner.steps < cfg.run.total_steps:
                if signals.stop_requested:
                    status = f"stopped by {signals.reason}"
                    break
                self.step()
                now = time.time()
                if now - last_log >= cfg.run.log_interval_s or self.learner.steps >= cfg.run.total_steps:
                    self.log_row(sps=(self.learner.steps - steps_at_log) / max(now - last_log, 1e-9))
                    last_log, steps_at_log = now, self.learner.steps
                if now - last_ckpt >= cfg.run.checkpoint_interval_s:
                    if self.learner.updates > (self.saved_updates or 0):   # never an untrained one
                        self.checkpoint()
                    last_ckpt = now
        except NonFiniteError as e:
            status, error = f"stopped: {e}", e
        except BaseException as e:
            status, error = f"failed: {one_line(f'{type(e).__name__}: {e}')}", e
        tb = None
        if error is not None and not isinstance(error, (NonFiniteError, CheckpointWriteError)):
            tb = traceback.format_exception(error)
            log.debug("the run failed:\n%s", "".join(tb))
        try:
            # a final checkpoint only when it adds updates, never after a failed write or
            # non-finite parameters (the newest file on disk stays the last good one)
            if (not isinstance(error, (NonFiniteError, CheckpointWriteError))
                    and self.learner.updates > (self.saved_updates if self.saved_updates is not None else 0)):
                try:
                    path = self.checkpoint()
                    log.info("wrote checkpoint %s", path)
                except (CheckpointWriteError, NonFiniteError) as e:
                    if error is None:
                        status, error = f"failed: {e}", e
                    else:
                        log.error("%s", e)
        finally:
            try:
                self.stop()
            finally:
                logger.close()
                self.logger = None
                signals.restore()
        if error is not None and not isinstance(error, Exception):
            raise error          # KeyboardInterrupt, SystemExit: not a failure of the run
        elapsed = time.time() - t_start
        summary = {"status": status, "steps": self.learner.steps, "updates": self.learner.updates,
                   "elapsed_s": elapsed, "skipped_updates": self.learner.skipped_updates,
                   "actor_restarts": self.restarts_before + self.source.restarts,
                   "checkpoint": self.newest_checkpoint()}
        summary.update(task_scalars(self.stats))
        if error is not None:
            summary["error"] = one_line(str(error) if isinstance(error, (NonFiniteError, CheckpointWriteError))
                                        else f"{type(error).__name__}: {error}")
        if tb:
            summary["traceback"] = tb
        return summary

    def _hard_exit(self):
        """Kill every actor process at once (a second Ctrl-C); one already gone stops nothing."""
        if self.source is None:
            return
        try:
            pids = self.source.pids()
        except Exception:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:            # ProcessLookupError: already gone; PermissionError: not ours
                pass
