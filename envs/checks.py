"""Input checks shared by the vector envs (cheap: a few microseconds per step)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def check_actions(actions, num_envs: int, num_actions: int) -> np.ndarray:
    """Return ``actions`` as an int array [N]; ValueError naming the bad value otherwise."""
    a = actions if type(actions) is np.ndarray else np.asarray(actions)
    if a.shape != (num_envs,):
        raise ValueError(f"actions have shape {a.shape}, expected ({num_envs},)")
    if a.dtype.kind not in "iu":
        raise ValueError(f"actions have dtype {a.dtype}, expected an integer dtype")
    lo, hi = a.min(), a.max()
    if lo < 0 or hi >= num_actions:
        bad = int(lo) if lo < 0 else int(hi)
        raise ValueError(f"action {bad} out of range [0, {num_actions})")
    return a


def check_multi_actions(actions, num_envs: int, action_dims: Sequence[int]) -> np.ndarray:
    """Return ``actions`` of a MultiDiscrete layout ``(n_1, ..., n_K)`` as an int array
    [N, K] (component ``k`` in ``[0, n_k)``); a one-component layout takes [N] as well.
    ValueError naming the bad value otherwise."""
    K = len(action_dims)
    a = actions if type(actions) is np.ndarray else np.asarray(actions)
    if K == 1 and a.shape == (num_envs,):
        a = a.reshape(num_envs, 1)
    if a.shape != (num_envs, K):
        raise ValueError(f"actions have shape {a.shape}, expected ({num_envs}, {K}) for the action "
                         f"layout {tuple(action_dims)}")
    if a.dtype.kind not in "iu":
        raise ValueError(f"actions have dtype {a.dtype}, expected an integer dtype")
    lo, hi = a.min(axis=0), a.max(axis=0)
    for k, n in enumerate(action_dims):
        if lo[k] < 0 or hi[k] >= n:
            bad = int(lo[k]) if lo[k] < 0 else int(hi[k])
            raise ValueError(f"action component {k} is {bad}, out of range [0, {n}) (action layout "
                             f"{tuple(action_dims)})")
    return a
