"""Actor-side options: :class:`ActorConfig` (every backend) and :class:`RayConfig` (``--backend ray``).

Field help becomes ``--help`` text (launch/config.py composes the sections).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ActorConfig:
    num_actors: int = field(default=48, metadata={"help": "actor processes (the paper: 48)"})
    envs_per_actor: int = field(default=1, metadata={
        "help": "environments each actor steps together (one vectorised env call per step)"})
    num_buffers: int = field(default=2, metadata={
        "help": "unroll buffers per actor; the learner trains on one while the actor fills another"})
    unroll_length: int = field(default=50, metadata={"help": "T: steps per unroll (an unroll stores T+1 entries)"})
    batch_size: int = field(default=32, metadata={"help": "B: unrolls (env rows) per learner batch"})
    inference: str = field(default="actor", metadata={
        "help": "where the policy runs while acting: 'actor' (each actor's own CPU copy) "
                "or 'learner' (a batching inference server on the learner's device)"})
    inference_max_batch: int = field(default=0, metadata={
        "help": "inference server: largest batch of env rows per forward (0 = all envs)"})
    inference_timeout_ms: float = field(default=2.0, metadata={
        "help": "inference server: how long a partial batch waits for more requests"})
    heartbeat_timeout_s: float = field(default=120.0, metadata={
        "help": "an actor silent this long is considered hung, killed and restarted"})
    max_crashes_per_minute: int = field(default=10, metadata={
        "help": "more actor crashes than this within a minute stop the run"})
    actor_threads: int = field(default=0, metadata={
        "help": "torch threads per actor process (0 = by the thread rule: one, plus an even share "
                "of the cores the learner and actors leave; see launch/threads.py)"})


def validate_actor_config(cfg: ActorConfig) -> None:
    """Raise ValueError naming the first invalid option."""
    if not isinstance(cfg.actor_threads, int) or cfg.actor_threads < 0:
        raise ValueError(f"--actor-threads must be >= 0 (0 = by the thread rule), got {cfg.actor_threads!r}")
    for name in ("num_actors", "envs_per_actor", "num_buffers", "unroll_length", "batch_size"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
    rows = cfg.num_actors * cfg.envs_per_actor * cfg.num_buffers
    if cfg.batch_size > rows:
        raise ValueError(
            f"--batch-size {cfg.batch_size} is larger than the buffers: num_actors x envs_per_actor x "
            f"num_buffers = {cfg.num_actors} x {cfg.envs_per_actor} x {cfg.num_buffers} = {rows} rows")
    if cfg.inference not in ("actor", "learner"):
        raise ValueError(f"--inference must be 'actor' or 'learner', got {cfg.inference!r}")
    if cfg.inference_max_batch < 0:
        raise ValueError(f"--inference-max-batch must be >= 0, got {cfg.inference_max_batch}")
    if cfg.inference_timeout_ms < 0:
        raise ValueError(f"--inference-timeout-ms must be >= 0, got {cfg.inference_timeout_ms}")
    if cfg.heartbeat_timeout_s <= 0:
        raise ValueError(f"--heartbeat-timeout-s must be positive, got {cfg.heartbeat_timeout_s}")
    if cfg.max_crashes_per_minute < 0:
        raise ValueError(f"--max-crashes-per-minute must be >= 0, got {cfg.max_crashes_per_minute}")


@dataclass
class RayConfig:
    """Options of the Ray backend (``--backend ray``, docs/ray.md)."""

    ray_address: str = field(default="", metadata={
        "help": "Ray cluster address (empty: start a local Ray instance)"})
    ray_cpus_per_actor: float = field(default=1.0, metadata={"help": "CPUs reserved per Ray actor"})
    ray_broadcast_every: int = field(default=1, metadata={
        "help": "broadcast parameters through the Ray object store every K updates"})


def validate_ray_config(cfg: RayConfig) -> None:
    """Raise ValueError naming the first invalid option."""
    if cfg.ray_cpus_per_actor <= 0:
        raise ValueError(f"--ray-cpus-per-actor must be positive, got {cfg.ray_cpus_per_actor}")
    if not isinstance(cfg.ray_broadcast_every, int) or cfg.ray_broadcast_every < 1:
        raise ValueError(f"--ray-broadcast-every must be >= 1, got {cfg.ray_broadcast_every!r}")
