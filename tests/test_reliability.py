"""Reliability by fault injection: crashing and killed actors, signals, a killed trainer,
torn and malicious checkpoints, non-finite losses and exact resume.

Each test asserts what was kept and that nothing was lost or left behind.
"""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--hidden-size", "16", "--num-heads", "2", "--head-size", "8", "--d-ff", "32",
         "--feature-size", "16"]
BASE = ["--env", "memory", "--core", "lstm", *SMALL, "--num-actors", "2", "--envs-per-actor", "2",
        "--batch-size", "4", "--unroll-length", "10", "--learner-threads", "1", "--no-progress",
        "--log-interval-s", "0.2"]


def dev_shm_names():
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


def start_train(tmp_path, args, **env):
    """``launch.train`` in a subprocess; ``env``: extra environment variables (e.g.
    ``FWRL_DEBUG_CRASH_AT_STEP``, the fault injection of actors.crashes)."""
    return subprocess.Popen([sys.executable, "-m", "launch.train", "--runs-dir", str(tmp_path), *BASE, *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", **env))


def wait_for(cond, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def logged_rows(run_dir):
    """Log rows written after at least one update."""
    import csv
    p = run_dir / "logs.csv"
    if not p.exists():
        return 0
    with open(p, newline="") as f:
        return sum(1 for r in csv.DictReader(f) if r.get("total_loss"))


def children_of(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def assert_gone(procs, timeout=15):
    def all_gone():
        return all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in procs)
    wait_for(all_gone, timeout, "child processes to exit")


# -- actor crashes ---------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_env_raising_restarts_the_actor_and_training_finishes(tmp_path):
    p = start_train(tmp_path, ["--name", "crash", "--total-steps", "1200"], FWRL_DEBUG_CRASH_AT_STEP="15")
    out, err = p.communicate(timeout=240)
    assert p.returncode == 0, err[-3000:]
    import json
    summary = json.loads((tmp_path / "crash" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["actor_restarts"] >= 1
    assert "injected env failure" in err
    rows = (tmp_path / "crash" / "logs.csv").read_text()
    assert "actor_restarts" in rows.splitlines()[0]


def local_source(cfg):
    """The local rollout source (not started) of ``cfg``'s env, model and actor sections."""
    from actors.source import LocalRolloutSource
    from agents.model import build_agent
    from envs import describe_env

    obs_spec, num_actions, tasks = describe_env(cfg.env)
    agent = build_agent(cfg.model, obs_spec, num_actions, len(tasks))
    return LocalRolloutSource(agent, env=cfg.env, model=cfg.model, actor=cfg.actor, obs_shape=obs_spec.shape,
                              obs_dtype=obs_spec.dtype, num_actions=num_actions, num_tasks=len(tasks))


@pytest.mark.timeout(300)
def test_injected_crash_is_restarted_by_the_pool(monkeypatch):
    """``FWRL_DEBUG_CRASH_AT_STEP`` (the tests' fault injection, not a command-line option)
    makes actor 0 raise in its first life; the pool restarts it with fresh envs, once, and
    batches keep coming."""
    from actors.crashes import CRASH_AT_STEP_VAR
    from agents.model import ModelConfig
    from envs import EnvConfig
    from launch.config import TrainConfig

    monkeypatch.setenv(CRASH_AT_STEP_VAR, "15")
    cfg = TrainConfig()
    cfg.env = EnvConfig(env="counting:1000")
    cfg.model = ModelConfig(core="ff", encoder="mlp", hidden_size=16, feature_size=16)
    cfg.actor.num_actors, cfg.actor.envs_per_actor, cfg.actor.unroll_length = 2, 2, 10
    cfg.actor.batch_size = 2
    src = local_source(cfg)
    src.start()
    try:
        after, t0 = 0, time.time()
        while time.time() - t0 < 120 and not (src.restarts >= 1 and after >= 4):
            if src.get_batch(2, timeout=0.2) is not None and src.restarts >= 1:
                after += 1
        crashed, other = src.pool.slots
        assert src.restarts == 1 and after >= 4, (src.restarts, after)
        assert crashed.incarnation == 1 and "injected env failure at step 15" in crashed.last_error
        assert other.incarnation == 0
    finally:
        src.stop()


def test_injected_crash_step_is_read_from_the_environment(monkeypatch):
    from actors.crashes import CRASH_AT_STEP_VAR, injected_crash_step
    monkeypatch.delenv(CRASH_AT_STEP_VAR, raising=False)
    assert injected_crash_step(0, 0) == 0
    monkeypatch.setenv(CRASH_AT_STEP_VAR, "7")
    assert [injected_crash_step(a, i) for a, i in ((0, 0), (0, 1), (1, 0))] == [7, 0, 0]
    for bad in ("-1", "x", "1.5"):
        monkeypatch.setenv(CRASH_AT_STEP_VAR, bad)
        with pytest.raises(ValueError, match=f"{CRASH_AT_STEP_VAR} must be a non-negative integer"):
            injected_crash_step(0, 0)


def test_crash_loop_stops_the_run_naming_the_actor(tmp_path):
    from actors.config import ActorConfig
    from actors.pool import ActorCrashLoop, LocalActorPool

    class FakeProc:
        def is_alive(self):
            return False

        def kill(self):
            pass

        def join(self, timeout=None):
            pass

    from actors.crashes import CrashWindow
    from actors.pool import _ActorSlot

    pool = LocalActorPool.__new__(LocalActorPool)
    pool.actor, pool.crashes, pool.inference_server, pool.restarts = ActorConfig(), CrashWindow(2), None, 0
    pool.slots = [_ActorSlot(0), _ActorSlot(1)]
    spawned = []
    pool._spawn = lambda slot: spawned.append(slot.index)
    pool._restart(pool.slots[1], "boom 1")
    pool._restart(pool.slots[1], "boom 2")
    with pytest.raises(ActorCrashLoop, match="actor 1: boom 3"):
        pool._restart(pool.slots[1], "boom 3")
    assert spawned == [1, 1]


def test_crash_window_forgets_crashes_older_than_a_minute():
    from actors.crashes import ActorCrashLoop, CrashWindow
    now = [0.0]
    w = CrashWindow(2, clock=lambda: now[0])
    w.record(0, "a")
    w.record(1, "b")
    now[0] = 61.0
    w.record(0, "c")                      # the first two are more than a minute old
    assert len(w) == 1
    w.record(0, "d")
    with pytest.raises(ActorCrashLoop, match="3 actor crashes.*actor 1: e"):
        w.record(1, "e")


def test_a_group_written_twice_stops_the_run_instead_of_restarting_the_actor():
    """An invariant violation is a bug: the pool fails loudly, it does not restart the actor."""
    import multiprocessing
    from actors.crashes import CrashWindow
    from actors.config import ActorConfig
    from actors.pool import ActorProtocolError, LocalActorPool, _ActorSlot

    pool = LocalActorPool.__new__(LocalActorPool)
    pool.actor, pool.crashes, pool.inference_server, pool.restarts = ActorConfig(), CrashWindow(10), None, 0
    pool.heartbeats = torch.full((1,), time.time(), dtype=torch.float64)
    ours, theirs = multiprocessing.Pipe(duplex=True)
    pool.slots = [_ActorSlot(0, process=None, conn=ours)]
    pool.held = set()
    restarted = []
    pool._restart = lambda slot, reason: restarted.append(reason)
    theirs.send(("full", 3, [], {}))
    assert [e.group for e in pool.poll(1.0)] == [3]
    theirs.send(("full", 3, [], {}))                  # the learner still holds group 3
    with pytest.raises(ActorProtocolError, match="actor 0 wrote group 3 twice"):
        pool.poll(1.0)
    assert restarted == []


@pytest.mark.timeout(300)
def test_kill_9_of_an_actor_discards_its_partial_unroll(tmp_path):
    """Every unroll the learner receives is whole: no torn unroll from a killed actor."""
    from agents.model import ModelConfig
    from envs import EnvConfig
    from launch.config import TrainConfig

    cfg = TrainConfig()
    cfg.env = EnvConfig(env="counting:1000")
    cfg.model = ModelConfig(core="lstm", hidden_size=16, feature_size=16,
                            num_heads=2, head_size=8, d_ff=32)
    cfg.actor.num_actors, cfg.actor.envs_per_actor, cfg.actor.unroll_length = 2, 2, 40
    cfg.actor.batch_size = 2
    src = local_source(cfg)
    src.start()
    try:
        batches = []
        killed = False
        t0 = time.time()
        while len(batches) < 24 and time.time() - t0 < 120:
            got = src.get_batch(2, timeout=0.2)
            if got is not None:
                batches.append(got[0])
            if len(batches) == 3 and not killed:
                victim = src.pool.slots[0].process
                os.kill(victim.pid, signal.SIGKILL)
                killed = True
        assert killed and len(batches) >= 24, len(batches)
        assert src.restarts >= 1
        from envs.counting_env import counting_reward
        for b in batches:
            obs, done = b["obs"], b["done"]                 # [T+1, B, 3]: [step, slot, episode]
            step, slot = obs[..., 0], obs[..., 1]
            cont = ~done[1:]
            # every entry follows its predecessor: the step counts up by one within an episode,
            # a new episode starts at step 0, and the slot never changes inside a row
            assert torch.equal(step[1:][cont], step[:-1][cont] + 1), "a torn unroll reached the learner"
            assert (step[1:][done[1:]] == 0).all()
            assert (slot == slot[0:1]).all()
            want = torch.from_numpy(counting_reward(step[:-1].numpy(), b["action"][:-1].numpy()))
            assert torch.equal(b["reward"][1:], want), "rewards do not belong to the recorded actions"
    finally:
        src.stop()
    assert not any(src.pool.alive())


# -- signals and a killed trainer --------------------------------------------------------

@pytest.mark.timeout(300)
def test_sigterm_writes_checkpoint_and_joins_children(tmp_path):
    shm_before = dev_shm_names()
    p = start_train(tmp_path, ["--name", "term", "--total-steps", str(10**9)])
    run_dir = tmp_path / "term"
    wait_for(lambda: logged_rows(run_dir) >= 3, 120, "training to log")
    kids = children_of(p.pid)
    assert len([k for k in kids if "python" in (k.name() or "")]) >= 2
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert time.time() - t0 < 30, "shutdown took longer than 30 s"
    assert p.returncode == 0, err[-2000:]
    assert list((run_dir / "checkpoints").glob("ckpt-*.pt")), "no final checkpoint"
    assert "stopped by SIGTERM" in (run_dir / "summary.json").read_text()
    assert_gone(kids)
    assert dev_shm_names() <= shm_before | set(), "shared-memory segments left behind"


@pytest.mark.timeout(300)
def test_double_sigint_exits_at_once(tmp_path):
    p = start_train(tmp_path, ["--name", "int2", "--total-steps", str(10**9)])
    run_dir = tmp_path / "int2"
    wait_for(lambda: logged_rows(run_dir) >= 2, 120, "training to log")
    kids = children_of(p.pid)
    p.send_signal(signal.SIGINT)
    time.sleep(0.05)
    t0 = time.time()
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=30)
    assert time.time() - t0 < 10
    assert p.returncode == 130
    assert_gone(kids)


def test_hard_exit_kills_every_actor_even_when_one_is_already_gone():
    from launch.trainer import Trainer
    gone = subprocess.Popen(["sleep", "60"])
    gone.kill()
    gone.wait()                                     # its pid is free: os.kill raises ProcessLookupError
    alive = subprocess.Popen(["sleep", "60"])
    try:
        trainer = Trainer.__new__(Trainer)
        trainer.source = type("Source", (), {"pids": lambda self: [gone.pid, alive.pid]})()
        trainer._hard_exit()
        assert alive.wait(timeout=10) == -signal.SIGKILL
    finally:
        if alive.poll() is None:
            alive.kill()
            alive.wait()


@pytest.mark.timeout(300)
def test_kill_9_of_trainer_leaves_nothing_and_resume_works(tmp_path):
    shm_before = dev_shm_names()
    p = start_train(tmp_path, ["--name", "k9", "--total-steps", str(10**9), "--checkpoint-interval-s", "0.5"])
    run_dir = tmp_path / "k9"
    wait_for(lambda: len(list((run_dir / "checkpoints").glob("ckpt-*.pt"))) >= 1 and logged_rows(run_dir) >= 3,
             120, "a checkpoint")
    kids = children_of(p.pid)
    p.kill()
    p.communicate(timeout=30)
    assert_gone(kids)
    assert dev_shm_names() <= shm_before, "shared-memory segments left behind"
    ck = torch.load(sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True)
    steps = ck["learner"]["counters"]["steps"]
    q = subprocess.run([sys.executable, "-m", "launch.train", "--runs-dir", str(tmp_path), "--name", "k9",
                        "--resume", "--total-steps", str(steps + 400)], cwd=ROOT, capture_output=True,
                       text=True, timeout=240)
    assert q.returncode == 0, q.stderr[-3000:]
    import json
    assert json.loads((run_dir / "summary.json").read_text())["steps"] >= steps + 400


# -- checkpoints ---------------------------------------------------------------------------

def _tiny_learner(seed=0):
    from agents.model import ModelConfig, build_agent
    from envs.base import ObsSpec
    from learner.learner import Learner, LearnerConfig
    torch.manual_seed(seed)
    agent = build_agent(ModelConfig(core="srwm", hidden_size=16, num_heads=2, head_size=8, d_ff=32,
                                    feature_size=16), ObsSpec((6,), "float32"), 3, 1)
    return Learner(LearnerConfig(), agent, total_steps=10_000, steps_per_update=5 * 4)


def _batches(n, seed=123):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        T1, B = 6, 4
        out.append(({"obs": torch.randn(T1, B, 6, generator=g),
                     "reward": torch.randn(T1, B, generator=g),
                     "done": torch.rand(T1, B, generator=g) < 0.2,
                     "task": torch.zeros(T1, B, dtype=torch.int64),
                     "action": torch.randint(0, 3, (T1, B), generator=g),
                     "policy_logits": torch.randn(T1, B, 3, generator=g),
                     "baseline": torch.randn(T1, B, generator=g)},
                    {}))
    return out


def _with_state(learner, batch):
    b, _ = batch
    return b, learner.agent.initial_state(b["reward"].shape[1])


def test_resume_is_bit_identical(tmp_path):
    from learner.checkpoint import load_latest, save_checkpoint
    batches = _batches(6)
    import random
    import numpy as np
    a = _tiny_learner()
    for bt in batches:
        a.step(*_with_state(a, bt))
    rng_a = (torch.get_rng_state(), np.random.get_state(), random.getstate())   # after the 6 steps
    b = _tiny_learner()
    for bt in batches[:3]:
        b.step(*_with_state(b, bt))
    save_checkpoint(tmp_path, {"learner": b.state_dict()}, b.updates)
    c = _tiny_learner(seed=5)
    torch.manual_seed(999)   # disturb the RNGs: the checkpoint must restore them
    np.random.seed(999)
    random.seed(999)
    payload, _ = load_latest(tmp_path)
    c.load_state_dict(payload["learner"])
    for bt in batches[3:]:
        c.step(*_with_state(c, bt))
    for (n, pa), (_, pc) in zip(a.agent.state_dict().items(), c.agent.state_dict().items()):
        assert torch.equal(pa, pc), n
    assert a.steps == c.steps and a.updates == c.updates
    # the RNGs were restored to b's and then advanced exactly as a's were
    assert torch.equal(torch.get_rng_state(), rng_a[0])
    np_c = np.random.get_state()
    assert np_c[0] == rng_a[1][0] and np.array_equal(np_c[1], rng_a[1][1]) and np_c[2:] == rng_a[1][2:]
    assert random.getstate() == rng_a[2]
    sa, sc = a.optimizer.state_dict()["state"], c.optimizer.state_dict()["state"]
    for k in sa:
        for key in sa[k]:
            assert torch.equal(torch.as_tensor(sa[k][key]), torch.as_tensor(sc[k][key]))
    assert a.scheduler.get_last_lr() == c.scheduler.get_last_lr()


def test_truncated_latest_checkpoint_falls_back(tmp_path, caplog):
    from learner.checkpoint import list_checkpoints, load_latest, save_checkpoint
    l = _tiny_learner()
    save_checkpoint(tmp_path, {"learner": l.state_dict(), "marker": 1}, 1)
    save_checkpoint(tmp_path, {"learner": l.state_dict(), "marker": 2}, 2)
    files = list_checkpoints(tmp_path)
    data = files[-1].read_bytes()
    files[-1].write_bytes(data[: len(data) // 3])
    (files[-1].parent / ".ckpt-stray.tmp").write_bytes(b"partial")
    with caplog.at_level("WARNING"):
        payload, path = load_latest(tmp_path)
    assert payload["marker"] == 1 and path == files[0]
    assert "falling back" in caplog.text and "stray" in caplog.text


def test_all_checkpoints_corrupt_is_an_error_not_a_fresh_start(tmp_path):
    from learner.checkpoint import CheckpointError, checkpoint_dir, load_latest
    d = checkpoint_dir(tmp_path)
    d.mkdir(parents=True)
    (d / "ckpt-000000001.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        load_latest(tmp_path)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_malicious_checkpoint_is_refused_without_side_effects(tmp_path):
    from learner.checkpoint import CheckpointError, load_checkpoint_file
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    torch.save({"format": "fwrl-checkpoint-v1", "x": _Evil(marker)}, bad)
    with pytest.raises(CheckpointError, match="refused|unreadable"):
        load_checkpoint_file(bad)
    assert not marker.exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint_file(raw)
    assert not marker.exists()


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    from learner.checkpoint import list_checkpoints, save_checkpoint
    save_checkpoint(tmp_path, {"marker": 1}, 1)

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, {"marker": 2}, 2)
    files = list_checkpoints(tmp_path)
    assert [f.name for f in files] == ["ckpt-000000001.pt"]
    assert not list(files[0].parent.glob(".ckpt-*.tmp"))


# -- non-finite values ---------------------------------------------------------------------

def test_nan_loss_skips_update_then_stops(tmp_path):
    from learner.learner import NonFiniteError
    l = _tiny_learner()
    l.cfg.max_nonfinite_in_row = 3
    batches = _batches(6)
    l.step(*_with_state(l, batches[0]))
    good = {k: v.clone() for k, v in l.agent.state_dict().items()}
    nan = lambda loss: loss * float("nan")   # noqa: E731
    for i in range(2):
        s = l.step(*_with_state(l, batches[1 + i]), loss_hook=nan)
        assert s["update_ok"] == 0.0 and s["skipped_updates"] == i + 1
    for k, v in l.agent.state_dict().items():
        assert torch.equal(v, good[k]), f"{k} changed by a skipped update"
    l.step(*_with_state(l, batches[3]))                  # a good step resets the count
    assert l.nonfinite_in_row == 0 and l.updates == 2
    inf = lambda loss: loss + float("inf")   # noqa: E731
    with pytest.raises(NonFiniteError, match="3 non-finite"):
        for bt in batches[3:]:
            l.step(*_with_state(l, bt), loss_hook=inf)
    assert l.skipped_updates == 5


# == never lose a run: locks, rotation, non-finite weights, validation, one-line failures ==

def run_cmd(tmp_path, args, timeout=240, prefix=(), **env):
    return subprocess.run([*prefix, sys.executable, "-m", "launch.train", "--runs-dir", str(tmp_path), *BASE,
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONUNBUFFERED="1", **env))


def assert_one_line_failure(stderr, *needles):
    """No traceback; the last line is the only ``error:`` line and names the cause."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines[-10:]
    for n in needles:
        assert n.lower() in errors[0].lower(), (n, errors[0])
    return errors[0]


def checkpoint_files(run_dir):
    return sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))


def assert_checkpoints_loadable_and_finite(run_dir):
    from learner.checkpoint import load_checkpoint_file
    for f in checkpoint_files(run_dir):
        payload = load_checkpoint_file(f)
        for name, v in payload["learner"]["model"].items():
            assert torch.isfinite(v).all(), f"{f.name}: {name} is not finite"


def log_steps(path):
    import csv
    with open(path, newline="") as f:
        return [int(float(r["step"])) for r in csv.DictReader(f)]


# -- 1. two trainers on one run directory -----------------------------------------------------

@pytest.mark.timeout(400)
def test_second_trainer_on_a_running_run_exits_2_naming_the_holder(tmp_path):
    p = start_train(tmp_path, ["--name", "busy", "--total-steps", str(10**9), "--checkpoint-interval-s", "0.5"])
    run_dir = tmp_path / "busy"
    try:
        wait_for(lambda: checkpoint_files(run_dir) and logged_rows(run_dir) >= 2, 120, "a checkpoint")
        config_before = (run_dir / "config.json").read_bytes()
        for extra in (["--resume"], []):
            q = run_cmd(tmp_path, ["--name", "busy", "--total-steps", "999", *extra], timeout=120)
            assert q.returncode == 2, (extra, q.returncode, q.stderr[-2000:])
            assert_one_line_failure(q.stderr, "in use", f"pid {p.pid}")
        assert (run_dir / "config.json").read_bytes() == config_before
        n = len(checkpoint_files(run_dir))
        wait_for(lambda: logged_rows(run_dir) >= 4, 120, "more training")
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-2000:]
    import json
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "stopped by SIGTERM"
    assert n >= 1 and checkpoint_files(run_dir)
    assert_checkpoints_loadable_and_finite(run_dir)
    steps = log_steps(run_dir / "logs.csv")
    assert steps == sorted(steps), "two step sequences interleaved in logs.csv"


def test_fresh_start_into_a_locked_empty_run_directory_exits_2(tmp_path, capsys):
    """The lock makes creation atomic: a fresh start that finds the directory locked (another
    fresh start has created it, not yet written anything) is refused, naming the holder."""
    from launch.train import main
    from learner.run_lock import RunLock
    with RunLock(tmp_path / "race"):
        code = main(["--runs-dir", str(tmp_path), "--name", "race", "--env", "memory"])
        assert code == 2
        assert_one_line_failure(capsys.readouterr().err, "in use", f"pid {os.getpid()}")
    assert [p.name for p in (tmp_path / "race").iterdir()] == [".lock"]


def test_run_lock_is_released_by_kill_9(tmp_path):
    from learner.run_lock import RunLock, RunLockedError, held_by
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
                               "from learner.run_lock import RunLock; RunLock(sys.argv[2]).acquire();"
                               "print('locked', flush=True); time.sleep(600)", str(ROOT), str(tmp_path / "r")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert held_by(tmp_path / "r") == str(holder.pid)
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            RunLock(tmp_path / "r").acquire()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert held_by(tmp_path / "r") is None
    RunLock(tmp_path / "r").acquire().release()


# -- 2. rotation after a fallback resume --------------------------------------------------------

def test_rotation_never_counts_or_keeps_a_corrupt_newest_checkpoint(tmp_path, caplog):
    from learner.checkpoint import list_checkpoints, load_latest, save_checkpoint
    save_checkpoint(tmp_path, {"marker": 1}, 1, keep=3)
    save_checkpoint(tmp_path, {"marker": 2}, 2, keep=3)
    d = tmp_path / "checkpoints"
    (d / "ckpt-000000005.pt").write_bytes(b"torn")      # a newer, torn file
    with caplog.at_level("WARNING"):
        save_checkpoint(tmp_path, {"marker": 3}, 3, keep=1)
    assert [f.name for f in list_checkpoints(tmp_path)] == ["ckpt-000000003.pt"]
    assert (d / "ckpt-000000005.pt.corrupt").read_bytes() == b"torn"
    assert "ckpt-000000005.pt.corrupt" in caplog.text
    assert load_latest(tmp_path)[0]["marker"] == 3


@pytest.mark.timeout(600)
def test_fallback_resume_with_keep_1_keeps_a_good_checkpoint_and_rewinds_the_logs(tmp_path):
    run_dir = tmp_path / "fb"
    for args in (["--total-steps", "800"], ["--resume", "--total-steps", "1600"]):
        q = run_cmd(tmp_path, ["--name", "fb", *args])
        assert q.returncode == 0, q.stderr[-3000:]
    files = checkpoint_files(run_dir)
    assert [f.name for f in files] == ["ckpt-000000020.pt", "ckpt-000000040.pt"]
    files[-1].write_bytes(files[-1].read_bytes()[:5000])             # the newest one is torn
    assert max(log_steps(run_dir / "logs.csv")) >= 1600
    # falls back to step 800; new checkpoints are numbered below the torn one
    q = run_cmd(tmp_path, ["--name", "fb", "--resume", "--keep-checkpoints", "1", "--total-steps", "1200"])
    assert q.returncode == 0, q.stderr[-3000:]
    assert [f.name for f in checkpoint_files(run_dir)] == ["ckpt-000000030.pt"]
    assert (run_dir / "checkpoints" / "ckpt-000000040.pt.corrupt").exists()
    steps = log_steps(run_dir / "logs.csv")
    assert steps == sorted(steps) and max(steps) >= 1200, "logs.csv not cut back to the resumed step"
    aside = log_steps(run_dir / "logs-after-800.csv")
    assert aside and min(aside) > 800 and max(aside) >= 1600        # moved aside, not lost
    # and again: the newest loadable checkpoint survived
    q = run_cmd(tmp_path, ["--name", "fb", "--resume", "--keep-checkpoints", "1", "--total-steps", "1400"])
    assert q.returncode == 0, q.stderr[-3000:]
    assert [f.name for f in checkpoint_files(run_dir)] == ["ckpt-000000035.pt"]
    assert_checkpoints_loadable_and_finite(run_dir)


# -- 3. non-finite weights ------------------------------------------------------------------------

@pytest.mark.timeout(600)
def test_huge_learning_rate_stops_without_a_non_finite_checkpoint(tmp_path):
    run_dir = tmp_path / "lr"
    q = run_cmd(tmp_path, ["--name", "lr", "--total-steps", "800"])
    assert q.returncode == 0, q.stderr[-3000:]
    good = checkpoint_files(run_dir)
    assert good
    q = run_cmd(tmp_path, ["--name", "lr", "--resume", "--learning-rate", "1e30", "--max-nonfinite-in-row", "3",
                           "--checkpoint-interval-s", "0.2", "--total-steps", "8000"])
    assert q.returncode == 1, (q.returncode, q.stderr[-3000:])
    assert_one_line_failure(q.stderr, "3 non-finite updates in a row")
    import json
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"].startswith("stopped") and summary["skipped_updates"] >= 3
    assert good[0].exists()
    assert_checkpoints_loadable_and_finite(run_dir)
    from learner.checkpoint import load_latest
    payload, _ = load_latest(run_dir)
    assert payload["learner"]["counters"]["steps"] >= 800


def test_a_step_that_makes_parameters_non_finite_is_undone(tmp_path):
    from learner.learner import NonFiniteError
    l = _tiny_learner()
    l.cfg.max_nonfinite_in_row = 2
    batches = _batches(3)
    l.step(*_with_state(l, batches[0]))                               # a good step: optimiser state exists
    params = {k: v.clone() for k, v in l.agent.state_dict().items()}
    opt = {k: {n: t.clone() for n, t in st.items()} for k, st in l.optimizer.state_dict()["state"].items()}
    for group in l.optimizer.param_groups:
        group["lr"] = 1e38                                            # finite gradients, an infinite step
    s = l.step(*_with_state(l, batches[1]))
    assert s["update_ok"] == 0.0 and l.skipped_updates == 1 and l.updates == 1
    for k, v in l.agent.state_dict().items():
        assert torch.equal(v, params[k]), f"{k} not restored"
    after = l.optimizer.state_dict()["state"]
    for k, st in opt.items():
        for n, t in st.items():
            assert torch.equal(torch.as_tensor(after[k][n]), torch.as_tensor(t)), (k, n)
    assert l.parameters_finite()
    with pytest.raises(NonFiniteError, match="2 non-finite updates in a row.*parameters"):
        l.step(*_with_state(l, batches[2]))
    sd = l.state_dict()
    assert all(torch.isfinite(v).all() for v in sd["model"].values())


def test_first_step_undone_leaves_no_optimiser_state():
    l = _tiny_learner()
    for group in l.optimizer.param_groups:
        group["lr"] = 1e38
    before = {k: v.clone() for k, v in l.agent.state_dict().items()}
    s = l.step(*_with_state(l, _batches(1)[0]))
    assert s["update_ok"] == 0.0 and not l.optimizer.state_dict()["state"]
    assert all(torch.equal(v, before[k]) for k, v in l.agent.state_dict().items())


def test_actor_with_non_finite_weights_acts_uniformly_instead_of_crashing():
    l = _tiny_learner()
    with torch.no_grad():
        l.agent.policy.weight.fill_(float("nan"))
    b, st = _with_state(l, _batches(1)[0])
    out, _ = l.agent({k: b[k][:1] for k in ("obs", "reward", "done", "task")}, st, actions="sample")
    assert out["action"].shape == (1, 4) and ((out["action"] >= 0) & (out["action"] < 3)).all()


# -- 4. nan and inf in every float option ------------------------------------------------------------

def _float_options():
    import dataclasses
    import typing
    from launch.config import SECTIONS, TrainConfig, _base_type
    cfg = TrainConfig()
    out = []
    for section in SECTIONS:
        obj = getattr(cfg, section)
        hints = typing.get_type_hints(type(obj))
        out += ["--" + f.name.replace("_", "-") for f in dataclasses.fields(obj)
                if _base_type(hints[f.name]) is float]
    return out


FLOAT_OPTIONS = _float_options()


def test_the_float_options_are_all_covered():
    for flag in ("--learning-rate", "--heartbeat-timeout-s", "--checkpoint-interval-s", "--log-interval-s",
                 "--inference-timeout-ms", "--ray-cpus-per-actor", "--rmsprop-eps", "--entropy-cost",
                 "--baseline-cost", "--clip-rho-threshold", "--clip-pg-rho-threshold", "--grad-norm-clip",
                 "--reward-clip", "--dropout", "--sticky-action-prob", "--discount"):
        assert flag in FLOAT_OPTIONS, flag


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("flag", FLOAT_OPTIONS)
def test_nan_and_inf_are_refused_for_every_float_option(tmp_path, flag, value):
    from launch.train import UsageError, prepare
    try:
        got = prepare(["--runs-dir", str(tmp_path), "--name", "f", "--env", "memory", "--core", "lstm",
                       *SMALL, f"{flag}={value}"])
    except UsageError as e:
        msg = str(e)
        assert "\n" not in msg and flag in msg and value in msg, msg
    else:
        got[-1].release() if hasattr(got[-1], "release") else None
        pytest.fail(f"{flag} {value} was accepted")
    assert not (tmp_path / "f").exists()


# -- 5. one line, exit code and summary.json for every failure ------------------------------------------

@pytest.mark.timeout(300)
def test_actor_crash_loop_ends_in_one_line_and_a_summary(tmp_path):
    run_dir = tmp_path / "loop"
    q = run_cmd(tmp_path, ["--name", "loop", "--total-steps", str(10**9), "--max-crashes-per-minute", "0"],
                FWRL_DEBUG_CRASH_AT_STEP="3")
    assert q.returncode == 1, (q.returncode, q.stderr[-3000:])
    assert_one_line_failure(q.stderr, "crashes within a minute", "actor 0", "injected env failure")
    import json
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"].startswith("failed") and "crashes within a minute" in summary["error"]
    ckpts = checkpoint_files(run_dir)
    assert "ckpt-000000000.pt" not in [f.name for f in ckpts], "an untrained checkpoint was written"
    if summary["updates"] == 0:
        assert not ckpts
    assert_checkpoints_loadable_and_finite(run_dir)


def _flaky_torch_save(real_save, good):
    """torch.save that works ``good`` times, then fails like PyTorch's writer on a full disk:
    some bytes reach the file, then a RuntimeError."""
    calls = {"n": 0}

    def save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] <= good:
            return real_save(obj, f, *a, **k)
        f.write(b"PK\x03\x04" + b"\0" * 4096)
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 1133440 vs 1133392")
    return save


@pytest.mark.timeout(300)
def test_disk_full_during_a_checkpoint_fault_injected(tmp_path, monkeypatch, capsys):
    import json
    import learner.checkpoint as ck
    from launch.train import main
    monkeypatch.setattr(ck.torch, "save", _flaky_torch_save(torch.save, good=1))
    code = main(["--runs-dir", str(tmp_path), *BASE, "--name", "full", "--total-steps", str(10**9),
                 "--checkpoint-interval-s", "0.3"])
    err = capsys.readouterr().err
    assert code == 1
    line = assert_one_line_failure(err, "cannot write checkpoint", "unexpected pos")
    run_dir = tmp_path / "full"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"].startswith("failed") and summary["error"] in line
    files = checkpoint_files(run_dir)
    assert len(files) == 1 and summary["checkpoint"] == files[0].name
    assert_checkpoints_loadable_and_finite(run_dir)
    assert not list((run_dir / "checkpoints").glob(".ckpt-*.tmp")), "a temporary file was left behind"


def _can_mount_tmpfs():
    import shutil
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt || "
                               "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _in_tmpfs(mount_point, options):
    return ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o {options} tmpfs "$0" && exec "$@"',
            str(mount_point)]


@pytest.mark.timeout(300)
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare and tmpfs in a user namespace")
def test_disk_full_on_a_small_tmpfs(tmp_path):
    runs = tmp_path / "small"
    runs.mkdir()
    q = run_cmd(runs, ["--name", "full", "--total-steps", str(10**9), "--checkpoint-interval-s", "0.3",
                       "--keep-checkpoints", "0"], prefix=_in_tmpfs(runs, "size=400k"))
    # the tmpfs is gone with the namespace: everything below is checked from what the run printed
    assert q.returncode == 1, (q.returncode, q.stderr[-3000:])
    assert_one_line_failure(q.stderr, "No space left on device")
    assert "failed" in q.stdout


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare and tmpfs in a user namespace")
def test_read_only_runs_dir_is_one_line_exit_2(tmp_path):
    runs = tmp_path / "ro"
    runs.mkdir()
    q = run_cmd(runs, ["--name", "x", "--total-steps", "100"], prefix=_in_tmpfs(runs, "ro,size=64k"), timeout=120)
    assert q.returncode == 2, (q.returncode, q.stderr[-3000:])
    assert_one_line_failure(q.stderr, "cannot create the run directory", "read-only")


def test_runs_dir_that_is_a_file_and_a_too_long_name_are_one_line_exit_2(tmp_path, capsys):
    from launch.train import main
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["--runs-dir", str(f), "--name", "x", "--env", "memory"]) == 2
    assert_one_line_failure(capsys.readouterr().err, "cannot create the run directory", "afile")
    assert main(["--runs-dir", str(tmp_path), "--name", "n" * 300, "--env", "memory"]) == 2
    assert_one_line_failure(capsys.readouterr().err, "--name", "300 bytes")
    assert f.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# -- 6. smaller traps ------------------------------------------------------------------------------------

def test_random_bytes_checkpoint_never_suggests_the_unsafe_load(tmp_path):
    from learner.checkpoint import CheckpointError, load_checkpoint_file
    p = tmp_path / "ckpt-000000001.pt"
    p.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint_file(p)
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)


def test_readers_of_a_run_say_using_not_resuming_and_move_nothing(tmp_path, caplog):
    from learner.checkpoint import list_checkpoints, load_latest, save_checkpoint
    save_checkpoint(tmp_path, {"marker": 1}, 1)
    (tmp_path / "checkpoints" / "ckpt-000000002.pt").write_bytes(b"torn")
    with caplog.at_level("WARNING"):
        payload, path = load_latest(tmp_path)
    assert payload["marker"] == 1 and "resuming" not in caplog.text and "using ckpt-000000001.pt" in caplog.text
    assert len(list_checkpoints(tmp_path)) == 2


def test_resume_of_a_run_without_checkpoint_starts_it(tmp_path, caplog):
    """A run killed before its first checkpoint: config.json and some log rows, no checkpoint."""
    from launch.train import main
    run_dir = tmp_path / "early"
    run_dir.mkdir()
    from launch.config import TrainConfig, save_config
    save_config(TrainConfig(), run_dir / "config.json")
    (run_dir / "logs.csv").write_text("step,time\n40,1.0\n80,2.0\n")
    with caplog.at_level("WARNING"):
        code = main(["--runs-dir", str(tmp_path), "--name", "early", "--resume", *BASE, "--total-steps", "120"])
    assert code == 0
    assert "has no checkpoint yet" in caplog.text and "starting it from the beginning" in caplog.text
    import json
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert checkpoint_files(run_dir)
    assert log_steps(run_dir / "logs-after-0.csv") == [40, 80]
