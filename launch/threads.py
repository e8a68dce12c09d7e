"""How many torch threads the learner and each actor process get.

Torch's default gives every process one intra-op thread per core. A learner and two
actor processes on a 2-core machine then run four or more busy threads on two cores,
and the learner's matrix products stall behind the actors: a small-model run measured
4.5x slower than with one learner thread. The rule here divides the cores the process
may run on (``os.sched_getaffinity``) instead:

* every actor process (or, with ``--inference learner``, every env-stepping actor)
  keeps one core busy, whatever its thread count: it is counted first;
* a learner on the CPU gets the cores the actors leave, at least one;
* a learner on a GPU needs only a thread or two to feed the device: it gets
  ``min(2, cores left)``, at least one;
* cores still left after that go to the actors, shared evenly (at least one each).
  With ``--inference learner`` the actors run no torch, so they keep one thread and
  the inference server shares the learner's threads.

``--learner-threads N`` / ``--actor-threads N`` (N > 0) override the rule; 0 means
"use the rule". The layout is printed at start-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

GPU_LEARNER_THREADS = 2


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):      # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadLayout:
    cores: int
    num_actors: int
    learner_threads: int
    actor_threads: int
    learner_on_gpu: bool

    @property
    def busy_threads(self) -> int:
        """Threads that may be busy at once: the learner's plus every actor's."""
        return self.learner_threads + self.num_actors * self.actor_threads

    def describe(self) -> str:
        where = "GPU" if self.learner_on_gpu else "CPU"
        return (f"threads: {self.cores} cores; learner ({where}) {self.learner_threads}, "
                f"{self.num_actors} actor process(es) x {self.actor_threads}")


def plan_threads(cores: int, num_actors: int, learner_on_gpu: bool, *, local_actors: bool = True,
                 learner_threads: int = 0, actor_threads: int = 0) -> ThreadLayout:
    """The thread layout for ``cores`` cores (see the module docstring).

    ``local_actors`` is False when the actors run elsewhere (Ray workers on other
    machines get their own ``actor_threads``; here they do not take the learner's cores).
    Explicit ``learner_threads`` / ``actor_threads`` above 0 are kept as given.
    """
    if cores < 1 or num_actors < 1:
        raise ValueError(f"plan_threads needs cores >= 1 and num_actors >= 1, got {cores}, {num_actors}")
    actors_here = num_actors if local_actors else 0
    left = max(cores - actors_here, 0)
    if learner_threads <= 0:
        learner_threads = max(1, min(GPU_LEARNER_THREADS, left) if learner_on_gpu else left)
    if actor_threads <= 0:
        spare = max(cores - learner_threads - actors_here, 0)
        actor_threads = 1 + (spare // actors_here if actors_here else 0)
    return ThreadLayout(cores=cores, num_actors=num_actors, learner_threads=learner_threads,
                        actor_threads=actor_threads, learner_on_gpu=learner_on_gpu)


def plan_for_config(cfg, device_type: str, cores: int | None = None) -> ThreadLayout:
    """The layout of a :class:`launch.config.TrainConfig` whose learner runs on ``device_type``."""
    local = cfg.run.backend == "local" or not cfg.ray.ray_address
    actor_torch = cfg.actor.inference == "actor"
    layout = plan_threads(cores or available_cores(), cfg.actor.num_actors, device_type == "cuda",
                          local_actors=local, learner_threads=cfg.learner.learner_threads,
                          actor_threads=cfg.actor.actor_threads if actor_torch else max(cfg.actor.actor_threads, 1))
    return layout


def apply_layout(cfg, layout: ThreadLayout) -> None:
    """Write the layout into ``cfg`` (learner and actor thread counts), so that every process
    started from it uses the planned numbers."""
    cfg.learner.learner_threads = layout.learner_threads
    cfg.actor.actor_threads = layout.actor_threads


__all__ = ["ThreadLayout", "available_cores", "plan_threads", "plan_for_config", "apply_layout"]
