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
         "--lstm-hidden-size", "16", "--feature-size", "16"]
BASE = ["--env", "memory", "--core", "lstm", *SMALL, "--num-actors", "2", "--envs-per-actor", "2",
        "--batch-size", "4", "--unroll-length", "10", "--learner-threads", "1", "--no-progress",
        "--log-interval-s", "0.2"]


def dev_shm_names():
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


def start_train(tmp_path, args):
    return subprocess.Popen([sys.executable, "-m", "launch.train", "--runs-dir", str(tmp_path), *BASE, *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


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
    p = start_train(tmp_path, ["--name", "crash", "--total-steps", "1200", "--debug-crash-at-step", "15"])
    out, err = p.communicate(timeout=240)
    assert p.returncode == 0, err[-3000:]
    import json
    summary = json.loads((tmp_path / "crash" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["actor_restarts"] >= 1
    assert "injected env failure" in err
    rows = (tmp_path / "crash" / "logs.csv").read_text()
    assert "actor_restarts" in rows.splitlines()[0]


def test_crash_loop_stops_the_run_naming_the_actor(tmp_path):
    from launch.config import TrainConfig
    from actors.pool import ActorCrashLoop, LocalActorPool

    class FakeProc:
        def is_alive(self):
            return False

        def kill(self):
            pass

        def join(self, timeout=None):
            pass

    cfg = TrainConfig()
    cfg.actor.max_crashes_per_minute = 2
    pool = LocalActorPool.__new__(LocalActorPool)
    from collections import deque
    from actors.pool import _ActorSlot
    pool.config, pool.crash_times, pool.inference_server, pool.restarts = cfg, deque(), None, 0
    pool.slots = [_ActorSlot(0), _ActorSlot(1)]
    spawned = []
    pool._spawn = lambda slot: spawned.append(slot.index)
    pool._restart(pool.slots[1], "boom 1")
    pool._restart(pool.slots[1], "boom 2")
    with pytest.raises(ActorCrashLoop, match="actor 1: boom 3"):
        pool._restart(pool.slots[1], "boom 3")
    assert spawned == [1, 1]


@pytest.mark.timeout(300)
def test_kill_9_of_an_actor_discards_its_partial_unroll(tmp_path):
    """Every unroll the learner receives is whole: no torn unroll from a killed actor."""
    from actors.source import LocalRolloutSource
    from agents.model import ModelConfig, build_agent
    from envs import EnvConfig, describe_env
    from launch.config import TrainConfig

    cfg = TrainConfig()
    cfg.env = EnvConfig(env="counting:1000")
    cfg.model = ModelConfig(core="lstm", hidden_size=16, lstm_hidden_size=16, feature_size=16,
                            num_heads=2, head_size=8, d_ff=32)
    cfg.actor.num_actors, cfg.actor.envs_per_actor, cfg.actor.unroll_length = 2, 2, 40
    cfg.actor.batch_size = 2
    obs_spec, num_actions, tasks = describe_env(cfg.env)
    agent = build_agent(cfg.model, obs_spec, num_actions, len(tasks))
    src = LocalRolloutSource(cfg, agent, obs_shape=obs_spec.shape, obs_dtype=obs_spec.dtype,
                             num_actions=num_actions, num_tasks=len(tasks))
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
    from agents.model import ModelConfig  # noqa: F401
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
    a = _tiny_learner()
    for bt in batches:
        a.step(*_with_state(a, bt))
    b = _tiny_learner()
    for bt in batches[:3]:
        b.step(*_with_state(b, bt))
    save_checkpoint(tmp_path, {"learner": b.state_dict()}, b.updates)
    torch.manual_seed(999)   # disturb the RNGs: the checkpoint must restore them
    c = _tiny_learner(seed=5)
    payload, _ = load_latest(tmp_path)
    c.load_state_dict(payload["learner"])
    for bt in batches[3:]:
        c.step(*_with_state(c, bt))
    for (n, pa), (_, pc) in zip(a.agent.state_dict().items(), c.agent.state_dict().items()):
        assert torch.equal(pa, pc), n
    assert a.steps == c.steps and a.updates == c.updates
    assert torch.equal(torch.get_rng_state(), torch.get_rng_state())
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
