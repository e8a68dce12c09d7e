"""The Ray actor backend (``--backend ray``, actors/ray_backend/).

On a local Ray instance (the CI machine has 2 CPUs): batches assembled from several
unrolls equal the rows the actors wrote; parameters reach the object store every K
updates and load back exactly; training on the memory task reaches a return
comparable to the local backend's on the same budget; an actor killed with
``ray.kill`` is replaced and training finishes; a simulated multi-node cluster
(``ray.cluster_utils.Cluster``) gets actors on different nodes and trains; the CLI run
restarts a crashing actor, binds nothing beyond loopback, keeps token authentication
on, and leaves no Ray process behind.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ENV = "memory:2:2"          # cue of 2, answer 2 steps later: chance is 0.5, memory reaches 1
CHANCE = 0.5
SMALL = ["--core", "lstm", "--hidden-size", "32", "--feature-size", "32"]
BASE = ["--env", ENV, *SMALL, "--num-actors", "2", "--envs-per-actor", "8", "--batch-size", "16",
        "--unroll-length", "10", "--learning-rate", "2e-3", "--learner-threads", "1",
        "--log-interval-s", "1", "--no-progress"]


def make_cfg(tmp_path, name, *extra):
    from launch.config import parse_config, validate_config
    cfg = parse_config([*BASE, "--runs-dir", str(tmp_path), "--name", name, *extra])
    validate_config(cfg)
    return cfg


def run_trainer(cfg, tmp_path, loss_hook=None, seed=0):
    """One in-process training run (the real Trainer loop); returns (summary, trainer)."""
    from agents.model import build_agent
    from envs import describe_env
    from launch.trainer import Trainer
    torch.manual_seed(seed)
    np.random.seed(seed)
    obs_spec, num_actions, tasks = describe_env(cfg.env)
    agent = build_agent(cfg.model, obs_spec, num_actions, len(tasks))
    trainer = Trainer(cfg, tmp_path / cfg.run.name, agent=agent, obs_spec=obs_spec,
                      num_actions=num_actions, task_names=tasks, loss_hook=loss_hook)
    return trainer.run(), trainer


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def local_ray():
    """One loopback-only Ray instance shared by the tests that do not test start/stop."""
    import ray
    from actors.ray_backend import connect_ray
    torch.set_num_threads(1)
    owned = connect_ray("", num_cpus=2)
    yield ray
    if owned and ray.is_initialized():
        ray.shutdown()


# -- batch assembly (no Ray needed) ------------------------------------------------------

def _fake_unroll(T, N, A, state_dim, actor, k, version):
    g = torch.Generator().manual_seed(100 * actor + k)
    data = {"obs": torch.randn(T + 1, N, 3, generator=g).numpy(),
            "reward": torch.randn(T + 1, N, generator=g).numpy(),
            "done": (torch.rand(T + 1, N, generator=g) < 0.3).numpy(),
            "task": torch.randint(0, 2, (T + 1, N), generator=g).numpy(),
            "action": torch.randint(0, A, (T + 1, N), generator=g).numpy(),
            "policy_logits": torch.randn(T + 1, N, A, generator=g).numpy(),
            "baseline": torch.randn(T + 1, N, generator=g).numpy()}
    state = {"h": torch.randn(N, state_dim, generator=g).numpy(),
             "c": torch.randn(N, state_dim, generator=g).numpy()}
    return {"data": data, "state": state, "version": version, "episodes": [],
            "timing": {"env": 0.5, "steps": T * N}}


def test_batch_rows_come_from_several_unrolls_in_order():
    """B = 5 rows from unrolls of N = 3 envs: rows cross unroll boundaries; each column of
    the batch equals the row of the unroll it came from, with that unroll's version."""
    from agents.model import build_agent
    from envs import describe_env
    from actors.ray_backend import RayRolloutSource
    cfg = make_cfg(Path("/nonexistent"), "unit", "--backend", "ray", "--envs-per-actor", "3",
                   "--batch-size", "5", "--unroll-length", "4", "--num-buffers", "2")
    obs_spec, A, tasks = describe_env(cfg.env)
    agent = build_agent(cfg.model, obs_spec, A, len(tasks))
    src = RayRolloutSource(agent, env=cfg.env, model=cfg.model, actor=cfg.actor, ray_config=cfg.ray,
                           obs_shape=obs_spec.shape, obs_dtype=obs_spec.dtype, num_actions=A, num_tasks=len(tasks))
    T, N = 4, 3
    unrolls = [(a, k, _fake_unroll(T, N, A, 32, a, k, version=10 + 2 * k + a)) for k in range(2) for a in range(2)]
    for a, _, u in unrolls:
        src._accept(src.slots[a], u)
    assert src.take_scalars()["queue/full_rows"] == 12 and [s.held for s in src.slots] == [2, 2]
    expected_rows = [(u, r) for _, _, u in unrolls for r in range(N)]      # arrival order
    out = []
    for _ in range(2):
        batch, state, info = src.get_batch(5, timeout=0.0)
        out.append((batch, state, info))
    assert src.get_batch(5, timeout=0.0) is None                          # 2 rows left < B
    for j, (batch, state, info) in enumerate(out):
        assert batch["obs"].shape == (T + 1, 5, 3) and batch["done"].dtype == torch.bool
        assert state["h"].shape == (5, 32)
        for col in range(5):
            u, r = expected_rows[5 * j + col]
            for k in batch:
                np.testing.assert_array_equal(batch[k][:, col].numpy(), u["data"][k][:, r])
            for k in state:
                np.testing.assert_array_equal(state[k][col].numpy(), u["state"][k][r])
            assert int(info["policy_versions"][col]) == u["version"]
    # unrolls whose rows are all taken give their credit back; the last one is still held
    assert sum(s.held for s in src.slots) == 1
    assert src.drain_timing() == {"env": 2.0, "steps": 4.0 * T * N}


