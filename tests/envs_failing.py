"""Envs that misbehave on purpose, for the tests of bad input and of every way a run can end.

Used as ``--env-name tests.envs_failing:<factory>``; the worker processes import this module
by reference. ``FAIL_AFTER_VARIABLE`` sets after how many steps (per env) a misbehaving env
starts to misbehave, and ``PID_DIR_VARIABLE`` a folder where each process that builds an env
leaves its pid.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time

import gymnasium as gym
import numpy as np

from tests.helpers import PID_DIR_VARIABLE

FAIL_AFTER_VARIABLE = "A2C_PPO_TEST_FAIL_AFTER"

LONG_ENV_ID = "LongName" + "x" * 224 + "-v0"  # 235 characters: longer than a file name may be


class TinyEnv(gym.Env):
    """Episodes of 10 steps, ``obs = [t / 10, 1]``, reward 1 for action 1 else 0.

    ``failure``: ``"reward"`` or ``"observation"`` turns that quantity into NaN, ``"raise"``
    raises ValueError, ``"exit"`` calls ``sys.exit``, ``"hang"`` never returns from ``step`` (nor does
    ``"retry"``, which catches whatever ``Exception`` interrupts it and sleeps again), ``"slow"``
    takes 50 ms a step (a slow simulator, not a failure), ``"stuck"`` never
    returns from C code (a mutex locked twice, as a deadlocked simulator), once the env has taken
    ``$A2C_PPO_TEST_FAIL_AFTER`` steps in all.
    """

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, failure: str | None = None) -> None:
        self.failure = failure
        self.fail_after = int(os.environ.get(FAIL_AFTER_VARIABLE, "1000000000"))
        self.t = 0
        self.total_steps = 0
        pid_dir = os.environ.get(PID_DIR_VARIABLE)
        if pid_dir:
            open(os.path.join(pid_dir, str(os.getpid())), "w").close()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, 1.0], dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        self.total_steps += 1
        obs = np.array([self.t / 10, 1.0], dtype=np.float32)
        reward = float(action)
        if self.failure is not None and self.total_steps > self.fail_after:
            if self.failure == "raise":
                raise ValueError("the env failed on purpose")
            if self.failure == "exit":
                sys.exit("the env exited on purpose")
            if self.failure == "slow":
                time.sleep(0.05)
                return obs, reward, self.t >= 10, False, {}
            if self.failure == "hang":
                while True:
                    time.sleep(1.0)
            if self.failure == "retry":
                while True:
                    try:
                        time.sleep(1.0)
                    except Exception:  # a simulator's retry loop: "whatever failed, try again"
                        pass
            if self.failure == "stuck":
                libc, mutex = ctypes.CDLL(None), ctypes.create_string_buffer(64)
                libc.pthread_mutex_lock(mutex)
                libc.pthread_mutex_lock(mutex)
            if self.failure == "reward":
                reward = float("nan")
            else:
                obs[0] = np.nan
        return obs, reward, self.t >= 10, False, {}


def tiny_env() -> gym.Env:
    return TinyEnv()


def nan_reward_env() -> gym.Env:
    return TinyEnv("reward")


def nan_observation_env() -> gym.Env:
    return TinyEnv("observation")


def raising_env() -> gym.Env:
    return TinyEnv("raise")


def exiting_env() -> gym.Env:
    return TinyEnv("exit")


def hanging_env() -> gym.Env:
    return TinyEnv("hang")


def retrying_env() -> gym.Env:
    return TinyEnv("retry")


def slow_env() -> gym.Env:
    return TinyEnv("slow")


def stuck_env() -> gym.Env:
    return TinyEnv("stuck")


class _ResetRaises(TinyEnv):
    def reset(self, *, seed=None, options=None):
        raise RuntimeError("the reset failed on purpose")


def raising_reset_env() -> gym.Env:
    return _ResetRaises()


class _ResetGivesNoInfo(TinyEnv):
    """A reset whose info is ``info_kind`` (``None``, a list) rather than a dict."""

    def __init__(self, info_kind: str) -> None:
        super().__init__()
        self.info_kind = info_kind

    def reset(self, *, seed=None, options=None):
        obs, _ = super().reset(seed=seed, options=options)
        return obs, {"none": None, "list": [1]}[self.info_kind]


def reset_info_none_env() -> gym.Env:
    return _ResetGivesNoInfo("none")


def reset_info_list_env() -> gym.Env:
    return _ResetGivesNoInfo("list")


class _ResetGivesAnotherShape(TinyEnv):
    """A first observation one longer than the observation space says."""

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return np.append(obs, 0).astype(obs.dtype), info


def reset_shape_env() -> gym.Env:
    return _ResetGivesAnotherShape()


def not_an_env() -> str:
    return "this is not an env"


def failing_constructor() -> gym.Env:
    raise RuntimeError("the constructor failed on purpose")


def text_observation_env() -> gym.Env:
    """A MiniGrid-like observation with a text part no encoder takes."""
    env = TinyEnv()
    env.observation_space = gym.spaces.Dict(  # type: ignore[assignment]
        {"image": gym.spaces.Box(0, 10, (7, 7, 3), np.uint8), "mission": gym.spaces.Text(20)}
    )
    return env


def sequence_observation_env() -> gym.Env:
    env = TinyEnv()
    env.observation_space = gym.spaces.Sequence(gym.spaces.Discrete(3))  # type: ignore[assignment]
    return env


gym.register(LONG_ENV_ID, entry_point=tiny_env, max_episode_steps=10)


class _ResetHangs(TinyEnv):
    def reset(self, *, seed=None, options=None):
        while True:
            time.sleep(1.0)


def hanging_reset_env() -> gym.Env:
    """Its reset never returns (the first, in the start-up check, too)."""
    return _ResetHangs()


class _ConstructorHangs(TinyEnv):
    def __init__(self) -> None:
        while True:
            time.sleep(1.0)


def hanging_constructor() -> gym.Env:
    return _ConstructorHangs()


#: How many constructions of ``hanging_later_constructor`` in a process return before one hangs.
BUILDS_VARIABLE = "A2C_PPO_TEST_BUILDS"
_builds = 0


def hanging_later_constructor() -> gym.Env:
    """Builds ``$A2C_PPO_TEST_BUILDS`` envs in a process, then hangs: past the start-up check."""
    global _builds
    _builds += 1
    return TinyEnv() if _builds <= int(os.environ[BUILDS_VARIABLE]) else _ConstructorHangs()


class _Endless(TinyEnv):
    def step(self, action):
        obs, reward, _, truncated, info = super().step(action)
        return obs, reward, False, truncated, info


def endless_env() -> gym.Env:
    """Episodes that never end (no time limit either): an evaluation on it never finishes."""
    return _Endless()
