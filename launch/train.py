"""Train an agent: ``python -m launch.train [options]`` (``--help`` lists them all).

Examples::

    # the SRWM paper's 6-game ProcGen easy setup (48 actors, batch 32, unroll 50)
    python -m launch.train --core srwm --env procgen:bigfish,fruitbot,maze,leaper,plunder,starpilot

    # a small run on a laptop
    python -m launch.train --core srwm --env memory --num-actors 2 --batch-size 8 --total-steps 20000

    # continue a run
    python -m launch.train --name my-run --resume

Invalid options are reported in one line naming the option, with exit code 2, before
any process starts and without touching an existing run directory.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from launch.config import (TrainConfig, build_parser, config_from_args, config_from_dict,
                           config_to_dict, given_options, validate_config)

log = logging.getLogger("launch.train")


class UsageError(Exception):
    """Bad input: reported in one line, exit code 2."""


def default_run_name(cfg: TrainConfig) -> str:
    family = cfg.env.env.split(":", 1)[0]
    return f"{cfg.model.core}-{family}-{time.strftime('%Y%m%d-%H%M%S')}"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=path.name == "config.json"))
    os.replace(tmp, path)


def prepare(argv: Optional[Sequence[str]] = None):
    """Parse, validate, lock and set up the run directory. Raises UsageError on bad input.

    Returns (cfg, run_dir, agent, obs_spec, num_actions, task_names, payload, lock); the
    caller releases ``lock`` (a :class:`learner.run_lock.RunLock`) when the run is over.
    """
    from agents.model import build_agent
    from envs import describe_env
    from learner.checkpoint import CheckpointError, check_architecture, load_latest
    from learner.run_lock import LOCK_NAME, RunLock, RunLockedError, held_by

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(description=__doc__.split("\n\n")[0])
    ns = parser.parse_args(argv)
    cfg = config_from_args(ns)
    given = given_options(argv)

    payload = None
    if cfg.run.resume:
        if not cfg.run.name:
            raise UsageError("--resume needs --name of the run to continue")
        run_dir = Path(cfg.run.runs_dir) / cfg.run.name
        cfg_file = run_dir / "config.json"
        if not run_dir.is_dir():
            raise UsageError(f"--resume: run directory {run_dir} does not exist")
        try:
            saved = json.loads(cfg_file.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"--resume: cannot read {cfg_file} ({type(e).__name__})") from None
        base = config_from_dict(saved)
        # explicit flags override the saved config; everything else continues as saved
        base_dict, new_dict = config_to_dict(base), config_to_dict(cfg)
        for dest in given:
            section, name = dest.split(".", 1)
            base_dict[section][name] = new_dict[section][name]
        cfg = config_from_dict(base_dict)
    try:
        validate_config(cfg)
    except ValueError as e:
        raise UsageError(str(e)) from None

    if not cfg.run.name:
        cfg.run.name = default_run_name(cfg)
    run_dir = Path(cfg.run.runs_dir) / cfg.run.name

    def occupied() -> bool:
        return run_dir.is_dir() and any(p.name != LOCK_NAME for p in run_dir.iterdir())

    holder = held_by(run_dir) if run_dir.is_dir() else None
    if holder is not None:
        raise UsageError(f"run directory {run_dir} is in use by another trainer (pid {holder}); "
                         f"wait for it to end or choose another --name")
    if not cfg.run.resume and (occupied() or (run_dir.exists() and not run_dir.is_dir())):
        raise UsageError(f"run directory {run_dir} already exists; use --resume to continue it "
                         f"or choose another --name")

    try:
        obs_spec, num_actions, task_names = desc = describe_env(cfg.env)
    except ValueError as e:
        raise UsageError(str(e)) from None
    seed_everything(cfg.env.seed)
    try:
        agent = build_agent(cfg.model, obs_spec, num_actions, len(task_names), desc.action_dims)
    except ValueError as e:     # an option that does not fit the env, e.g. an image encoder on vectors
        raise UsageError(str(e)) from None

    # creating the directory and locking it is one step: a second trainer, fresh or
    # --resume, is refused here, naming the holder
    lock = RunLock(run_dir)
    try:
        lock.acquire()
    except RunLockedError as e:
        raise UsageError(str(e)) from None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot create the run directory {run_dir}: "
                         f"{getattr(e, 'strerror', None) or e}") from None
    try:
        if not cfg.run.resume:
            if occupied():      # another fresh start won the race before we took the lock
                raise UsageError(f"run directory {run_dir} already exists; use --resume to continue it "
                                 f"or choose another --name")
        else:
            try:
                payload, path = load_latest(run_dir, set_aside_bad=True)
            except CheckpointError as e:
                raise UsageError(str(e)) from None
            if payload is None:
                log.warning("--resume: run %s has no checkpoint yet (it ended before its first one); "
                            "starting it from the beginning", run_dir)
            else:
                try:
                    check_architecture(payload["architecture"], agent.architecture())
                    tasks = payload.get("run", {}).get("task_names")
                    if tasks is not None and list(tasks) != list(task_names):
                        raise CheckpointError(f"checkpoint was trained on tasks {tasks}, this run has {task_names}")
                except CheckpointError as e:
                    raise UsageError(f"--resume: {e}") from None
                log.info("resuming %s from %s (step %d)", run_dir, path.name,
                         payload["learner"]["counters"]["steps"])
        try:
            _write_json_atomic(run_dir / "config.json", config_to_dict(cfg))
        except OSError as e:
            raise UsageError(f"cannot write {run_dir / 'config.json'}: {e.strerror or e}") from None
    except BaseException:
        lock.release()
        raise
    return cfg, run_dir, agent, obs_spec, num_actions, task_names, payload, lock


SUMMARY_RESERVE = 16384     # bytes summary.json holds while the run runs (room for the last word)


def reserve_summary(run_dir: Path) -> None:
    """summary.json says "running" while the run runs, padded so that the final summary can
    be written over it in place even when the disk is full by then."""
    text = json.dumps({"status": "running", "pid": os.getpid()}, indent=2) + "\n"
    path = run_dir / "summary.json"
    with open(path, "w") as f:
        f.write(text + " " * max(SUMMARY_RESERVE - len(text), 0))
        f.flush()
        os.fsync(f.fileno())


def write_summary(run_dir: Path, summary: dict) -> Optional[str]:
    """Write summary.json; return a one-line reason when it cannot be written.

    Atomically when possible; on a full disk, over the reserved file in place (the
    traceback left out if it does not fit)."""
    path = run_dir / "summary.json"
    try:
        _write_json_atomic(path, summary)
        return None
    except OSError as e:
        first = e
        try:
            path.with_name(f".{path.name}.tmp").unlink()
        except OSError:
            pass
    data = json.dumps(summary, indent=2).encode()
    if len(data) > SUMMARY_RESERVE:
        data = json.dumps({k: v for k, v in summary.items() if k != "traceback"}, indent=2).encode()
    try:
        with open(path, "r+b") as f:
            if len(data) > os.fstat(f.fileno()).st_size:
                raise OSError(first.errno, first.strerror)
            f.write(data)
            f.truncate(len(data))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        return f"cannot write {path}: {e.strerror or e}"
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg, run_dir, agent, obs_spec, num_actions, task_names, payload, lock = prepare(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from launch.threads import apply_layout, plan_for_config
    from learner.device import bfloat16_cpu_warning, resolve_device
    device_type = resolve_device(cfg.run.device).type
    layout = plan_for_config(cfg, device_type)
    apply_layout(cfg, layout)
    log.info(layout.describe())
    slow_bf16 = bfloat16_cpu_warning(cfg.model.encoder_dtype, device_type)
    if slow_bf16:
        log.warning(slow_bf16)
    try:
        from launch.trainer import Trainer, failure_summary
        try:
            reserve_summary(run_dir)
        except OSError as e:
            print(f"error: cannot write {run_dir / 'summary.json'}: {e.strerror or e}", file=sys.stderr)
            return 1
        try:
            trainer = Trainer(cfg, run_dir, agent=agent, obs_spec=obs_spec, num_actions=num_actions,
                              task_names=task_names, resume_payload=payload)
            summary = trainer.run()
        except Exception as e:      # a failure before the loop started (the loop reports its own)
            summary = failure_summary(e)
        problem = write_summary(run_dir, summary)
        print(f"{summary['status']}: {summary['steps']} steps, {summary['updates']} updates in "
              f"{summary['elapsed_s']:.0f} s; run directory {run_dir}")
        if "error" in summary:
            print(f"error: {summary['error']}", file=sys.stderr)
            return 1
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
        if cfg.run.eval_episodes > 0 and summary["status"] == "finished":
            from launch.evaluate import main as evaluate_main
            split = ["--split", "test1"] if cfg.env.env.split(":", 1)[0].strip().lower() == "procgen" else []
            return evaluate_main([str(run_dir), *split, "--episodes", str(cfg.run.eval_episodes),
                                  "--actors", "1"])
        return 0
    finally:
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
