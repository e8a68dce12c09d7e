"""``python -m launch.train``: end to end on the CPU, resume, and bad input.

Bad input must give a one-line error naming the value, exit code 2, within seconds,
before any process starts, and leave an existing run directory untouched.
"""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMALL = ["--hidden-size", "16", "--num-heads", "2", "--head-size", "8", "--d-ff", "32",
         "--feature-size", "16"]


def run_train(args, tmp_path, timeout=300, check=True):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.run([sys.executable, "-m", "launch.train", "--runs-dir", str(tmp_path), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr[-4000:]}")
    return p


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.timeout(600)
def test_end_to_end_then_resume(tmp_path):
    base = ["--env", "memory", "--core", "srwm", *SMALL, "--num-actors", "2", "--envs-per-actor", "4",
            "--batch-size", "8", "--unroll-length", "20", "--log-interval-s", "0.5",
            "--learner-threads", "1", "--name", "e2e", "--no-progress", "--core-diagnostics"]
    run_train(base + ["--total-steps", "3200"], tmp_path)
    run_dir = tmp_path / "e2e"
    ckpts = sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))
    assert ckpts, "no checkpoint written"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] >= 3200
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["model"]["core"] == "srwm" and cfg["actor"]["num_actors"] == 2

    rows = read_csv(run_dir / "logs.csv")
    trained = [r for r in rows if r.get("total_loss")]
    assert trained, "no row with a loss"
    import math
    import torch
    payload = torch.load(ckpts[-1], weights_only=True)
    num_actions = payload["learner"]["model"]["policy.weight"].shape[0]
    T, B = 20, 8
    for r in trained:
        # the logged loss is the IMPALA loss of its parts (default costs 0.5 and 0.01), and
        # the entropy column the mean policy entropy per step, within (0, log A]
        parts = float(r["pg_loss"]) + 0.5 * float(r["baseline_loss"]) + 0.01 * float(r["entropy_loss"])
        assert math.isfinite(float(r["total_loss"]))
        assert float(r["total_loss"]) == pytest.approx(parts, rel=1e-4, abs=1e-4), r
        assert float(r["entropy"]) == pytest.approx(-float(r["entropy_loss"]) / (T * B), rel=1e-4), r
        assert 0.0 < float(r["entropy"]) <= math.log(num_actions) + 1e-6, r
    assert [int(float(r["updates"])) for r in trained] == sorted(int(float(r["updates"])) for r in trained)
    assert payload["learner"]["counters"]["updates"] * T * B == payload["learner"]["counters"]["steps"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(run_dir / "tb"))
    ea.Reload()
    tags = ea.Tags()["scalars"]
    # the CSV has the same scalars as TensorBoard
    assert set(tags) <= set(rows[0]), sorted(set(tags) - set(rows[0]))
    for tag in ("total_loss", "sps", "learning_rate", "grad_norm", "entropy_loss", "return/mean",
                "queue/full_rows", "time/learn"):
        assert tag in tags, (tag, tags)
    assert any(t.startswith("return/memory") for t in tags) and any(t.startswith("length/memory") for t in tags)
    # --core-diagnostics: core/<layer>/<name> and grad_norm/<group>, in TensorBoard and the CSV
    for tag in ("core/layer0/q_entropy", "core/layer1/dW_rel", "grad_norm/core.layer0.W_q", "grad_norm/encoder"):
        assert tag in tags, (tag, tags)
        assert any(r.get(tag) for r in rows), tag
    assert all(abs(e.value) < 1e6 for e in ea.Scalars("total_loss"))

    first_steps = payload["learner"]["counters"]["steps"]
    assert first_steps == summary["steps"]
    first_model = payload["learner"]["model"]

    # resume: only the name and the new budget are given; the rest comes from config.json
    run_train(["--name", "e2e", "--resume", "--total-steps", "4800", "--no-progress"], tmp_path)
    summary2 = json.loads((run_dir / "summary.json").read_text())
    assert summary2["steps"] >= 4800
    rows2 = read_csv(run_dir / "logs.csv")
    steps_after = [int(float(r["step"])) for r in rows2[len(rows):]]
    assert steps_after and min(steps_after) >= first_steps and max(steps_after) >= 4800, \
        "resume did not continue from the saved step"
    cfg2 = json.loads((run_dir / "config.json").read_text())
    assert cfg2["model"]["core"] == "srwm" and cfg2["run"]["total_steps"] == 4800
    # the resumed run went on training the saved parameters: they changed, and stay finite
    last = torch.load(sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True)
    assert last["learner"]["counters"]["updates"] > payload["learner"]["counters"]["updates"]
    model = last["learner"]["model"]
    assert model.keys() == first_model.keys()
    assert all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())
    assert any(not torch.equal(model[k], first_model[k]) for k in model if model[k].is_floating_point())


