"""Envs at the edges of spaces and of the values a step returns, for tests/test_space_edges.py.

``SpacesEnv`` takes its spaces by name (``--env-kwargs '{"observation": "empty_box"}'``) from
``OBSERVATIONS`` and ``ACTIONS``; ``native`` gives two of them as a gymnasium vector env.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

Box, Dict, MultiDiscrete = gym.spaces.Box, gym.spaces.Dict, gym.spaces.MultiDiscrete

OBSERVATIONS = {
    "box": Box(-1.0, 1.0, (3,), np.float32),
    "discrete": gym.spaces.Discrete(3),
    "empty_box": Box(-1.0, 1.0, (0,), np.float32),
    "empty_multidiscrete_part": Dict({"a": Box(-1.0, 1.0, (2,), np.float32), "z": MultiDiscrete(np.zeros(0, int))}),
}
ACTIONS = {
    "discrete": gym.spaces.Discrete(3),
    "empty_box": Box(-1.0, 1.0, (0,), np.float32),
    "empty_multidiscrete": MultiDiscrete(np.zeros(0, int)),
    "square_box": Box(-1.0, 1.0, (2, 2), np.float32),
    "tuple": gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3))),
}


class SpacesEnv(gym.Env):
    """Observations sampled from their space, episodes of 5 steps paying 1 a step."""

    def __init__(self, observation: str = "box", action: str = "discrete") -> None:
        self.observation_space = OBSERVATIONS[observation]
        self.action_space = ACTIONS[action]
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), 1.0, self.t == 5, False, {}


def native(observation: str = "box", action: str = "discrete") -> gym.vector.VectorEnv:
    """Two ``SpacesEnv`` as a same-step vector env of one's own."""
    return SyncVectorEnv([lambda: SpacesEnv(observation, action)] * 2, autoreset_mode=AutoresetMode.SAME_STEP)


class ValuesEnv(SpacesEnv):
    """Steps that return ``reward``, ``terminated`` and ``truncated`` as given (flags given as
    lists as numpy arrays), and the observation ``obs`` where given (else one sampled from the
    space named ``observation``)."""

    def __init__(self, reward: Any = 1.0, terminated: Any = False, truncated: Any = False, obs: Any = "sample",
                 observation: str = "box") -> None:  # fmt: skip
        super().__init__(observation)
        flags = [np.array(flag) if isinstance(flag, list) else flag for flag in (terminated, truncated)]
        self.values = reward, *flags
        self.obs = obs

    def step(self, action):
        obs, _, _, _, info = super().step(action)
        return (obs if self.obs == "sample" else self.obs, *self.values, info)
