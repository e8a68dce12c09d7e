"""POPGym (Morad et al., "POPGym: Benchmarking Partially Observable Reinforcement
Learning", ICLR 2023; package ``popgym`` 1.0.7): ``popgym:NAME[,NAME...]``.

``NAME`` is the short form of POPGym's gymnasium ids (``RepeatPreviousEasy`` for
``popgym-RepeatPreviousEasy-v0``); a wrong name lists the known ones. The envs are
plain gymnasium envs built through :mod:`envs.gym_env` (``gym:popgym:popgym-NAME-v0``
is the same env), so observations are flattened the same way (``Discrete`` one-hot,
``MultiDiscrete`` one one-hot per component, ``Tuple`` concatenated) and a comma list
is a multi-task set of envs with equal spaces. Envs with a ``MultiDiscrete`` action space
(Battleship, MineSweeper) get one categorical head per component (the action layout);
those with a ``Box`` action space (the Pendulum variants) are refused in one line.

Every POPGym env scales its rewards so that an episode's return lies in [-1, 1].
Measured with ``python -m launch.popgym_returns --episodes 1000`` (seed 0): per Easy env
with Discrete actions, the mean episode length (agent steps) and the mean return over
1000 episodes of a uniformly random policy and of a "best" policy that reads the env's
hidden state (written for the envs with a value; for them it is the best possible
return, every step being rewarded):

=============================  ==========================================  ======  ======  ====
env                            what it tests                               length  random  best
=============================  ==========================================  ======  ======  ====
RepeatPreviousEasy             output the suit seen 4 cards ago            51      -0.50   1.00
RepeatFirstEasy                output the suit of the first card           51      -0.50   1.00
PositionOnlyCartPoleEasy       balance a pole seeing positions only        <= 200  0.11    1.00
VelocityOnlyCartpoleEasy       balance a pole seeing velocities only       <= 200  0.11    1.00
NoisyPositionOnlyCartPoleEasy  as PositionOnly, with noisy observations    <= 200  0.11    1.00
AutoencodeEasy                 watch a card sequence, replay it reversed   103     -0.50   n/a
CountRecallEasy                count cards per value, recall a count       51      -0.93   n/a
MultiarmedBanditEasy           find the best of 10 noisy arms              200     0.01    n/a
HigherLowerEasy                guess if the next card is higher or lower   51      0.01    n/a
ConcentrationEasy              the card game Concentration                 104     -0.19   n/a
=============================  ==========================================  ======  ======  ====

(The random CartPole episodes last 22.2 steps on average; "n/a": no hidden-state policy
is written for that env.)
"""

from __future__ import annotations

import difflib
from typing import List, Sequence, Tuple

from envs.base import ObsSpec, VecEnv
from envs.config import EnvConfig
from envs.gym_env import GymVecEnv, check_task_spaces
from envs.imports import import_module
from envs.registry import EnvBuild, EnvFamily, register_env_family

POPGYM_MODULE = "popgym"
_PREFIX, _SUFFIX = "popgym-", "-v0"


def popgym_names() -> List[str]:
    """Short names of every env the installed popgym registers, in registration order."""
    import gymnasium as gym
    import_module(POPGYM_MODULE, "popgym")
    return [k[len(_PREFIX):-len(_SUFFIX)] for k in gym.registry
            if k.startswith(_PREFIX) and k.endswith(_SUFFIX)]


def popgym_make_id(name: str) -> str:
    """The ``gym.make`` argument of a short name: ``popgym:popgym-NAME-v0``."""
    return f"{POPGYM_MODULE}:{_PREFIX}{name}{_SUFFIX}"


@register_env_family("popgym")
class PopgymFamily(EnvFamily):
    """``popgym:NAME[,NAME...]``: POPGym envs by short name (see the module docstring)."""

    def parse_tasks(self, items: Sequence[str]) -> List[str]:
        names = popgym_names()
        if not items:
            raise ValueError(f"popgym spec names no env; known names: {', '.join(names)}")
        tasks: List[str] = []
        for item in items:
            if item not in names:
                close = difflib.get_close_matches(item, names, n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ValueError(f"unknown popgym env {item!r}{hint}; known names: {', '.join(names)}")
            if item in tasks:
                raise ValueError(f"popgym env {item!r} appears twice in the task set")
            tasks.append(item)
        return tasks

    def validate(self, cfg: EnvConfig, tasks: List[str]) -> None:
        check_task_spaces(tasks, [popgym_make_id(t) for t in tasks])

    def describe(self, cfg: EnvConfig, tasks: List[str]) -> Tuple[ObsSpec, Tuple[int, ...]]:
        return check_task_spaces(tasks, [popgym_make_id(t) for t in tasks])

    def make(self, build: EnvBuild) -> VecEnv:
        return GymVecEnv(build, [popgym_make_id(t) for t in build.tasks])


# -- measuring random and best returns (python -m launch.popgym_returns) --------------------------

def _cartpole_oracle(env) -> int:
    """Push towards the side the pole falls to, from the full (hidden) CartPole state."""
    x, x_dot, theta, theta_dot = env.unwrapped.state
    return int(theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0)


def _repeat_previous_oracle(env) -> int:
    u = env.unwrapped
    hand = u.deck["player"]
    return int(u.deck.suits_idx[hand[-u.k]]) if len(hand) >= u.k else 0


def _repeat_first_oracle(env) -> int:
    return int(env.unwrapped.card)


ORACLES = {
    "RepeatPreviousEasy": _repeat_previous_oracle,
    "RepeatFirstEasy": _repeat_first_oracle,
    "PositionOnlyCartPoleEasy": _cartpole_oracle,
    "VelocityOnlyCartpoleEasy": _cartpole_oracle,
    "NoisyPositionOnlyCartPoleEasy": _cartpole_oracle,
}


def measure(name: str, episodes: int, seed: int = 0, oracle=None) -> Tuple[float, float]:
    """(mean return, mean length) over ``episodes`` episodes of a uniformly random policy,
    or of ``oracle(env) -> action`` when given."""
    import gymnasium as gym
    import numpy as np

    env = gym.make(popgym_make_id(name))
    env.action_space.seed(seed)
    returns, lengths = [], []
    for ep in range(episodes):
        env.reset(seed=seed * 1_000_003 + ep)
        total, n, done = 0.0, 0, False
        while not done:
            a = env.action_space.sample() if oracle is None else oracle(env)
            _, r, term, trunc, _ = env.step(a)
            total, n, done = total + float(r), n + 1, term or trunc
        returns.append(total)
        lengths.append(n)
    env.close()
    return float(np.mean(returns)), float(np.mean(lengths))
