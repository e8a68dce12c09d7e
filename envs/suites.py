"""Named, versioned task suites for comparing memory cores (``launch.compare --suite``).

A suite is a fixed list of tasks; each task names its env spec, its training budget in
environment steps and the two returns that normalise it: ``random`` (a uniformly random
policy; normalised score 0) and ``perfect`` (the best possible mean return; score 1)::

    score = (R - random) / (perfect - random)

A suite's content never changes once published: a changed task list, budget or
constant is a new version (``memory-v2``), so scores with the same suite name compare.

``memory-v1`` (every task needs memory: a memoryless policy scores about 0):

============  ===============================  ==========  =======  =======  ==========================
task          env                              budget      random   perfect  source of the constants
============  ===============================  ==========  =======  =======  ==========================
recall-4      memory:4:4                       500,000     0.25     1.00     exact: 1 of K=4 cues
recall-16     memory:16:4                      1,000,000   0.25     1.00     exact: 1 of K=4 cues
repeat-prev   popgym:RepeatPreviousEasy        2,000,000   -0.50    1.00     exact (48 steps of +-1/48)
repeat-first  popgym:RepeatFirstEasy           1,000,000   -0.50    1.00     exact (51 steps of +-1/51)
cartpole-pos  popgym:PositionOnlyCartPoleEasy  2,000,000   0.11     1.00     measured, 1000 episodes
majority-9    majority:9:2                     1,000,000   0.50     1.00     exact: 1 of K=2 answers
============  ===============================  ==========  =======  =======  ==========================

The POPGym values are those of ``python -m launch.popgym_returns --episodes 1000``
(see :mod:`envs.popgym_env`); "exact" ones agree with that measurement.

``memory-v2`` is ``memory-v1`` with the POPGym tasks trained at their own entropy cost
(a task's ``train_args`` come after the compare's common settings, before the user's
flags after ``--``) and repeat-first's budget doubled; the other tasks are v1's, unchanged:

============  ===============================  ==========  ==========================
task          env                              budget      task's own train args
============  ===============================  ==========  ==========================
recall-4      memory:4:4                       500,000
recall-16     memory:16:4                      1,000,000
repeat-prev   popgym:RepeatPreviousEasy        2,000,000   ``--entropy-cost 0.0002``
repeat-first  popgym:RepeatFirstEasy           2,000,000   ``--entropy-cost 0.0002``
cartpole-pos  popgym:PositionOnlyCartPoleEasy  2,000,000   ``--entropy-cost 0.0002``
majority-9    majority:9:2                     1,000,000
============  ===============================  ==========  ==========================

Why: POPGym pays rewards of about 1/50 per step and V-trace, unlike POPGym's own PPO,
does not normalise advantages, so the common ``--entropy-cost 0.01`` outweighs the
policy gradient and every memory-v1 repeat-first run of ff, lstm and deltanet ended with
a uniform policy; at 0.0002 (0.01 / 50, the same balance as the project's own tasks'
rewards of 1 per episode) lstm learns it. The measurements are in the project's
``docs/learning/README.md``, section 6.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple


@dataclass(frozen=True)
class SuiteTask:
    """One task of a suite: ``name`` (short label), ``env`` (spec), budget, normalisation,
    and ``train_args``: ``launch.train`` flags this task is always trained with."""

    name: str
    env: str
    total_steps: int
    random: float
    perfect: float
    train_args: Tuple[str, ...] = ()

    def normalise(self, mean_return: float) -> float:
        return (float(mean_return) - self.random) / (self.perfect - self.random)


#: memory-v2's POPGym tasks: an entropy cost on the scale of their per-step rewards.
_POPGYM_ARGS = ("--entropy-cost", "0.0002")

SUITES: Dict[str, Tuple[SuiteTask, ...]] = {
    "memory-v1": (
        SuiteTask("recall-4", "memory:4:4", 500_000, 0.25, 1.0),
        SuiteTask("recall-16", "memory:16:4", 1_000_000, 0.25, 1.0),
        SuiteTask("repeat-prev", "popgym:RepeatPreviousEasy", 2_000_000, -0.5, 1.0),
        SuiteTask("repeat-first", "popgym:RepeatFirstEasy", 1_000_000, -0.5, 1.0),
        SuiteTask("cartpole-pos", "popgym:PositionOnlyCartPoleEasy", 2_000_000, 0.11, 1.0),
        SuiteTask("majority-9", "majority:9:2", 1_000_000, 0.5, 1.0),
    ),
    "memory-v2": (
        SuiteTask("recall-4", "memory:4:4", 500_000, 0.25, 1.0),
        SuiteTask("recall-16", "memory:16:4", 1_000_000, 0.25, 1.0),
        SuiteTask("repeat-prev", "popgym:RepeatPreviousEasy", 2_000_000, -0.5, 1.0, _POPGYM_ARGS),
        SuiteTask("repeat-first", "popgym:RepeatFirstEasy", 2_000_000, -0.5, 1.0, _POPGYM_ARGS),
        SuiteTask("cartpole-pos", "popgym:PositionOnlyCartPoleEasy", 2_000_000, 0.11, 1.0, _POPGYM_ARGS),
        SuiteTask("majority-9", "majority:9:2", 1_000_000, 0.5, 1.0),
    ),
}


def list_suites() -> List[str]:
    return sorted(SUITES)


def get_suite(name: str, tasks: Sequence[str] = ()) -> List[SuiteTask]:
    """The tasks of suite ``name`` (all, or those named in ``tasks``, in suite order);
    ValueError naming an unknown suite or task."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; known suites: {', '.join(list_suites())}")
    suite = SUITES[name]
    names = [t.name for t in suite]
    for t in tasks:
        if t not in names:
            raise ValueError(f"unknown task {t!r} in suite {name!r}; its tasks: {', '.join(names)}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"a task appears twice in {', '.join(tasks)}")
    return [t for t in suite if not tasks or t.name in tasks]
