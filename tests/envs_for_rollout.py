"""Envs with scripted answers for the TorchVecEnv and rollout tests (importable by workers)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import batch_space


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
    termination. ``index`` is set by the constructor so each env of a vector env differs; so is
    the action space (Discrete(2) unless given), whose action enters the reward as its sum."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)

    def __init__(self, index: int = 0, action_space: gym.Space | None = None) -> None:
        self.action_space = gym.spaces.Discrete(2) if action_space is None else action_space
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
        return self._obs(), self.t + float(np.sum(action)), ended and not truncated, truncated, {}


class HalvesVecEnv(VectorEnv):
    """A test double of a vector env with split-phase stepping (``step_async(actions, envs)``
    / ``step_wait(envs)``) for the two halves ``[0, N // 2)`` and ``[N // 2, N)``, each a
    SyncVectorEnv; ``metadata["overlap"]`` asks for overlapped rollouts. ``reset(seed=s)``
    seeds env ``i`` with ``s + i``, as the other vector envs do."""

    def __init__(self, env_fns: list) -> None:
        n, h = len(env_fns), len(env_fns) // 2
        self.parts = [SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP) for fns in (env_fns[:h], env_fns[h:])]
        self.bounds = [(0, h), (h, n)]
        self.num_envs = n
        self.single_observation_space = self.parts[0].single_observation_space
        self.single_action_space = self.parts[0].single_action_space
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "overlap": True}
        self._pending: dict[tuple[int, int], np.ndarray] = {}

    def reset(self, *, seed=None, options=None):
        parts = [p.reset(seed=None if seed is None else seed + lo)[0] for p, (lo, _) in zip(self.parts, self.bounds)]
        return np.concatenate(parts), {}

    def step_async(self, actions, envs: slice) -> None:
        self._pending[envs.start, envs.stop] = np.array(actions)

    def step_wait(self, envs: slice):
        return self.parts[self.bounds.index((envs.start, envs.stop))].step(self._pending.pop((envs.start, envs.stop)))

    def close_extras(self, **kwargs) -> None:
        for part in self.parts:
            part.close()