# -- parameters through the object store -------------------------------------------------

def test_parameters_broadcast_every_k_updates_and_load_exactly(local_ray, tmp_path):
    ray = local_ray
    from agents.model import build_agent
    from envs import describe_env
    from actors.ray_backend import ObjectStoreParams, RayRolloutSource, _RemoteParameterServer
    cfg = make_cfg(tmp_path, "params", "--backend", "ray", "--ray-broadcast-every", "3")
    obs_spec, A, tasks = describe_env(cfg.env)
    torch.manual_seed(1)
    agent = build_agent(cfg.model, obs_spec, A, len(tasks))
    src = RayRolloutSource(agent, env=cfg.env, model=cfg.model, actor=cfg.actor, ray_config=cfg.ray,
                           obs_shape=obs_spec.shape, obs_dtype=obs_spec.dtype, num_actions=A, num_tasks=len(tasks))
    src.param_server = _RemoteParameterServer.remote()      # what start() does, without actors
    src._broadcast(src._initial_params, src.version)
    seen = []
    for step in range(7):
        with torch.no_grad():
            for p in agent.parameters():
                p.add_(0.01 * (step + 1))
        v = src.publish(agent)
        seen.append((v, ray.get(src.param_server.get.remote(-1))[0]))
    # versions 2..8; a broadcast once 3 versions have passed since the last one (1 -> 4 -> 7)
    assert seen == [(2, 1), (3, 1), (4, 4), (5, 4), (6, 4), (7, 7), (8, 7)]
    # what version 7 carried is exactly the parameters after 6 of the 7 changes
    torch.manual_seed(2)
    fresh = build_agent(cfg.model, obs_spec, A, len(tasks))
    assert ObjectStoreParams(src.param_server).load_into(fresh) == 7
    with torch.no_grad():
        for p in agent.parameters():
            p.sub_(0.01 * 7)
    for (name, p), q in zip(agent.named_parameters(), fresh.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-6, msg=name)
    # nothing newer: the version held is kept without a copy
    assert ObjectStoreParams(src.param_server).load_into(fresh, last_version=7) == 7
    ray.kill(src.param_server)


