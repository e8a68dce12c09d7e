"""Raw env stepping speed through the project's interface vs the bare library.

    python -m launch.bench_envs [--families procgen atari memory] [--num-envs N] [--steps S]

For each family the same number of envs is stepped with the same pre-drawn random
actions and the same seeds (so both play identical episodes), once through
:func:`envs.make_vec_env` and once through the bare library (ProcGen:
``ProcgenGym3Env.act`` + ``observe``; Atari: ale-py's ``AtariVectorEnv`` with the same
preprocessing; gym: gymnasium's ``SyncVectorEnv``). The two alternate step by step, so
both see the same machine load, and each round sums the time of every step per
variant; the best of ``--rounds`` rounds is reported (timeit's rule: the minimum is
the least disturbed measurement). Time is process CPU time by default (every thread
of the process, so library worker threads count), which a loaded machine disturbs
far less than elapsed time; ``--clock wall`` measures elapsed time. ``overhead`` is the project's time over the bare
time, minus one; the target is at most 10%. ``memory`` and ``counting`` are the
project's own envs and have no bare counterpart.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from envs import EnvConfig, make_vec_env
from envs.registry import derive_seed

FAMILIES = ("procgen", "atari", "gym", "memory", "counting")


def _bare_procgen(cfg: EnvConfig, game: str, n: int) -> Callable[[np.ndarray], None]:
    from envs.procgen_env import import_procgen
    procgen = import_procgen()
    env = procgen.ProcgenGym3Env(num=n, env_name=game, distribution_mode=cfg.distribution_mode,
                                 num_levels=cfg.num_levels, start_level=cfg.start_level,
                                 rand_seed=derive_seed(cfg.seed, 0, 0, 0), num_threads=cfg.env_threads)

    def step(actions: np.ndarray) -> None:
        env.act(actions.astype(np.int32))
        env.observe()

    return step


def _bare_atari(cfg: EnvConfig, game: str, n: int) -> Callable[[np.ndarray], None]:
    from ale_py.vector_env import AtariVectorEnv
    from gymnasium.vector import AutoresetMode
    from envs.atari_env import rom_id_of
    vec = AtariVectorEnv(rom_id_of(game), n, frameskip=4, maxpool=True, grayscale=True,
                         img_height=84, img_width=84, stack_num=4, noop_max=cfg.noop_max,
                         episodic_life=False, life_loss_info=not cfg.eval_mode,
                         reward_clipping=False, use_fire_reset=False,
                         repeat_action_probability=cfg.sticky_action_prob,
                         full_action_space=cfg.full_action_space,
                         max_num_frames_per_episode=cfg.max_episode_frames,
                         autoreset_mode=AutoresetMode.SAME_STEP, num_threads=max(1, cfg.env_threads))
    vec.reset(seed=np.array([derive_seed(cfg.seed, 0, 0, i) for i in range(n)]))

    def step(actions: np.ndarray) -> None:
        vec.step(actions.astype(np.int64))

    return step


def _bare_gym(env_id: str, n: int) -> Callable[[np.ndarray], None]:
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode, SyncVectorEnv
    vec = SyncVectorEnv([lambda: gym.make(env_id)] * n, autoreset_mode=AutoresetMode.SAME_STEP)
    vec.reset(seed=[derive_seed(0, 0, 0, i) for i in range(n)])

    def step(actions: np.ndarray) -> None:
        vec.step(actions)

    return step


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
_clock = CLOCKS["cpu"]


def _time_interleaved(variants: Dict[str, Callable[[np.ndarray], object]],
                      actions: np.ndarray) -> Dict[str, float]:
    """Seconds spent in each variant, stepping them in turn on every action row."""
    spent = {k: 0.0 for k in variants}
    clock = _clock
    for a in actions:
        for k, fn in variants.items():
            t0 = clock()
            fn(a)
            spent[k] += clock() - t0
    return spent


def bench_family(family: str, num_envs: int, steps: int, rounds: int, procgen_game: str,
                 atari_game: str, gym_id: str) -> List[Dict[str, object]]:
    """Rows of {name, ours_sps, bare_sps, overhead} for one family."""
    spec = {"procgen": f"procgen:{procgen_game}", "atari": f"atari:{atari_game}",
            "gym": f"gym:{gym_id}", "memory": "memory", "counting": "counting"}[family]
    cfg = EnvConfig(env=spec)
    env = make_vec_env(cfg, num_envs)
    env.reset()
    rng = np.random.default_rng(0)
    actions = rng.integers(0, env.num_actions, size=(steps, num_envs))  # int64 [S, N]

    bare: Optional[Callable[[np.ndarray], None]] = None
    if family == "procgen":
        bare = _bare_procgen(cfg, procgen_game, num_envs)
    elif family == "atari":
        bare = _bare_atari(cfg, atari_game, num_envs)
    elif family == "gym":
        bare = _bare_gym(gym_id, num_envs)

    variants: Dict[str, Callable[[np.ndarray], object]] = {"ours": env.step}
    if bare is not None:
        variants["bare"] = bare
    _time_interleaved(variants, actions[: max(1, steps // 10)])  # warm-up
    best = {k: float("inf") for k in variants}
    for _ in range(rounds):
        for k, t in _time_interleaved(variants, actions).items():
            best[k] = min(best[k], t)
    if family == "procgen":
        # What a C-contiguous [N, 3, 64, 64] copy of the channels-first view would add.
        obs = env.step(actions[0])[0]
        copy_s = min(_time_interleaved({"c": lambda a: np.ascontiguousarray(obs)}, actions[:50])["c"]
                     for _ in range(rounds)) / 50
        best["ours+contiguous"] = best["ours"] + copy_s * steps
    env.close()

    rows = []
    for k in ("ours", "ours+contiguous"):
        if k not in best:
            continue
        row = {"family": family if k == "ours" else f"{family} (+contiguous obs copy)",
               "num_envs": num_envs, "ours_sps": steps * num_envs / best[k],
               "us_per_env_step": best[k] / (steps * num_envs) * 1e6}
        if "bare" in best:
            row["bare_sps"] = steps * num_envs / best["bare"]
            row["overhead"] = best[k] / best["bare"] - 1.0
        rows.append(row)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=["procgen", "atari", "memory"], choices=FAMILIES)
    p.add_argument("--num-envs", type=int, default=None,
                   help="envs per vector env (default: procgen 64, atari 8, others 64)")
    p.add_argument("--steps", type=int, default=None,
                   help="vector steps per round (default: procgen 300, atari 100, others 2000)")
    p.add_argument("--rounds", type=int, default=5, help="alternating timing rounds; best one kept")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                   help="cpu: process CPU time, all threads (robust on a loaded machine); "
                        "wall: elapsed time")
    p.add_argument("--procgen-game", default="bigfish")
    p.add_argument("--atari-game", default="Pong")
    p.add_argument("--gym-id", default="CartPole-v1")
    args = p.parse_args(argv)
    global _clock
    _clock = CLOCKS[args.clock]

    defaults = {"procgen": (64, 300), "atari": (8, 100)}
    print(f"{'family':<36} {'N':>4} {'ours steps/s':>13} {'bare steps/s':>13} {'overhead':>9} {'us/env-step':>12}")
    for fam in args.families:
        n_def, s_def = defaults.get(fam, (64, 2000))
        rows = bench_family(fam, args.num_envs or n_def, args.steps or s_def, args.rounds,
                            args.procgen_game, args.atari_game, args.gym_id)
        for r in rows:
            bare = f"{r['bare_sps']:13.0f}" if "bare_sps" in r else f"{'-':>13}"
            over = f"{100 * r['overhead']:8.1f}%" if "overhead" in r else f"{'-':>9}"
            print(f"{r['family']:<36} {r['num_envs']:>4} {r['ours_sps']:13.0f} {bare} {over} "
                  f"{r['us_per_env_step']:12.2f}", flush=True)


if __name__ == "__main__":
    main()