BAD = [
    (["--core", "nope"], "nope"),
    (["--env", "procgen:notagame"], "notagame"),
    (["--env", "nofamily:x"], "nofamily"),
    (["--unroll-length", "0"], "unroll-length"),
    (["--batch-size", "64", "--num-actors", "2", "--envs-per-actor", "1", "--num-buffers", "2"], "batch-size"),
    (["--hidden-size", "128", "--num-heads", "8", "--head-size", "8"], "head"),
    (["--num-actors", "0"], "num-actors"),
    (["--learning-rate", "-1"], "learning-rate"),
    (["--discount", "1.5"], "discount"),
    (["--total-steps", "0"], "total-steps"),
    (["--device", "tpu"], "tpu"),
    (["--backend", "mpi"], "mpi"),
    (["--inference", "gpu"], "gpu"),
    (["--env", "procgen:bigfish", "--start-level", "-1"], "start"),
    (["--env", "procgen:bigfish", "--distribution-mode", "memory"], "memory"),
    (["--encoder", "resnet"], "is not a registered encoder; known encoders: auto, impala, mlp, nature"),
    (["--env", "memory", "--encoder", "nature"], "encoder 'nature' needs image observations [C, H, W]"),
    (["--core", "lstm", "--lstm-forget-bias", "inf"], "--lstm-forget-bias must be a finite number, got inf"),
    (["--core", "lstm", "--lstm-input-norm", "batchnorm"], "batchnorm"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[a[1] for a in BAD])
def test_bad_config_exits_2_with_one_line(tmp_path, args, needle, capsys):
    """In-process (the same main() the command runs) to keep the suite fast."""
    from launch.train import main
    t0 = time.time()
    code = main(["--runs-dir", str(tmp_path), "--name", "bad", *args])
    err = [l for l in capsys.readouterr().err.strip().splitlines() if l.strip()]
    assert code == 2
    assert len(err) == 1 and needle.lower() in err[0].lower(), err
    assert not (tmp_path / "bad").exists(), "a run directory was created for a bad config"
    assert time.time() - t0 < 10


def test_bad_config_exit_code_of_the_command(tmp_path):
    t0 = time.time()
    p = run_train(["--name", "bad", "--core", "nope"], tmp_path, timeout=60, check=False)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    err = [l for l in p.stderr.strip().splitlines() if l.strip()]
    assert len(err) == 1 and "nope" in err[0] and "srwm" in err[0], err
    assert time.time() - t0 < 30


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    from launch.train import main
    run_dir = tmp_path / "keep"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("precious")
    assert main(["--runs-dir", str(tmp_path), "--name", "keep", "--env", "memory"]) == 2
    assert "exists" in capsys.readouterr().err
    assert (run_dir / "config.json").read_text() == "precious"


def test_resume_errors(tmp_path, capsys):
    from launch.train import main
    assert main(["--runs-dir", str(tmp_path), "--name", "missing", "--resume"]) == 2
    assert "missing" in capsys.readouterr().err
    d = tmp_path / "garbled"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    assert main(["--runs-dir", str(tmp_path), "--name", "garbled", "--resume"]) == 2
    assert "config.json" in capsys.readouterr().err
    assert (d / "config.json").read_text() == "{not json"
    # a run directory whose checkpoints are all corrupt: an error, never a fresh start
    e = tmp_path / "torn"
    (e / "checkpoints").mkdir(parents=True)
    from launch.config import TrainConfig, save_config
    save_config(TrainConfig(), e / "config.json")
    (e / "checkpoints" / "ckpt-000000001.pt").write_bytes(b"torn")
    assert main(["--runs-dir", str(tmp_path), "--name", "torn", "--resume", "--env", "memory"]) == 2
    assert "no loadable checkpoint" in capsys.readouterr().err
    assert (e / "checkpoints" / "ckpt-000000001.pt").read_bytes() == b"torn"


def test_resume_with_another_architecture_is_refused(tmp_path, capsys):
    from launch.train import main
    from launch.config import TrainConfig, config_to_dict, save_config
    from learner.checkpoint import save_checkpoint
    from agents.model import build_agent
    from envs import describe_env
    cfg = TrainConfig()
    cfg.env.env, cfg.model.core = "memory", "lstm"
    cfg.model.hidden_size = 16
    d = tmp_path / "arch"
    d.mkdir()
    save_config(cfg, d / "config.json")
    spec, A, tasks = describe_env(cfg.env)
    agent = build_agent(cfg.model, spec, A, len(tasks))
    save_checkpoint(d, {"config": config_to_dict(cfg), "architecture": agent.architecture(),
                        "learner": {"counters": {"steps": 0}}, "run": {"task_names": tasks}}, 1)
    assert main(["--runs-dir", str(tmp_path), "--name", "arch", "--resume", "--hidden-size", "32"]) == 2
    err = capsys.readouterr().err
    assert "hidden_size" in err and len(err.strip().splitlines()) == 1


def test_resume_of_a_run_saved_with_the_lstm_width_option(tmp_path):
    """A run saved while the LSTM had its own width option (``lstm_hidden_size``; the lstm
    core ignored ``hidden_size``) resumes into the same LSTM; its config.json is rewritten in
    today's terms."""
    from launch.config import TrainConfig, config_to_dict
    from launch.train import prepare
    from learner.checkpoint import save_checkpoint
    from agents.model import build_agent
    from envs import describe_env
    cfg = TrainConfig()
    cfg.env.env, cfg.model.core, cfg.model.hidden_size, cfg.model.feature_size = "memory", "lstm", 24, 16
    spec, A, tasks = describe_env(cfg.env)
    agent = build_agent(cfg.model, spec, A, len(tasks))
    old_config, old_arch = config_to_dict(cfg), agent.architecture()
    for section in (old_config["model"], old_arch):
        section.update(hidden_size=128, lstm_hidden_size=24)
    d = tmp_path / "old"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(old_config))
    save_checkpoint(d, {"config": old_config, "architecture": old_arch,
                        "learner": {"model": agent.state_dict(), "counters": {"steps": 0}},
                        "run": {"task_names": tasks}}, 1)
    new_cfg, _, new_agent, *_, payload, lock = prepare(["--runs-dir", str(tmp_path), "--name", "old", "--resume"])
    try:
        assert new_cfg.model.hidden_size == 24 and new_agent.core.hidden_size == 24
        new_agent.load_state_dict(payload["learner"]["model"], strict=True)
        saved = json.loads((d / "config.json").read_text())["model"]
        assert saved["hidden_size"] == 24 and "lstm_hidden_size" not in saved
    finally:
        lock.release()


