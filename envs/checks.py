"""Input checks shared by the vector envs (cheap: a few microseconds per step)."""

from __future__ import annotations

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