# -- training --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_backend_return_comparable_to_local(local_ray, tmp_path):
    """Same config, same step budget: both backends learn the memory task (well above
    chance) and end within 0.2 of each other; the Ray run logs its policy lag."""
    budget = ["--total-steps", "12000"]
    local, _ = run_trainer(make_cfg(tmp_path, "local", *budget), tmp_path)
    remote, _ = run_trainer(make_cfg(tmp_path, "ray", *budget, "--backend", "ray"), tmp_path)
    for s in (local, remote):
        assert s["status"] == "finished" and s["steps"] >= 12000, s
    r_local, r_ray = local["return/mean"], remote["return/mean"]
    assert r_local > CHANCE + 0.25 and r_ray > CHANCE + 0.25, (r_local, r_ray)
    assert abs(r_ray - r_local) < 0.2, (r_local, r_ray)
    rows = read_csv(tmp_path / "ray" / "logs.csv")
    lags = [float(r["policy_lag"]) for r in rows if r.get("policy_lag")]
    # bounded by the credits: 2 actors x 2 unrolls in flight or held, ~1 update per unroll
    assert lags and all(0.0 <= x < 20 for x in lags), lags


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_actor_is_replaced_and_training_finishes(local_ray, tmp_path):
    ray = local_ray
    seen = {}

    def kill_actor_1(total):
        src = trainer_box["trainer"].source
        updates = trainer_box["trainer"].learner.updates
        if "killed" not in seen and updates >= 5:
            seen["killed"] = src.slots[1].handle
            seen["pid"] = src.slots[1].info["pid"]
            ray.kill(src.slots[1].handle)
        elif "killed" in seen and "replaced" not in seen and src.slots[1].incarnation == 1:
            seen["replaced"] = updates
        return total

    trainer_box = {}
    from agents.model import build_agent
    from envs import describe_env
    from launch.trainer import Trainer
    cfg = make_cfg(tmp_path, "kill", "--backend", "ray", "--total-steps", "8000")
    obs_spec, A, tasks = describe_env(cfg.env)
    torch.manual_seed(0)
    agent = build_agent(cfg.model, obs_spec, A, len(tasks))
    trainer = Trainer(cfg, tmp_path / "kill", agent=agent, obs_spec=obs_spec, num_actions=A,
                      task_names=tasks, loss_hook=kill_actor_1)
    trainer_box["trainer"] = trainer
    summary = trainer.run()
    assert summary["status"] == "finished" and summary["steps"] >= 8000, summary
    assert summary["actor_restarts"] == 1, summary
    assert "replaced" in seen, "the killed actor was not recreated during the run"
    assert not psutil.pid_exists(seen["pid"]) or psutil.Process(seen["pid"]).status() == psutil.STATUS_ZOMBIE
    rows = read_csv(tmp_path / "kill" / "logs.csv")
    assert max(float(r["actor_restarts"]) for r in rows if r.get("actor_restarts")) == 1.0
    assert any(r["ray/in_flight_unrolls"] for r in rows)          # the Ray source's column, in the CSV


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_multinode_cluster_places_actors_on_different_nodes_and_trains(tmp_path):
    """Two nodes of 2 CPUs (the head, where the learner runs, and a worker): SPREAD puts
    the two actors on different nodes (packing would fit both on one), the code reaches
    the worker as the job's working_dir, and training finishes."""
    import ray
    from ray.cluster_utils import Cluster
    from actors.ray_backend import keep_token_auth_on
    if ray.is_initialized():            # the module's local instance: a cluster needs its own
        ray.shutdown()
    keep_token_auth_on()
    ray_cli = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray_cli), "get-auth-token", "--generate"], check=True, capture_output=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        node_ids = {cluster.head_node.node_id, worker.node_id}
        nodes = {}

        def record_nodes(total):
            if not nodes:
                nodes["ids"] = trainer_box["trainer"].source.actor_nodes()
            return total

        trainer_box = {}
        from agents.model import build_agent
        from envs import describe_env
        from launch.trainer import Trainer
        cfg = make_cfg(tmp_path, "cluster", "--backend", "ray", "--ray-address", cluster.address,
                       "--total-steps", "3200")
        obs_spec, A, tasks = describe_env(cfg.env)
        agent = build_agent(cfg.model, obs_spec, A, len(tasks))
        trainer = Trainer(cfg, tmp_path / "cluster", agent=agent, obs_spec=obs_spec, num_actions=A,
                          task_names=tasks, loss_hook=record_nodes)
        trainer_box["trainer"] = trainer
        summary = trainer.run()
        assert summary["status"] == "finished" and summary["steps"] >= 3200, summary
        assert set(nodes["ids"]) == node_ids, (nodes, node_ids)
        assert not ray.is_initialized(), "the source must disconnect the driver it connected"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


