"""Evaluate a checkpoint on held-out levels: load, plan episodes, run them, summarise.

The protocol is the SRWM paper's (Irie et al., "A Modern Self-Referential Weight
Matrix That Learns to Modify Itself", ICML 2022; docs/design.md#level-splits), itself following ProcGen's (Cobbe
et al., ICML 2020): train on levels 0-199, report the mean return on the 200-level
splits test1/test2/test3 (seeds 1000, 1200, 1400) and the generalisation gap to the
training split.

One job per module; the command line is :mod:`launch.evaluate`::

    loading.load_policy(run dir | file)        checkpoint -> ModelConfig, EnvConfig, Agent (weights loaded)
    plan.plan_episodes(tasks, splits, episodes) -> [EpisodeJob]: game, split, level, seed
    runner.run_episodes(jobs, ...)             --actors processes x --envs slots
        EpisodeRunner: one 1-env VecEnv per job (ProcGen: start_level = level, num_levels = 1)
                       batched agent step over the active slots, core state per slot
                       the FIRST episode of each env is the result; the env is then dropped
    stats.summarise(results, ...)              mean, standard error, 95% CI, normalised score
    video.write_video(path, frames)            recorded episodes as MP4 or GIF

Only the model and env sections of a checkpoint's config are read: evaluation needs no
``TrainConfig`` (:mod:`launch.config`) and this package imports nothing of ``actors/``
or ``launch/``.

Determinism: every job carries its own seed (derived from ``--seed``, the game, the
split and the episode index), which seeds its env and, for sampled actions, its
own ``torch.Generator``; so an episode does not depend on which actor or slot ran it
or on what ran beside it (up to float rounding of batched matrix products, which
on CPU can differ between batch sizes in the last bit).

Episodes are spread evenly over a split's L levels: with N episodes, episode i plays
level ``start + (i * L) // N`` (N = L: every level once; N < L: an evenly spaced
subset; N > L: every level N / L times, +-1).
"""
