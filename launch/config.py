"""The training configuration: one dataclass per component, composed into TrainConfig.

Sections: ``env`` (:class:`envs.EnvConfig`), ``model`` (:class:`agents.model.ModelConfig`),
``actor`` (:class:`actors.config.ActorConfig`), ``learner`` (:class:`learner.learner.LearnerConfig`),
``run`` (:class:`RunConfig`: the run directory, the loop, checkpoints, logging) and ``ray``
(:class:`actors.config.RayConfig`). Each component is handed only its own sections by the
composition root (:mod:`launch.trainer`), never the whole TrainConfig.

Every field becomes a command-line flag (``learning_rate`` -> ``--learning-rate``;
booleans get ``--flag/--no-flag``) whose help text is the field's ``help`` metadata,
grouped by component in ``--help``. Defaults are the SRWM paper's
(docs/design.md#procgen-multi-task). The whole config is saved as plain data in
``<run_dir>/config.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence

from actors.config import ActorConfig, RayConfig, validate_actor_config, validate_ray_config
from agents.model import ModelConfig, validate_model_config
from envs import EnvConfig, validate_env_config
from learner.checkpoint import model_config_from_dict, section_from_dict
from learner.device import check_device
from learner.learner import LearnerConfig, validate_learner_config


@dataclass
class RunConfig:
    name: str = field(default="", metadata={"help": "run name; the run directory is <runs-dir>/<name> "
                                                    "(default: <core>-<env>-<date>)"})
    runs_dir: str = field(default="runs", metadata={"help": "folder holding run directories"})
    total_steps: int = field(default=300_000_000, metadata={"help": "environment steps to train for"})
    device: str = field(default="auto", metadata={"help": "learner device: auto (cuda if available), cpu, cuda, cuda:N"})
    backend: str = field(default="local", metadata={"help": "actor backend: local (processes) or ray"})
    resume: bool = field(default=False, metadata={"help": "continue the run in the run directory from its newest "
                                                          "loadable checkpoint (a run that has none starts from "
                                                          "the beginning)"})
    checkpoint_interval_s: float = field(default=600.0, metadata={"help": "seconds between periodic checkpoints"})
    keep_checkpoints: int = field(default=3, metadata={"help": "how many loadable checkpoints to keep; one that "
                                                                "does not load is renamed *.corrupt (0 = all)"})
    log_interval_s: float = field(default=5.0, metadata={"help": "seconds between log rows (TensorBoard and CSV)"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar on the terminal"})
    eval_episodes: int = field(default=0, metadata={"help": "after training, evaluate this many episodes per task "
                                                             "on the test1 split (0 = skip)"})


@dataclass
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    run: RunConfig = field(default_factory=RunConfig)
    ray: RayConfig = field(default_factory=RayConfig)


SECTIONS = ("env", "model", "actor", "learner", "run", "ray")
SECTION_TYPES = {"env": EnvConfig, "model": ModelConfig, "actor": ActorConfig, "learner": LearnerConfig,
                 "run": RunConfig, "ray": RayConfig}
#: the ``--help`` group of each section
TITLES = {"env": "environment", "model": "model", "actor": "actors", "learner": "learner", "run": "run",
          "ray": "ray (--backend ray)"}


def validate_run_config(cfg: RunConfig) -> None:
    if cfg.total_steps < 1:
        raise ValueError(f"--total-steps must be positive, got {cfg.total_steps}")
    if cfg.backend not in ("local", "ray"):
        raise ValueError(f"--backend must be 'local' or 'ray', got {cfg.backend!r}")
    check_device(cfg.device)
    for name in ("checkpoint_interval_s", "log_interval_s"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    for name in ("keep_checkpoints", "eval_episodes"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    if cfg.name and ("/" in cfg.name or "\0" in cfg.name or cfg.name in (".", "..")):
        raise ValueError(f"--name must be a plain folder name, got {cfg.name!r}")
    if len(cfg.name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise ValueError(f"--name is {len(cfg.name.encode('utf-8', 'surrogateescape'))} bytes long; "
                         f"a folder name has at most {NAME_MAX}: {cfg.name[:40]!r}...")


NAME_MAX = 255     # bytes in one path component on Linux file systems


def check_finite_floats(section) -> None:
    """Every float option of a config section must be a finite number (no nan, no inf)."""
    hints = typing.get_type_hints(type(section))
    for f in fields(section):
        if _base_type(hints[f.name]) is float:
            v = getattr(section, f.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isfinite(v):
                raise ValueError(f"{_flag(f.name)} must be a finite number, got {v}")


def validate_config(cfg: TrainConfig) -> None:
    """Every check that needs no process, env or model: raises ValueError naming the option."""
    for section in SECTIONS:
        check_finite_floats(getattr(cfg, section))
    validate_run_config(cfg.run)
    if cfg.run.backend == "ray" and cfg.actor.inference == "learner":
        raise ValueError("--inference learner works with --backend local only (Ray actors act on their own copies)")
    validate_actor_config(cfg.actor)
    validate_ray_config(cfg.ray)
    validate_learner_config(cfg.learner)
    validate_model_config(cfg.model)
    validate_env_config(cfg.env)


# -- dataclass <-> argparse ----------------------------------------------------------

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp):
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls, section: str, title: str, *,
                            use_defaults: bool = True) -> None:
    """One option per field of ``cls`` (dest ``section.field``) in a group titled ``title``.
    ``use_defaults=False``: every option defaults to ``argparse.SUPPRESS`` (absent from the
    namespace unless given; :func:`given_options`)."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        tp = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if not use_defaults:
            default = argparse.SUPPRESS
        help_text = f.metadata.get("help", "")
        dest = f"{section}.{f.name}"
        if tp is bool:
            group.add_argument(_flag(f.name), dest=dest, action=argparse.BooleanOptionalAction,
                               default=default, help=help_text + " (default: %(default)s)")
        else:
            kwargs = {}
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            group.add_argument(_flag(f.name), dest=dest, type=tp, default=default, metavar=tp.__name__.upper(),
                               help=help_text + " (default: %(default)s)", **kwargs)


