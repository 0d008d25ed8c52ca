"""Envs with scripted answers for the TorchVecEnv and rollout tests (importable by workers)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class ActionRecordEnv(gym.Env):
    """The observation is the action the env received (as float32): shows what reached it."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    def __init__(self, action_space: gym.Space) -> None:
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        obs = np.zeros(2, np.float32)
        flat = np.asarray(action, dtype=np.float32).reshape(-1)
        obs[: len(flat)] = flat
        return obs, 0.0, False, False, {}


class BadValueEnv(gym.Env):
    """Returns ``value`` (e.g. NaN) as its ``what`` ("observation" or "reward") at step ``at``."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, what: str = "", at: int = 0, value: float = float("nan")) -> None:
        self.what, self.at, self.value = what, at, value
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(3, self.t, np.float32)
        reward = 1.0
        if self.t == self.at and self.what == "observation":
            obs[1] = self.value
        if self.t == self.at and self.what == "reward":
            reward = self.value
        return obs, reward, False, False, {}


class ScriptedEnv(gym.Env):
    """``obs = [t, 10 * index + 1, seeded noise]`` (float64), reward ``t``; episodes of env
    ``index`` end after ``3 + index`` steps, by truncation when ``index`` is even, else by
    termination. ``index`` is set by the constructor so each env of a vector env differs."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.t = 0
        self.noise = 0.0

    def _obs(self) -> np.ndarray:
        return np.array([self.t, 10 * self.index + 1, self.noise], dtype=np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.noise = float(self.np_random.random())
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        ended = self.t >= 3 + self.index
        truncated = ended and self.index % 2 == 0
        return self._obs(), float(self.t + int(action)), ended and not truncated, truncated, {}
