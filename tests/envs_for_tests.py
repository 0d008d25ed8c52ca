"""Synthetic envs whose right answers are known, for the vector-env and normalisation tests.

They live in an importable module so worker processes can unpickle them by reference.
"""

from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np


class CounterEnv(gym.Env):
    """``obs = [t, noise, last action]``: ``t`` counts steps since reset, ``noise`` is drawn
    from ``np_random`` at reset (so seeding shows). ``reward = t + action``.

    The episode ends by termination at ``terminate_at``, by truncation at ``truncate_at``, or,
    with ``random_length``, after a seeded random 2..8 steps, terminated or truncated at
    random. ``raise_at``: ``step`` raises ``ValueError`` when ``t`` would reach it. Every
    ``info_every`` steps the step info is ``{"t": t}`` (or, by ``info_kind``, numpy scalars,
    types that change with ``t``, or nested dicts, arrays and strings); else it is empty. The
    reset info is ``{"noise": .}``.
    """

    metadata = {"render_modes": ["rgb_array"]}
    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def __init__(
        self,
        terminate_at: int | None = None,
        truncate_at: int | None = None,
        raise_at: int | None = None,
        random_length: bool = False,
        info_every: int = 0,
        info_kind: str = "int",
        render_mode: str | None = None,
    ) -> None:
        self.terminate_at = terminate_at
        self.truncate_at = truncate_at
        self.raise_at = raise_at
        self.random_length = random_length
        self.info_every = info_every
        self.info_kind = info_kind
        self.render_mode = render_mode
        self.t = 0
        self.noise = 0.0
        self.length = 0
        self.ends_by_truncation = False
        self.tag = "default"  # for get_attr / set_attr tests

    def _obs(self, action: float = -1.0) -> np.ndarray:
        return np.array([self.t, self.noise, action], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.noise = float(self.np_random.random())
        if self.random_length:
            self.length = int(self.np_random.integers(2, 9))
            self.ends_by_truncation = bool(self.np_random.integers(2))
        return self._obs(), {"noise": self.noise}

    def step(self, action):
        if self.raise_at is not None and self.t + 1 >= self.raise_at:
            raise ValueError(f"CounterEnv exploded at step {self.t + 1}")
        self.t += 1
        action = int(action)
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        truncated = self.truncate_at is not None and self.t >= self.truncate_at
        if self.random_length and self.t >= self.length:
            truncated = truncated or self.ends_by_truncation
            terminated = terminated or not self.ends_by_truncation
        info = self._info() if self.info_every and self.t % self.info_every == 0 else {}
        return self._obs(float(action)), float(self.t + action), terminated, truncated, info

    def _info(self) -> dict:
        t = self.t
        if self.info_kind == "numpy":  # like MuJoCo's infos
            return {"x": np.float64(t * 0.1), "y": np.float32(t / 3), "n": np.int32(t)}
        if self.info_kind == "mixed":  # the type of a key depends on the step
            return {"t": t, "v": float(t) if t % 2 else np.float32(t)}
        if self.info_kind == "nested":
            return {"t": t, "sub": {"a": t, "b": np.array([t, -t])}, "s": f"step{t}"}
        return {"t": t}

    def render(self):
        return np.full((2, 2, 3), self.t, dtype=np.uint8)

    def describe(self, prefix: str) -> str:
        return f"{prefix}:{self.t}"


class FailingInitEnv(CounterEnv):
    """An env whose constructor raises."""

    def __init__(self) -> None:
        raise RuntimeError("FailingInitEnv cannot be built")


class SleepyEnv(CounterEnv):
    """``step`` sleeps ``sleep_s`` seconds (a stand-in for a hung or very slow env)."""

    def __init__(self, sleep_s: float = 60.0) -> None:
        super().__init__()
        self.sleep_s = sleep_s

    def step(self, action):
        time.sleep(self.sleep_s)
        return super().step(action)


class HangsInWorkerEnv(CounterEnv):
    """Its constructor never returns in any process but ``main_pid`` (a worker's env that hangs
    as it is built; the main process reads the spaces from one of its own)."""

    def __init__(self, main_pid: int) -> None:
        super().__init__()
        while os.getpid() != main_pid:
            time.sleep(1.0)


class HangingCloseEnv(CounterEnv):
    """``close`` never returns (a simulator that will not shut down)."""

    def close(self):
        while True:
            time.sleep(1.0)


class SpinningEnv(CounterEnv):
    """``step`` keeps the CPU busy ``spin_s`` seconds (work per env that cannot sleep past its time)."""

    def __init__(self, spin_s: float) -> None:
        super().__init__()
        self.spin_s = spin_s

    def step(self, action):
        end = time.perf_counter() + self.spin_s
        while time.perf_counter() < end:
            pass
        return super().step(action)


class ImageEnv(gym.Env):
    """uint8 image observations ``(3, 8, 8)`` (its space's shape) filled with ``t`` (mod 256); ends at ``t == 5``."""

    observation_space = gym.spaces.Box(0, 255, (3, 8, 8), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = int(self.np_random.integers(0, 100))
        return np.full(self.observation_space.shape, self.t % 256, dtype=np.uint8), {}

    def step(self, action):
        self.t += 1 + int(action)
        obs = np.full(self.observation_space.shape, self.t % 256, dtype=np.uint8)
        return obs, 1.0, self.t % 5 == 0, False, {}


class DiscreteObsEnv(gym.Env):
    """``Discrete(7)`` observations (``t % 7``), truncated every 4 steps."""

    observation_space = gym.spaces.Discrete(7)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = int(self.np_random.integers(0, 7))
        self.n = 0
        return self.t % 7, {}

    def step(self, action):
        self.t += 1 + int(action)
        self.n += 1
        return self.t % 7, 0.0, False, self.n % 4 == 0, {}


class ActionEchoEnv(gym.Env):
    """Echoes the action it got, flattened to float32, as the observation. Any action space."""

    def __init__(self, action_space: gym.Space) -> None:
        self.action_space = action_space
        if isinstance(action_space, gym.spaces.Discrete):
            self.size = int(action_space.n)
        else:
            self.size = int(np.prod(action_space.shape))
        size = self.size
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.action_space.seed(seed)
        return np.zeros(self.size, np.float32), {}

    def step(self, action):
        if isinstance(self.action_space, gym.spaces.Discrete):
            obs = np.zeros(self.size, np.float32)
            obs[int(action)] = 1.0
        else:
            obs = np.asarray(action, dtype=np.float32).reshape(-1)
        return obs, float(obs.sum()), False, False, {}


class ConstantEnv(gym.Env):
    """Known observations and rewards for the normalisation tests.

    ``obs[t] = base + t * scale`` (a fixed vector per env), ``reward[t] = reward_scale * (t + 1)``;
    the episode is truncated after ``length`` steps.
    """

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, base: float = 0.0, length: int = 5, reward_scale: float = 1.0) -> None:
        self.base = base
        self.length = length
        self.reward_scale = reward_scale
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.base + self.t, self.base - 2.0 * self.t], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), self.reward_scale * self.t, False, self.t >= self.length, {}