def build_parser(prog: str = "python -m launch.train", description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for section in SECTIONS:
        add_dataclass_arguments(parser, SECTION_TYPES[section], section, TITLES[section])
    return parser


def given_options(argv: Sequence[str]) -> set:
    """The dests (``"section.field"``) of the options given in ``argv``, whatever their values
    (``--resume`` lets exactly these override the saved config). The same options as
    :func:`build_parser`'s, defaulting to ``argparse.SUPPRESS``, so that only the given ones
    reach the namespace; arguments it does not know are ignored."""
    probe = argparse.ArgumentParser(add_help=False)
    for section in SECTIONS:
        add_dataclass_arguments(probe, SECTION_TYPES[section], section, TITLES[section], use_defaults=False)
    ns, _ = probe.parse_known_args(argv)
    return set(vars(ns))


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    parts: Dict[str, Dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in vars(ns).items():
        if "." in key:
            section, name = key.split(".", 1)
            parts[section][name] = value
    return TrainConfig(**{s: SECTION_TYPES[s](**parts[s]) for s in SECTIONS})


def parse_config(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    return config_from_args(build_parser().parse_args(argv))


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def upgrade_config_dict(d: dict) -> dict:
    """A saved config in today's layout (the one place old ``config.json`` files are upgraded;
    old model sections: :func:`learner.checkpoint.model_config_from_dict`).

    Configs saved before the ``ray`` section existed kept the Ray options in ``run``."""
    d = dict(d)
    if "ray" not in d:
        run = d.get("run") if isinstance(d.get("run"), dict) else {}
        names = {f.name for f in fields(RayConfig)}
        d["ray"] = {k: v for k, v in run.items() if k in names}
    return d


def config_from_dict(d: dict) -> TrainConfig:
    """Rebuild a TrainConfig from plain data (an old layout is upgraded first:
    :func:`upgrade_config_dict`), ignoring fields this version does not know."""
    d = upgrade_config_dict(d)
    sections = {s: section_from_dict(SECTION_TYPES[s], d.get(s)) for s in SECTIONS if s != "model"}
    return TrainConfig(model=model_config_from_dict(d.get("model")), **sections)


def save_config(cfg: TrainConfig, path) -> None:
    with open(path, "w") as f:
        json.dump(config_to_dict(cfg), f, indent=2, sort_keys=True)


def changed_flags(cfg: TrainConfig) -> List[str]:
    """Flags that differ from the defaults (for logging a run's command line)."""
    default = TrainConfig()
    out = []
    for section in SECTIONS:
        a, b = getattr(cfg, section), getattr(default, section)
        for f in fields(a):
            if getattr(a, f.name) != getattr(b, f.name):
                out.append(f"{_flag(f.name)}={getattr(a, f.name)}")
    return out
