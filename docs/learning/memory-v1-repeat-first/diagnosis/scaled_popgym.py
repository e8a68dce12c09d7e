"""Diagnostic: POPGym RepeatFirstEasy with its per-step reward of +-1/51 scaled to +-1."""
import gymnasium as gym
from popgym.envs.repeat_first import RepeatFirstEasy


class ScaledReward(gym.RewardWrapper):
    def __init__(self, env, scale):
        super().__init__(env)
        self.scale = scale

    def reward(self, r):
        return r * self.scale


def make_scaled():
    return ScaledReward(RepeatFirstEasy(), 51.0)


gym.register("ScaledRepeatFirst-v0", entry_point=make_scaled)