class ModulesEnv(CounterEnv):
    """A CounterEnv that tells which modules its process has imported."""

    def has_module(self, name: str) -> bool:
        import sys

        return name in sys.modules


class BadObsEnv(CounterEnv):
    """Box(3,) observations, but ``step`` returns ``bad`` (e.g. a scalar or shape (1,)) instead."""

    def __init__(self, bad: object = 0.0) -> None:
        super().__init__()
        self.bad = bad

    def step(self, action):
        _, reward, terminated, truncated, info = super().step(action)
        return self.bad, reward, terminated, truncated, info


class BadRewardEnv(CounterEnv):
    """``step`` returns its reward as an array of shape (1,), as a simulator's sum may come."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, np.array([reward]), terminated, truncated, info


class NoInfoEnv(CounterEnv):
    """Episodes of 2 steps whose info is ``None`` where ``where`` says: ``"step"``, or
    ``"autoreset"`` (every reset but the first)."""

    def __init__(self, where: str) -> None:
        super().__init__(terminate_at=2)
        self.where, self.resets = where, 0

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        self.resets += 1
        return obs, None if self.where == "autoreset" and self.resets > 1 else info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, None if self.where == "step" else info


class StrictActionEnv(gym.Env):
    """Refuses actions outside ``action_space`` (which may have a start); echoes the action."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    def __init__(self, action_space: gym.Space) -> None:
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        flat = np.asarray(action, dtype=np.float32).reshape(-1)
        return np.resize(flat, 2).astype(np.float32), 0.0, False, False, {}


# Entry points for "tests.envs_for_tests:NAME" env ids that check_env_id must refuse.


def not_an_env():
    return {"observation": 0}


def raising_env():
    raise OSError("the simulator license file is missing")


class ChannelsLastEnv(ImageEnv):
    observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)


class RGBEnv(gym.Env):
    """Channels-last RGB frames ``(12, 16, 3)``: channel ``c`` holds ``t + 10 c``; ``reward = t``;
    ends at ``t == 4``."""

    observation_space = gym.spaces.Box(0, 255, (12, 16, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def _frame(self) -> np.ndarray:
        return np.broadcast_to(np.array([self.t, self.t + 10, self.t + 20], np.uint8), (12, 16, 3)).copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        return self._frame(), float(self.t), self.t == 4, False, {}


class InPlaceRGBEnv(RGBEnv):
    """``RGBEnv`` returning the same array every step, changed in place (as some envs do)."""

    def _frame(self) -> np.ndarray:
        if not hasattr(self, "buffer"):
            self.buffer = np.zeros((12, 16, 3), np.uint8)
        self.buffer[...] = [self.t, self.t + 10, self.t + 20]
        return self.buffer


class DictObsEnv(CounterEnv):
    observation_space = gym.spaces.Dict({"position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)})

    def reset(self, *, seed=None, options=None):
        _, info = super().reset(seed=seed, options=options)
        return {"position": np.zeros(2, np.float32)}, info

    def step(self, action):
        _, *rest = super().step(action)
        return {"position": np.zeros(2, np.float32)}, *rest


def random_counter():
    """A CounterEnv whose episodes end at seeded random times, with infos (for snapshots)."""
    return CounterEnv(random_length=True, info_every=2, info_kind="nested")


def counter_with_step_infos():
    """A CounterEnv whose episodes end at seeded random times, with MuJoCo-like infos every step."""
    return CounterEnv(random_length=True, info_every=1, info_kind="numpy")


class LockedEnv(CounterEnv):
    """Holds an object no snapshot can capture."""

    def __init__(self) -> None:
        import threading

        super().__init__()
        self.lock = threading.Lock()


def thousandfold_cartpole():
    """CartPole-v1 paying 1000 per step: a learner that sees this reward has huge value losses."""
    return gym.wrappers.TransformReward(gym.make("CartPole-v1"), lambda reward: 1000.0 * reward)
