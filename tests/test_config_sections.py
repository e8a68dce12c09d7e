"""Each component gets only its own sections of the configuration, never the whole ``TrainConfig``.

``launch/trainer.py`` (the composition root) hands the actor pool, the rollout sources,
the inference server and every actor's :class:`~actors.actor.ActorSpec` the sections they
read (``env``, ``model``, ``actor``, ``ray``): these tests fail when a component is given
the run's whole configuration, or a section it has no use for, again.
"""

from __future__ import annotations

import dataclasses
import pickle
import typing

import pytest

SMALL = ["--env", "memory", "--core", "ff", "--encoder", "mlp", "--feature-size", "16", "--hidden-size", "16",
         "--num-actors", "2", "--envs-per-actor", "2", "--batch-size", "2", "--unroll-length", "4",
         "--device", "cpu", "--learner-threads", "1", "--no-progress"]


def whole_config_types():
    """The classes an actor-side component must not hold: the whole config and the sections
    that belong to the learner and the run."""
    from launch.config import RunConfig, TrainConfig
    from learner.learner import LearnerConfig
    return (TrainConfig, RunConfig, LearnerConfig)


def held_objects(obj, depth=2):
    """``obj``'s attributes, and theirs, ``depth`` levels down (dataclasses and plain objects)."""
    out, todo = [], [(obj, 0)]
    while todo:
        o, d = todo.pop()
        if d >= depth:
            continue
        attrs = vars(o) if hasattr(o, "__dict__") else {}
        for v in attrs.values():
            out.append(v)
            if hasattr(v, "__dict__") and not isinstance(v, type) and type(v).__module__.split(".")[0] in (
                    "actors", "launch", "learner", "envs", "agents"):
                todo.append((v, d + 1))
    return out


def test_actor_spec_fields_are_the_sections_an_actor_uses():
    from actors.actor import ActorSpec
    from actors.config import ActorConfig
    from agents.model import ModelConfig
    from envs import EnvConfig
    hints = typing.get_type_hints(ActorSpec)
    assert not any(h is object or h is typing.Any for h in hints.values()), hints
    sections = {name: h for name, h in hints.items() if dataclasses.is_dataclass(h)}
    assert sections == {"env": EnvConfig, "model": ModelConfig, "actor": ActorConfig}
    assert "config" not in hints


def _make_trainer(*extra):
    from agents.model import build_agent
    from envs import describe_env
    from launch.config import parse_config, validate_config
    from launch.trainer import Trainer
    cfg = parse_config([*SMALL, *extra])
    validate_config(cfg)
    obs_spec, num_actions, tasks = describe_env(cfg.env)
    agent = build_agent(cfg.model, obs_spec, num_actions, len(tasks))
    return cfg, Trainer(cfg, None, agent=agent, obs_spec=obs_spec, num_actions=num_actions, task_names=tasks)


@pytest.mark.parametrize("inference", ["actor", "learner"])
def test_local_source_pool_server_and_actor_specs_hold_only_their_sections(inference, monkeypatch):
    """The trainer builds the local source, its pool and (``--inference learner``) the server
    from the sections; the spec every actor process receives pickles without the whole config."""
    import actors.pool
    cfg, trainer = _make_trainer("--inference", inference)
    source = trainer.make_source()
    try:
        pool = source.pool
        assert (pool.env, pool.model, pool.actor) == (cfg.env, cfg.model, cfg.actor)
        parts = [source, pool] + ([trainer.inference_server] if trainer.inference_server is not None else [])
        for part in parts:
            bad = [o for o in held_objects(part) if isinstance(o, whole_config_types())]
            assert not bad, f"{type(part).__name__} holds {[type(o).__name__ for o in bad]}"
        # the spec of a real spawn, caught before a process starts
        specs = []

        class NoProcess:
            def __init__(self, target, name, args, daemon):
                specs.append(args[0])

            def start(self):
                pass

        monkeypatch.setattr(pool.ctx, "Process", NoProcess)
        pool._spawn(pool.slots[1])
        spec = specs[0]
        assert (spec.env, spec.model, spec.actor) == (cfg.env, cfg.model, cfg.actor)
        data = pickle.dumps(spec)
        for cls in whole_config_types():
            assert cls.__name__.encode() not in data, f"an ActorSpec pickles a {cls.__name__}"
        assert b"launch" not in data
        assert actors.pool.ActorSpec is type(spec)
    finally:
        pool.slots[1].process = None
        source.stop()


def test_ray_source_holds_only_its_sections():
    pytest.importorskip("ray")
    from actors.config import RayConfig
    cfg, trainer = _make_trainer("--backend", "ray", "--ray-broadcast-every", "3")
    source = trainer.make_source()            # built, not started: no Ray instance
    assert source.ray_config is cfg.ray and isinstance(source.ray_config, RayConfig)
    assert source.broadcast_every == 3
    bad = [o for o in held_objects(source) if isinstance(o, whole_config_types())]
    assert not bad, [type(o).__name__ for o in bad]


def test_component_signatures_name_their_sections():
    """The config parameters of each component's constructor, by type: only its sections."""
    from actors.config import ActorConfig, RayConfig
    from actors.inference import InferenceServer
    from actors.pool import LocalActorPool
    from actors.ray_backend import RayRolloutSource
    from actors.source import LocalRolloutSource
    from agents.model import ModelConfig
    from envs import EnvConfig
    want = {InferenceServer: {"actor": ActorConfig},
            LocalActorPool: {"env": EnvConfig, "model": ModelConfig, "actor": ActorConfig},
            LocalRolloutSource: {"env": EnvConfig, "model": ModelConfig, "actor": ActorConfig},
            RayRolloutSource: {"env": EnvConfig, "model": ModelConfig, "actor": ActorConfig,
                               "ray_config": RayConfig}}
    for cls, sections in want.items():
        hints = typing.get_type_hints(cls.__init__, localns={"InferenceServer": InferenceServer})
        got = {name: h for name, h in hints.items() if dataclasses.is_dataclass(h)}
        assert got == sections, (cls.__name__, got)
        assert "config" not in hints and "cfg" not in hints, cls.__name__


def test_the_inference_server_reads_the_actor_section():
    from actors.inference import InferenceServer
    cfg, trainer = _make_trainer("--inference", "learner", "--inference-max-batch", "3")
    server = InferenceServer(cfg.actor, trainer.learner.agent, device="cpu")
    assert (server.num_rows, server.max_batch) == (4, 3)
