"""Named learning runs that produce the project's learning evidence.

``python -m launch.reproduce NAME [--dry-run]`` trains every run of configuration NAME
one after the other (each followed by its evaluation), then writes into
``docs/learning/NAME/``: the curves (PNG, from ``launch.plot``), each run's raw
``logs.csv`` and evaluation table, and a ``README.md`` with the exact commands, the
commit, the machine, the wall time and the steps/s. ``--dry-run`` prints every command
and checks that each one parses and validates (as ``launch.train`` would) without
starting anything. ``python -m launch.reproduce --list`` lists the configurations.

A run that already finished is not redone (its run directory has a ``summary.json``
whose status is "finished"); an interrupted one is continued with ``--resume``.

The CPU configurations are sized for a 2-core machine; the GPU ones are the papers'
scale (48 actors, batch 32, unroll 50) and say how long they should take.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]

# Small-batch optimiser settings for the 2-core machine (docs/learning/README.md). The
# paper's RMSProp (eps 0.01 on losses summed over batch x unroll) was tuned for 32 x 50
# samples per update; these keep eps at about 1e-5 per summed sample (A2C's eps on a mean
# loss), start RMSProp's accumulator at 1 as TensorFlow 1 did (no 10 x lr first steps, which
# killed most encoder units on Pong), and Atari uses A2C's 16 envs x 5 steps, lr 7e-4.
CPU_ATARI = ["--num-actors", "2", "--envs-per-actor", "8", "--batch-size", "16", "--unroll-length", "5",
             "--learning-rate", "7e-4", "--rmsprop-eps", "8e-4", "--rmsprop-init", "1",
             "--grad-norm-clip", "40", "--checkpoint-interval-s", "300", "--log-interval-s", "20"]
CPU_PROCGEN = ["--num-actors", "2", "--envs-per-actor", "8", "--batch-size", "8", "--unroll-length", "20",
               "--learning-rate", "6e-4", "--rmsprop-eps", "1e-3", "--rmsprop-init", "1",
               "--num-levels", "200", "--start-level", "0",
               "--checkpoint-interval-s", "300", "--log-interval-s", "20"]
GPU_PAPER = ["--num-actors", "48", "--envs-per-actor", "1", "--batch-size", "32", "--unroll-length", "50",
             "--learning-rate", "6e-4", "--rmsprop-eps", "0.01", "--entropy-cost", "0.01",
             "--device", "cuda", "--inference", "learner", "--checkpoint-interval-s", "600"]


@dataclass
class Run:
    name: str                        # run directory name under --runs-dir
    train: List[str]                 # launch.train flags
    evaluate: List[str]              # launch.evaluate flags (after the run directory)


@dataclass
class Configuration:
    name: str
    about: str
    runs: List[Run]
    target: str
    expected_time: str
    device: str = "cpu"
    plot_metrics: List[str] = field(default_factory=lambda: ["return"])


def _pong(core: str, steps: int) -> Run:
    return Run(f"pong-cpu-{core}", ["--env", "atari:Pong", "--core", core, "--total-steps", str(steps),
                                    *CPU_ATARI],
               ["--episodes", "10", "--envs", "10"])


def _procgen(game: str, core: str, steps: int, extra: Sequence[str] = (), suffix: str = "") -> Run:
    return Run(f"procgen-cpu-{game}-{core}{suffix}",
               ["--env", f"procgen:{game}", "--core", core, "--total-steps", str(steps), *CPU_PROCGEN, *extra],
               ["--split", "test1", "--episodes", "100", "--envs", "10"])


CONFIGURATIONS: Dict[str, Configuration] = {c.name: c for c in [
    Configuration(
        "pong-cpu", "Atari Pong, ff and lstm, scaled to 2 cores (2 actors x 8 envs, batch 16 x unroll 5)",
        [_pong("ff", 5_000_000), _pong("lstm", 5_000_000)],
        target="evaluation return well above the random policy's -20.7; +15 is the goal",
        expected_time="about 1 h 35 min per run at the ~880-900 steps/s of ff and lstm on an idle 2-core machine"),
    Configuration(
        "procgen-cpu", "ProcGen easy, starpilot and bigfish one game at a time, ff and srwm, levels 0-199",
        [_procgen(g, c, 1_000_000) for g in ("starpilot", "bigfish") for c in ("ff", "srwm")],
        target="test1 return above the random policy (starpilot 2.5, bigfish 1) with a 95% CI excluding it",
        expected_time="about 45 min per run at the ~370 steps/s of the IMPALA ResNet on 2 cores"),
    Configuration(
        "procgen-cpu-bf16", "Does a bfloat16 encoder learn as float32 does? starpilot srwm (procgen-cpu's "
        "run, reused when finished) beside the same run with --encoder-dtype bfloat16",
        [_procgen("starpilot", "srwm", 1_000_000),
         _procgen("starpilot", "srwm", 1_000_000, ["--encoder-dtype", "bfloat16"], "-bf16")],
        target="the bfloat16 run's curve and test1 evaluation within the float32 run's spread",
        expected_time="about 40 min for the bfloat16 run at ~450 steps/s (needs a CPU with bfloat16 "
                      "matrix units, e.g. avx512_bf16, to be faster), plus the float32 run if not yet done"),
    Configuration(
        "procgen-gpu", "ProcGen easy at the SRWM paper's scale, starpilot and bigfish, ff and srwm, 25M steps",
        [Run(f"procgen-gpu-{g}-{c}", ["--env", f"procgen:{g}", "--core", c, "--total-steps", "25000000",
                                      "--num-levels", "200", *GPU_PAPER],
             ["--split", "test1", "--episodes", "200", "--actors", "4", "--device", "cuda"])
         for g in ("starpilot", "bigfish") for c in ("ff", "srwm")],
        target="CleanRL PPO after 25M steps: starpilot about 31, bigfish about 16 (reference points)",
        expected_time="25M steps / (steps/s of launch.bench on the GPU); at the paper's P100 figures "
                      "(ff 3,500, srwm 1,700 steps/s) 2-4 h per run",
        device="cuda"),
    Configuration(
        "atari-gpu", "Atari Pong at the recurrent FWP paper's scale, ff and lstm, 25M steps",
        [Run(f"atari-gpu-pong-{c}", ["--env", "atari:Pong", "--core", c, "--total-steps", "25000000",
                                     *GPU_PAPER], ["--episodes", "30", "--envs", "10", "--device", "cuda"])
         for c in ("ff", "lstm")],
        target="evaluation return near +20 (Pong is solved)",
        expected_time="25M steps / (steps/s of launch.bench on the GPU); about 2 h at 3,500 steps/s",
        device="cuda"),
]}


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def train_command(run: Run, runs_dir: str, resume: bool) -> List[str]:
    cmd = [_python(), "-m", "launch.train", *run.train, "--runs-dir", runs_dir, "--name", run.name,
           "--no-progress"]
    return cmd + (["--resume"] if resume else [])


def evaluate_command(run: Run, runs_dir: str, out: Path) -> List[str]:
    return [_python(), "-m", "launch.evaluate", str(Path(runs_dir) / run.name), *run.evaluate,
            "--out", str(out), "--no-progress"]


def check_parses(run: Run, runs_dir: str) -> None:
    """Parse and validate the run's training flags as ``launch.train`` does; starts nothing.
    A device the configuration needs but this machine lacks is not an error here."""
    from launch.config import build_parser, config_from_args, validate_config
    ns = build_parser().parse_args([*run.train, "--runs-dir", runs_dir, "--name", run.name])
    cfg = config_from_args(ns)
    if cfg.run.device.startswith("cuda"):
        cfg.run.device = "cpu"
    validate_config(cfg)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores, {cpu}, {platform.system()} {platform.release()}"


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _finished(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("status") == "finished"
    except (OSError, ValueError):
        return False


def _fmt_cmd(cmd: Sequence[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


def _relative(text: str) -> str:
    """``text`` as the report shows it: the commands run from the repository root, so paths
    under it are shown relative to it (the report is read on other machines)."""
    return text.replace(str(ROOT) + os.sep, "")


def _shown(cmd: Sequence[str]) -> str:
    return _relative(_fmt_cmd(cmd))


def run_configuration(conf: Configuration, runs_dir: str, out_root: Path) -> int:
    out = out_root / conf.name
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for run in conf.runs:
        run_dir = Path(runs_dir) / run.name
        t0 = time.time()
        if not _finished(run_dir):
            resume = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
            cmd = train_command(run, runs_dir, resume)
            print(f"[{conf.name}] {_fmt_cmd(cmd)}", flush=True)
            rc = subprocess.call(cmd, cwd=ROOT)
            if rc != 0:
                print(f"error: training run {run.name} exited with {rc}", file=sys.stderr)
                return 1
        wall = time.time() - t0
        summary = json.loads((run_dir / "summary.json").read_text())
        eval_out = out / run.name / "eval"
        ecmd = evaluate_command(run, runs_dir, eval_out)
        print(f"[{conf.name}] {_fmt_cmd(ecmd)}", flush=True)
        res = subprocess.run(ecmd, cwd=ROOT, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"error: evaluation of {run.name} failed: {res.stderr.strip().splitlines()[-1:]}",
                  file=sys.stderr)
            return 1
        shutil.copy(run_dir / "logs.csv", out / run.name / "logs.csv")
        table = _relative(res.stdout)
        (out / run.name / "evaluation.txt").write_text(table)
        records.append((run, train_command(run, runs_dir, False), ecmd, summary, wall, table))
    plot = [_python(), "-m", "launch.plot", *[str(Path(runs_dir) / r.name) for r in conf.runs],
            "--out", str(out), "--metrics", *conf.plot_metrics, "--smooth", "5"]
    subprocess.run(plot, cwd=ROOT, check=False)
    lines = [f"# {conf.name}", "", conf.about, "", f"Target: {conf.target}.", "",
             f"Commit {commit()}; machine: {machine()}; written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             "", f"Reproduce: `python -m launch.reproduce {conf.name}`", ""]
    for run, tcmd, ecmd, summary, wall, table in records:
        sps = summary["steps"] / max(summary.get("elapsed_s", 0.0), 1e-9)
        lines += [f"## {run.name}", "", "```", "python " + _shown(tcmd[1:]), "python " + _shown(ecmd[1:]), "```", "",
                  f"{summary['steps']:,} steps in {summary['elapsed_s'] / 60:.0f} min of training "
                  f"({sps:.0f} steps/s end to end); this invocation took {wall / 60:.0f} min.", "",
                  "```", table.strip(), "```", ""]
    (out / "README.md").write_text("\n".join(lines))
    print(f"wrote {out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m launch.reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("name", nargs="?", help="configuration: " + ", ".join(CONFIGURATIONS))
    p.add_argument("--list", action="store_true", help="list the configurations and exit")
    p.add_argument("--dry-run", action="store_true", help="print and validate every command; run nothing")
    p.add_argument("--runs-dir", default="runs", help="folder of the run directories (default: runs)")
    p.add_argument("--out", default=str(ROOT / "docs" / "learning"), help="report folder (default: docs/learning)")
    a = p.parse_args(argv)
    if a.list or not a.name:
        for c in CONFIGURATIONS.values():
            print(f"{c.name:12s} {c.about}\n{'':12s} target: {c.target}\n{'':12s} time: {c.expected_time}")
        return 0 if a.list else 2
    if a.name not in CONFIGURATIONS:
        print(f"error: unknown configuration {a.name!r}; known: {', '.join(CONFIGURATIONS)}", file=sys.stderr)
        return 2
    conf = CONFIGURATIONS[a.name]
    if a.dry_run:
        for run in conf.runs:
            try:
                check_parses(run, a.runs_dir)
            except (ValueError, SystemExit) as e:
                print(f"error: {run.name}: {e}", file=sys.stderr)
                return 2
            print(_fmt_cmd(train_command(run, a.runs_dir, False)))
            print(_fmt_cmd(evaluate_command(run, a.runs_dir, Path(a.out) / conf.name / run.name / "eval")))
        print(f"# {conf.name}: {len(conf.runs)} runs; expected time: {conf.expected_time}")
        return 0
    if conf.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            print(f"error: configuration {conf.name} needs a CUDA GPU; this machine has none", file=sys.stderr)
            return 2
    return run_configuration(conf, a.runs_dir, Path(a.out))


if __name__ == "__main__":
    sys.exit(main())
