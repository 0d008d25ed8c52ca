"""Envs for the observation-space and action-mask tests, whose right answers are known.

They live in an importable module so worker processes can unpickle them by reference.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

EPISODE_STEPS = 10


class BitsDictEnv(gym.Env):
    """A Dict observation with a channels-last uint8 image, a float vector and a discrete part,
    each showing one random bit per step (a bright or dark image, a vector of +1 or -1, the
    value 0 or 1). The action names the three bits (MultiDiscrete([2, 2, 2])) and pays the
    fraction it gets right: 10 per episode for a policy that reads every part, about 8.3 for
    one blind to any part, 5 for random actions."""

    observation_space = gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 255, (6, 6, 3), np.uint8),
            "vector": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            "discrete": gym.spaces.Discrete(2),
        }
    )
    action_space = gym.spaces.MultiDiscrete([2, 2, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(np.mean(np.asarray(action) == self.bits))
        self.t += 1
        return self._observe(), reward, False, self.t == EPISODE_STEPS, {}

    def _observe(self) -> dict:
        self.bits = self.np_random.integers(2, size=3)
        image_bit, vector_bit, discrete_bit = (int(bit) for bit in self.bits)
        return {
            "image": np.full((6, 6, 3), 255 * image_bit, np.uint8),
            "vector": np.full(2, 2.0 * vector_bit - 1.0, np.float32),
            "discrete": discrete_bit,
        }


class MaskedChoiceEnv(gym.Env):
    """Four actions, two of them allowed at each step (``info["action_mask"]``, also shown in the
    observation); taking a forbidden one raises. The higher allowed action pays 1."""

    observation_space = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe()

    def step(self, action):
        action = int(action)
        if not self.mask[action]:
            raise ValueError(f"action {action} is forbidden by the mask {self.mask.astype(int).tolist()}")
        reward = float(action == int(np.flatnonzero(self.mask).max()))
        self.t += 1
        obs, info = self._observe()
        return obs, reward, False, self.t == EPISODE_STEPS, info

    def _observe(self) -> tuple[np.ndarray, dict]:
        self.mask = np.zeros(4, np.bool_)
        self.mask[self.np_random.choice(4, 2, replace=False)] = True
        return self.mask.astype(np.float32), {"action_mask": self.mask.copy()}


class MethodMaskEnv(MaskedChoiceEnv):
    """The same task with sb3-contrib's convention: an ``action_masks()`` method, no info."""

    def _observe(self) -> tuple[np.ndarray, dict]:
        obs, _ = super()._observe()
        return obs, {}

    def action_masks(self) -> np.ndarray:
        return self.mask.copy()


class EmptyMaskEnv(MaskedChoiceEnv):
    """Its mask allows no action after the third step."""

    def _observe(self) -> tuple[np.ndarray, dict]:
        obs, info = super()._observe()
        if self.t == 3:
            info["action_mask"][:] = False
        return obs, info
