"""ProcGen normalised-score constants (DESIGN.md section 7).

The normalised score of a mean return ``R`` is ``(R - R_min) / (R_max - R_min)``
(Cobbe et al., "Leveraging Procedural Generation to Benchmark Reinforcement
Learning", ICML 2020, arXiv:1912.01588). ``R_min`` is roughly what a policy that
never learns gets, ``R_max`` the best achievable return.

Two named constant sets exist and a report must say which one it used:

* ``train-procgen`` (the default): the constants of OpenAI's train-procgen code,
  for ``easy`` and ``hard`` mode, exactly as listed in DESIGN.md section 7;
* ``procgen-paper``: a copy said to follow the paper's table; it differs from
  ``train-procgen`` only in easy-mode jumper and leaper, whose ``R_min`` is 3.

``memory`` and ``exploration`` mode have no published constants, and neither do
Atari or the project's own tasks: :func:`normalised_score` returns ``None`` for
them and reports print "n/a".
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

Bounds = Tuple[float, float]   # (R_min, R_max)

_TRAIN_PROCGEN_EASY: Dict[str, Bounds] = {
    "coinrun": (5.0, 10.0), "starpilot": (2.5, 64.0), "caveflyer": (3.5, 12.0),
    "dodgeball": (1.5, 19.0), "fruitbot": (-1.5, 32.4), "chaser": (0.5, 13.0),
    "miner": (1.5, 13.0), "jumper": (1.0, 10.0), "leaper": (1.5, 10.0),
    "maze": (5.0, 10.0), "bigfish": (1.0, 40.0), "heist": (3.5, 10.0),
    "climber": (2.0, 12.6), "plunder": (4.5, 30.0), "ninja": (3.5, 10.0),
    "bossfight": (0.5, 13.0),
}

_TRAIN_PROCGEN_HARD: Dict[str, Bounds] = {
    "coinrun": (5.0, 10.0), "starpilot": (1.5, 35.0), "caveflyer": (2.0, 13.4),
    "dodgeball": (1.5, 19.0), "fruitbot": (-0.5, 27.2), "chaser": (0.5, 14.2),
    "miner": (1.5, 20.0), "jumper": (1.0, 10.0), "leaper": (1.5, 10.0),
    "maze": (4.0, 10.0), "bigfish": (0.0, 40.0), "heist": (2.0, 10.0),
    "climber": (1.0, 12.6), "plunder": (3.0, 30.0), "ninja": (2.0, 10.0),
    "bossfight": (0.5, 13.0),
}

_PAPER_EASY: Dict[str, Bounds] = dict(_TRAIN_PROCGEN_EASY, jumper=(3.0, 10.0), leaper=(3.0, 10.0))

#: constant set name -> distribution mode -> game -> (R_min, R_max)
SCORE_CONSTANTS: Dict[str, Dict[str, Dict[str, Bounds]]] = {
    "train-procgen": {"easy": _TRAIN_PROCGEN_EASY, "hard": _TRAIN_PROCGEN_HARD},
    "procgen-paper": {"easy": _PAPER_EASY, "hard": _TRAIN_PROCGEN_HARD},
}

DEFAULT_SCORE_CONSTANTS = "train-procgen"


def check_constant_set(name: str) -> None:
    """Raise ValueError naming ``name`` if it is not a known constant set."""
    if name not in SCORE_CONSTANTS:
        raise ValueError(f"unknown score constant set {name!r}; known sets: {', '.join(sorted(SCORE_CONSTANTS))}")


def score_bounds(game: str, distribution_mode: str, constant_set: str = DEFAULT_SCORE_CONSTANTS
                 ) -> Optional[Bounds]:
    """``(R_min, R_max)`` of a ProcGen game in a mode, or None where no constants exist."""
    check_constant_set(constant_set)
    return SCORE_CONSTANTS[constant_set].get(distribution_mode, {}).get(game.lower())


def normalised_score(mean_return: float, game: str, distribution_mode: str,
                     constant_set: str = DEFAULT_SCORE_CONSTANTS) -> Optional[float]:
    """``(R - R_min) / (R_max - R_min)``, or None where the game/mode has no constants."""
    bounds = score_bounds(game, distribution_mode, constant_set)
    if bounds is None:
        return None
    r_min, r_max = bounds
    return (float(mean_return) - r_min) / (r_max - r_min)


def constant_set_label(constant_set: str, distribution_mode: str, family: str = "procgen") -> str:
    """How a report names the constants it used, e.g. ``"train-procgen easy"``."""
    check_constant_set(constant_set)
    if family != "procgen" or distribution_mode not in SCORE_CONSTANTS[constant_set]:
        what = f"{family} {distribution_mode}" if family == "procgen" else family
        return f"none (no published constants for {what})"
    return f"{constant_set} {distribution_mode}"
