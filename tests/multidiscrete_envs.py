"""Tiny gymnasium envs with MultiDiscrete action spaces for tests/test_multidiscrete.py.

Importing the module registers them; they are named ``gym:tests.multidiscrete_envs:ID``,
so the trainer, its spawned actors, Ray workers (which get this repository) and the
evaluation import it by that name.

``FwrlMultiMatch-v0``: the observation is a target ``(t_0, t_1)`` drawn uniformly from
``MultiDiscrete([3, 2])``; the action is ``MultiDiscrete([3, 2])``; the reward is 1 when
both components match the target and 0 otherwise; 8 steps per episode. A uniformly
random policy earns 1/6 per step, one that gets only one component right at most 1/2,
the best policy 1 (return 8).

``FwrlMultiMatchFlat-v0`` (actions ``Discrete(5)``, the same number of logits) and
``FwrlMultiMatchSwapped-v0`` (actions ``MultiDiscrete([2, 3])``) have the same
observation space and another action layout: a multi-task set with either is refused.
"""

import gymnasium as gym
import numpy as np
from gymnasium import spaces

NVEC = (3, 2)
LENGTH = 8


class MatchEnv(gym.Env):
    """Reward 1 when the action equals the observed target in every component."""

    def __init__(self, action_space=None):
        self.nvec = np.array(NVEC)
        self.observation_space = spaces.MultiDiscrete(NVEC)
        self.action_space = action_space if action_space is not None else spaces.MultiDiscrete(NVEC)
        self.t = 0
        self.target = np.zeros(len(NVEC), np.int64)

    def _new_target(self):
        self.target = self.np_random.integers(0, self.nvec)
        return self.target.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._new_target(), {}

    def step(self, action):
        # the wrapper hands a MultiDiscrete env one numpy int row per env
        if not (isinstance(action, np.ndarray) and action.shape == (len(NVEC),) and action.dtype.kind in "iu"):
            raise TypeError(f"expected an int array of shape ({len(NVEC)},), got {action!r}")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action} is outside {self.action_space}")
        reward = float(np.array_equal(action, self.target))
        self.t += 1
        return self._new_target(), reward, self.t >= LENGTH, False, {}


class FlatMatchEnv(MatchEnv):
    def __init__(self):
        super().__init__(spaces.Discrete(5))


class SwappedMatchEnv(MatchEnv):
    def __init__(self):
        super().__init__(spaces.MultiDiscrete([2, 3]))


for _id, _entry in (("FwrlMultiMatch-v0", MatchEnv), ("FwrlMultiMatchFlat-v0", FlatMatchEnv),
                    ("FwrlMultiMatchSwapped-v0", SwappedMatchEnv)):
    if _id not in gym.registry:
        gym.register(_id, entry_point=_entry)
