"""Measure the random and best returns of POPGym envs (the table in :mod:`envs.popgym_env`).

``python -m launch.popgym_returns --episodes 1000`` prints, per Easy env with Discrete
actions, the mean episode length and the mean return of a uniformly random policy and
of a policy that reads the env's hidden state (where one is written).
"""

from __future__ import annotations

import sys

from envs.popgym_env import ORACLES, measure, popgym_make_id, popgym_names


def main(argv=None) -> int:
    import argparse
    import warnings
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(prog="python -m launch.popgym_returns",
                                description="random and best returns of POPGym Easy envs")
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--names", default="", help="comma list (default: every Easy env with Discrete actions)")
    args = p.parse_args(argv)
    from gymnasium.spaces import Discrete
    from envs.gym_env import gym_spaces
    names = args.names.split(",") if args.names else [
        n for n in popgym_names() if n.endswith("Easy")
        and isinstance(gym_spaces(popgym_make_id(n))[1], Discrete)]
    print(f"{'env':30s} {'length':>8s} {'random':>8s} {'best':>8s}")
    for name in names:
        rand, length = measure(name, args.episodes, args.seed)
        best = (f"{measure(name, args.episodes, args.seed, ORACLES[name])[0]:8.2f}"
                if name in ORACLES else f"{'n/a':>8s}")
        print(f"{name:30s} {length:8.1f} {rand:8.2f} {best}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
