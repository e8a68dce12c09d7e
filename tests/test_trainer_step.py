"""``Trainer.step``, the trainer's public update cycle, as the benchmark drives it.

``python -m launch.bench`` measures the actors and the end-to-end loop through
:class:`launch.trainer.Trainer` (no copy of the loop): a tiny run of both phases must
make updates, account their time and hand every buffer back.
"""

import json

import pytest
import torch


def tiny_config(*extra):
    from launch.config import parse_config
    return parse_config(["--env", "memory", "--core", "ff", "--encoder", "mlp", "--feature-size", "16",
                         "--hidden-size", "16", "--num-actors", "1", "--envs-per-actor", "2",
                         "--batch-size", "2", "--unroll-length", "4", "--device", "cpu",
                         "--learner-threads", "1", "--no-progress", *extra])


def tiny_trainer(cfg):
    """A Trainer (not started) of ``cfg`` with its agent built from the env's description."""
    from agents.model import build_agent
    from envs import describe_env
    from launch.trainer import Trainer

    obs_spec, num_actions, tasks = describe_env(cfg.env)
    agent = build_agent(cfg.model, obs_spec, num_actions, len(tasks))
    return Trainer(cfg, None, agent=agent, obs_spec=obs_spec, num_actions=num_actions, task_names=tasks)


def step_until_updates(trainer, n):
    """``Trainer.step`` until ``n`` updates were made (fails after about 5 minutes of none)."""
    made, tries = 0, 0
    while made < n:
        made += trainer.step()
        tries += 1
        assert tries < 6000, "no batch from the actor within about 5 minutes"


def test_step_makes_updates_and_accounts_for_them():
    cfg = tiny_config()
    trainer = tiny_trainer(cfg)
    before = {k: v.clone() for k, v in trainer.learner.agent.state_dict().items()}
    trainer.start()
    try:
        step_until_updates(trainer, 2)
        for _ in range(20):                                     # batches taken and dropped: no update
            assert trainer.step(learn=False) is False
    finally:
        trainer.stop()
    assert trainer.learner.updates == 2
    assert trainer.learner.steps == 2 * cfg.actor.unroll_length * cfg.actor.batch_size
    assert len(trainer.lags) == 2 and all(lag >= 0 for lag in trainer.lags)
    assert trainer.timing["time/learn"] > 0 and trainer.timing["time/wait_batch"] > 0
    assert set(trainer.last_stats) >= {"total_loss", "pg_loss", "baseline_loss"}
    after = trainer.learner.agent.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "the parameters did not change"


def test_bench_actor_and_end_to_end_phases_run_the_trainer(tmp_path, capsys):
    from launch.bench import main as bench_main
    out = tmp_path / "bench.json"
    rc = bench_main(["--env", "memory", "--cores", "ff", "--phases", "actors", "e2e", "--seconds", "0.5",
                     "--warmup", "0", "--encoder", "mlp", "--feature-size", "16", "--hidden-size", "16",
                     "--num-actors", "1", "--envs-per-actor", "2", "--batch-size", "2", "--unroll-length", "4",
                     "--json", str(out)])
    assert rc == 0
    run = json.loads(out.read_text())["runs"][0]
    assert run["actors"]["acted_steps"] > 0 and run["actors"]["actor_restarts"] == 0
    e2e = run["e2e"]
    assert e2e["updates"] >= 2 and e2e["e2e_sps"] > 0 and e2e["trained_steps"] == e2e["updates"] * 2 * 4
    assert e2e["time_learn_s"] > 0 and e2e["time_wait_batch_s"] >= 0
    assert "end to end" in capsys.readouterr().out


@pytest.mark.parametrize("inference,shared_memory", [("actor", True), ("learner", False)])
def test_parameters_go_to_shared_memory_only_when_actors_read_them(inference, shared_memory, monkeypatch):
    """``--inference actor``: the trainer publishes every update to shared memory, where the
    actors read it. ``--inference learner``: no actor reads shared-memory parameters, so
    none are made or written; the inference server gets every version instead."""
    from actors.params import SharedParams

    made, written = [], []
    real_init, real_publish = SharedParams.__init__, SharedParams.publish

    def counting_init(self, model):
        made.append(1)
        real_init(self, model)

    def counting_publish(self, model):
        written.append(1)
        return real_publish(self, model)

    monkeypatch.setattr(SharedParams, "__init__", counting_init)
    monkeypatch.setattr(SharedParams, "publish", counting_publish)
    cfg = tiny_config("--inference", inference)
    trainer = tiny_trainer(cfg)
    trainer.start()
    try:
        step_until_updates(trainer, 2)
    finally:
        trainer.stop()
    versions = 1 + 1 + 2                    # the initial set, the one start() publishes, two updates
    assert trainer.source.version == versions
    if shared_memory:
        assert made == [1] and len(written) == versions and trainer.source.params.version == versions
        assert trainer.inference_server is None
    else:
        assert made == [] and written == [] and trainer.source.params is None
        server = trainer.inference_server
        assert server.version == versions
        for p, q in zip(server.agent.parameters(), trainer.learner.agent.parameters()):
            assert torch.equal(p, q.detach())