# -- the command line: crash, loopback, token auth, clean shutdown ----------------------------

def _tagged_processes(tag):
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get("RAY_BACKEND_TEST_TAG") == tag:
                out.append(p)
        except (psutil.Error, OSError):
            pass
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cli_ray_run_restarts_crashed_actor_stops_on_sigterm_and_leaves_nothing_behind(tmp_path):
    """``launch.train --backend ray``: actor 0's env raises at step 30 (``FWRL_DEBUG_CRASH_AT_STEP``,
    read by the trainer, reaches the Ray actor through its spec) and the actor is
    recreated; SIGTERM then finishes the update, checkpoints and stops (Ray's own SIGTERM
    handler would abort); meanwhile every Ray process listens on loopback only with token
    authentication on; afterwards no process of the run is left."""
    tag = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(PYTHONUNBUFFERED="1", RAY_BACKEND_TEST_TAG=tag, FWRL_DEBUG_CRASH_AT_STEP="30")
    run_dir = tmp_path / "cli"
    cmd = [sys.executable, "-m", "launch.train", *BASE, "--backend", "ray", "--runs-dir", str(tmp_path),
           "--name", "cli", "--total-steps", "10000000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    listening, names, auth_modes = set(), set(), set()
    t0, signalled = time.time(), False
    try:
        while proc.poll() is None and time.time() - t0 < 240:
            for p in _tagged_processes(tag):
                try:
                    names.add(p.name())
                    if p.name() in ("raylet", "gcs_server"):
                        auth_modes.add(p.environ().get("RAY_AUTH_MODE"))
                    for c in p.net_connections(kind="inet"):
                        if c.status == psutil.CONN_LISTEN:
                            listening.add((p.name(), c.laddr.ip, c.laddr.port))
                except (psutil.Error, OSError):
                    pass
            rows = read_csv(run_dir / "logs.csv") if (run_dir / "logs.csv").exists() else []
            if not signalled and any(float(r["step"]) > 0 and float(r["actor_restarts"] or 0) >= 1 for r in rows):
                proc.send_signal(signal.SIGTERM)
                signalled = True
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read()
    assert signalled, "the run never logged a restart after training started:\n" + output[-4000:]
    assert proc.returncode == 0, output[-4000:]
    assert "injected env failure" in output, output[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "stopped by SIGTERM" and summary["actor_restarts"] == 1, summary
    assert list((run_dir / "checkpoints").glob("ckpt-*.pt")), "no checkpoint written on SIGTERM"
    assert {"raylet", "gcs_server"} <= names, f"the sampling missed the Ray processes: {names}"
    assert auth_modes == {"token"}, auth_modes
    public = [x for x in listening if x[1] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert listening and not public, f"Ray listens beyond loopback: {public}"
    deadline = time.time() + 20
    while time.time() < deadline and _tagged_processes(tag):
        time.sleep(0.5)
    left = [(p.pid, p.name()) for p in _tagged_processes(tag)]
    assert not left, f"Ray processes left behind: {left}"
