"""Envs for the ONNX export tests: observations and actions whose layout the exported graph
must name and type as ``Agent.act`` does."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

EPISODE_STEPS = 12


class NestedPartsEnv(gym.Env):
    """A Dict observation holding a Tuple (bits and a float vector): flat parts ``pos``,
    ``t.0`` and ``t.1``, of which ``pos`` and ``t.1`` are normalised; far from zero mean, so
    the normalisation changes what the policy sees."""

    observation_space = gym.spaces.Dict(
        {
            "pos": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
            "t": gym.spaces.Tuple((gym.spaces.MultiBinary(2), gym.spaces.Box(-1.0, 1.0, (2,), np.float32))),
        }
    )
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        self.t += 1
        return self._observe(), float(int(action) == self.t % 3), False, self.t == EPISODE_STEPS, {}

    def _observe(self) -> dict:
        bits = self.np_random.integers(0, 2, 2).astype(np.int8)
        vector = self.np_random.uniform(-1.0, 1.0, 2).astype(np.float32)
        return {"pos": (self.np_random.normal(size=3) * 30 + 50).astype(np.float32), "t": (bits, vector)}


class BinaryActionsEnv(gym.Env):
    """MultiBinary(3) actions (int8, as gymnasium samples them) paying one per bit that matches
    the sign of its observation entry."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.MultiBinary(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.obs = self.np_random.uniform(-1.0, 1.0, 3).astype(np.float32)
        return self.obs, {}

    def step(self, action):
        reward = float(np.sum((self.obs > 0) == (np.asarray(action) > 0)))
        self.t += 1
        self.obs = self.np_random.uniform(-1.0, 1.0, 3).astype(np.float32)
        return self.obs, reward, False, self.t == EPISODE_STEPS, {}