def _old_layout_config():
    """A config.json as runs saved it before the ``ray`` section: the Ray options under ``run``
    (with values that are not the defaults) and the since removed ``debug_crash_at_step``."""
    from launch.config import TrainConfig, config_to_dict
    cfg = TrainConfig()
    cfg.env.env, cfg.model.core, cfg.model.lstm_hidden_size = "memory", "lstm", 16
    old = config_to_dict(cfg)
    del old["ray"]
    old["run"].update(ray_address="10.1.2.3:6379", ray_cpus_per_actor=0.5, ray_broadcast_every=4,
                      debug_crash_at_step=0)
    return old


def test_old_layout_config_loads_for_resume_and_evaluation(tmp_path, caplog):
    """Runs saved before the ``ray`` section kept the Ray options in ``run``: their config.json
    (and the config inside their checkpoints) still loads, for ``--resume`` (explicit flags
    still override, and the config is rewritten in today's layout) and for evaluation."""
    from actors.config import RayConfig
    from agents.model import build_agent
    from envs import describe_env
    from launch.config import config_from_dict
    from launch.train import prepare
    from learner.checkpoint import save_checkpoint
    from learner.evaluation.loading import load_policy
    old = _old_layout_config()
    cfg = config_from_dict(old)
    assert cfg.ray == RayConfig(ray_address="10.1.2.3:6379", ray_cpus_per_actor=0.5, ray_broadcast_every=4)
    assert not hasattr(cfg.run, "ray_address")
    # a run directory of that version, with a checkpoint whose payload holds the old layout too
    d = tmp_path / "old"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(old))
    spec, A, tasks = describe_env(cfg.env)
    agent = build_agent(cfg.model, spec, A, len(tasks))
    save_checkpoint(d, {"config": old, "architecture": agent.architecture(),
                        "learner": {"counters": {"steps": 0, "updates": 0}, "model": agent.state_dict()},
                        "run": {"task_names": tasks}}, 1)
    loaded = load_policy(d)
    assert loaded.model.core == "lstm" and loaded.task_names == tasks
    got = prepare(["--runs-dir", str(tmp_path), "--name", "old", "--resume", "--ray-broadcast-every", "2"])
    got[-1].release()
    resumed, payload = got[0], got[6]
    assert payload is not None
    assert resumed.ray == RayConfig(ray_address="10.1.2.3:6379", ray_cpus_per_actor=0.5, ray_broadcast_every=2)
    assert resumed.model.core == "lstm" and resumed.env.env == "memory"
    saved = json.loads((d / "config.json").read_text())
    assert saved["ray"] == {"ray_address": "10.1.2.3:6379", "ray_cpus_per_actor": 0.5, "ray_broadcast_every": 2}
    assert not any(k.startswith("ray_") or k == "debug_crash_at_step" for k in saved["run"])


