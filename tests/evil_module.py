"""A module a crafted checkpoint names (``tests.evil_module:make_env``): importing it leaves a
marker file in ``$A2C_PPO_TEST_MARKER_DIR``, so a test can tell whether anything imported it."""

from __future__ import annotations

import os

import gymnasium as gym

MARKER_DIR_VARIABLE = "A2C_PPO_TEST_MARKER_DIR"

if os.environ.get(MARKER_DIR_VARIABLE):
    open(os.path.join(os.environ[MARKER_DIR_VARIABLE], f"imported-{os.getpid()}"), "w").close()


def make_env() -> gym.Env:
    return gym.make("CartPole-v1")
