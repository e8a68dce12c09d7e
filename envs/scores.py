"""ProcGen normalised-score constants (docs/design.md#procgen-normalised-score).

The normalised score of a mean return ``R`` is ``(R - R_min) / (R_max - R_min)``
(Cobbe et al., "Leveraging Procedural Generation to Benchmark Reinforcement
Learning", ICML 2020, arXiv:1912.01588). ``R_min`` is roughly what a policy that
never learns gets, ``R_max`` the best achievable return.

Two named constant sets exist and a report must say which one it used:

* ``train-procgen`` (the default): the constants of OpenAI's train-procgen code,
  for ``easy`` and ``hard`` mode, exactly as listed in docs/design.md#procgen-normalised-score;
* ``procgen-paper``: a copy said to follow the paper's table; it differs from
  ``train-procgen`` only in easy-mode jumper and leaper, whose ``R_min`` is 3.

``memory`` and ``exploration`` mode have no published constants, and neither do
the project's own tasks: :func:`normalised_score` returns ``None`` for them and
reports print "n/a". Atari games get the human-normalised score instead
(:func:`human_normalised_score`, bottom of this file).
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


# -- Atari: human-normalised score ---------------------------------------------------------
# ``(R - R_random) / (R_human - R_random)`` with the per-game random-agent and human scores
# of the 57-game Atari table (Mnih et al., Nature 2015, extended to 57 games; the table
# of Badia et al., "Agent57", ICML 2020, as shipped by DeepMind's DQN Zoo). Keys are ALE
# ROM ids. Video Pinball's random score exceeds some reported human scores under other
# evaluation protocols; the table's values are kept as published.
ATARI_HUMAN_CONSTANTS = "dqn-zoo 57-game random/human table (Mnih et al. 2015; Badia et al. 2020)"

ATARI_RANDOM_HUMAN: Dict[str, Bounds] = {
    "alien": (227.8, 7127.7), "amidar": (5.8, 1719.5), "assault": (222.4, 742.0),
    "asterix": (210.0, 8503.3), "asteroids": (719.1, 47388.7), "atlantis": (12850.0, 29028.1),
    "bank_heist": (14.2, 753.1), "battle_zone": (2360.0, 37187.5), "beam_rider": (363.9, 16926.5),
    "berzerk": (123.7, 2630.4), "bowling": (23.1, 160.7), "boxing": (0.1, 12.1),
    "breakout": (1.7, 30.5), "centipede": (2090.9, 12017.0), "chopper_command": (811.0, 7387.8),
    "crazy_climber": (10780.5, 35829.4), "defender": (2874.5, 18688.9),
    "demon_attack": (152.1, 1971.0), "double_dunk": (-18.6, -16.4), "enduro": (0.0, 860.5),
    "fishing_derby": (-91.7, -38.7), "freeway": (0.0, 29.6), "frostbite": (65.2, 4334.7),
    "gopher": (257.6, 2412.5), "gravitar": (173.0, 3351.4), "hero": (1027.0, 30826.4),
    "ice_hockey": (-11.2, 0.9), "jamesbond": (29.0, 302.8), "kangaroo": (52.0, 3035.0),
    "krull": (1598.0, 2665.5), "kung_fu_master": (258.5, 22736.3),
    "montezuma_revenge": (0.0, 4753.3), "ms_pacman": (307.3, 6951.6),
    "name_this_game": (2292.3, 8049.0), "phoenix": (761.4, 7242.6), "pitfall": (-229.4, 6463.7),
    "pong": (-20.7, 14.6), "private_eye": (24.9, 69571.3), "qbert": (163.9, 13455.0),
    "riverraid": (1338.5, 17118.0), "road_runner": (11.5, 7845.0), "robotank": (2.2, 11.9),
    "seaquest": (68.4, 42054.7), "skiing": (-17098.1, -4336.9), "solaris": (1236.3, 12326.7),
    "space_invaders": (148.0, 1668.7), "star_gunner": (664.0, 10250.0), "surround": (-10.0, 6.5),
    "tennis": (-23.8, -8.3), "time_pilot": (3568.0, 5229.2), "tutankham": (11.4, 167.6),
    "up_n_down": (533.4, 11693.2), "venture": (0.0, 1187.5), "video_pinball": (16256.9, 17667.9),
    "wizard_of_wor": (563.5, 4756.5), "yars_revenge": (3092.9, 54576.9), "zaxxon": (32.5, 9173.3),
}
_ATARI_KEYS = {k.replace("_", ""): k for k in ATARI_RANDOM_HUMAN}


def atari_bounds(game: str) -> Optional[Bounds]:
    """``(R_random, R_human)`` of an Atari game (``Pong``, ``SpaceInvaders``, ``space_invaders``),
    or None for a game outside the 57-game table."""
    key = _ATARI_KEYS.get(game.strip().lower().replace("_", ""))
    return None if key is None else ATARI_RANDOM_HUMAN[key]


def human_normalised_score(mean_return: float, game: str) -> Optional[float]:
    """``(R - R_random) / (R_human - R_random)``; None for a game without constants."""
    bounds = atari_bounds(game)
    if bounds is None:
        return None
    random_score, human = bounds
    return (float(mean_return) - random_score) / (human - random_score)