def test_the_projects_own_old_run_configs_load():
    """The config.json files kept under docs/learning/ were saved before the ``ray`` section."""
    from launch.config import config_from_dict
    files = sorted((ROOT / "docs" / "learning").rglob("*config.json"))
    assert files
    for f in files:
        data = json.loads(f.read_text())
        cfg = config_from_dict(data)
        for name in ("ray_address", "ray_cpus_per_actor", "ray_broadcast_every"):
            if name in data.get("run", {}):
                assert getattr(cfg.ray, name) == data["run"][name], (f, name)


def test_given_options_are_exactly_the_flags_on_the_command_line():
    """What ``--resume`` lets override the saved config: every option given, even at its
    default value, in any spelling argparse accepts; nothing else."""
    import dataclasses
    from launch.config import SECTIONS, TrainConfig, given_options
    cfg = TrainConfig()
    for section in SECTIONS:
        for f in dataclasses.fields(getattr(cfg, section)):
            flag, value = "--" + f.name.replace("_", "-"), getattr(getattr(cfg, section), f.name)
            for argv in ([flag] if value is True else [flag.replace("--", "--no-", 1)] if value is False
                         else [flag, str(value)], [f"{flag}={value}"] if not isinstance(value, bool) else []):
                if argv:
                    assert given_options(argv) == {f"{section}.{f.name}"}, argv
    assert given_options([]) == set()
    assert given_options(["--env", "memory", "--no-progress", "--learning-r", "1e-3", "--not-ours", "x"]) == \
        {"env.env", "run.progress", "learner.learning_rate"}


def test_no_private_argparse_api():
    """launch/ builds its parsers from the config dataclasses, never from argparse internals."""
    import re
    private = re.compile(r"\._(actions|option_string_actions|action_groups|mutually_exclusive_groups|"
                         r"defaults|registries|get_positional_actions|get_optional_actions)\b")
    for path in sorted((ROOT / "launch").glob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            assert not private.search(line), f"{path.name}:{i}: {line.strip()}"


def test_help_lists_every_component():
    p = subprocess.run([sys.executable, "-m", "launch.train", "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0
    for flag in ("--core", "--env", "--num-actors", "--batch-size", "--unroll-length", "--learning-rate",
                 "--entropy-cost", "--num-heads", "--detach-each-step", "--resume", "--backend",
                 "--ray-address", "--ray-cpus-per-actor", "--ray-broadcast-every"):
        assert flag in p.stdout, flag
    assert "debug" not in p.stdout.lower()          # fault injection is no option (actors/crashes.py)


def test_fault_injection_is_not_a_command_line_option(tmp_path, capsys):
    from launch.train import main
    with pytest.raises(SystemExit) as e:
        main(["--runs-dir", str(tmp_path), "--name", "x", "--env", "memory", "--debug-crash-at-step", "3"])
    assert e.value.code == 2 and "unrecognized arguments: --debug-crash-at-step" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("core", ["lstm", "linear_transformer", "deltanet", "rec_delta", "delta_rnn", "srwm"])
def test_atari_script_uses_the_recurrent_fwp_papers_sizes(core, tmp_path):
    """launch/atari.sh GAME CORE: the five cores of the Atari paper get its model sizes (2 layers,
    4 heads of 32, d_ff 512, LSTM 256); other cores keep the shared 8 heads of 16."""
    from agents.model import core_options
    from launch.config import parse_config
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\nshift 2\nprintf "%s\\n" "$@"\n')       # drop "-m launch.train"
    fake.chmod(0o755)
    out = subprocess.run([str(Path(__file__).resolve().parents[1] / "launch" / "atari.sh"), "Pong", core],
                         env=dict(os.environ, PYTHON=str(fake)), capture_output=True, text=True, check=True)
    cfg = parse_config(out.stdout.splitlines())
    assert cfg.model.core == core and cfg.env.env == "atari:Pong"
    assert (cfg.learner.learning_rate, cfg.actor.batch_size, cfg.actor.unroll_length) == (6e-4, 32, 50)
    want = (4, 32) if core != "srwm" else (8, 16)
    assert core_options(cfg.model)["hidden_size"] == (256 if core == "lstm" else 128)
    if core != "lstm":
        assert (cfg.model.num_layers, cfg.model.d_ff) == (2, 512)
        assert (cfg.model.num_heads, cfg.model.head_size) == want


@pytest.mark.parametrize("script", ["procgen_easy_multitask.sh", "procgen_memory_multitask.sh"])
@pytest.mark.parametrize("core", ["lstm", "srwm", "ff"])
def test_procgen_scripts_build_the_srwm_papers_sizes(script, core, tmp_path):
    """The ProcGen scripts share launch/impala_paper_flags.sh: 2 layers of 8 heads of 16 (hidden
    128), d_ff 512; the LSTM keeps its 256 units (the paper's baseline)."""
    from agents.model import core_options
    from launch.config import parse_config
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\nshift 2\nprintf "%s\\n" "$@"\n')       # drop "-m launch.train"
    fake.chmod(0o755)
    out = subprocess.run([str(ROOT / "launch" / script), core], env=dict(os.environ, PYTHON=str(fake)),
                         capture_output=True, text=True, check=True)
    cfg = parse_config(out.stdout.splitlines())
    opts = core_options(cfg.model)
    assert cfg.model.core == core and opts["hidden_size"] == (256 if core == "lstm" else 128)
    if core == "srwm":
        assert (opts["num_layers"], opts["num_heads"], opts["head_size"], opts["d_ff"]) == (2, 8, 16, 512)
