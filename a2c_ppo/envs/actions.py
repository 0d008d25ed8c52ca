"""Policy actions -> env actions: the layout and offsets a gymnasium action space expects."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def to_env_actions(space: gym.Space, actions: np.ndarray) -> np.ndarray:
    """A batch of env actions from the policy's ``(N, action_dim)`` array.

    Discrete policies count from 0, but ``Discrete(n, start=k)`` and ``MultiDiscrete(nvec,
    start=...)`` envs expect ``k .. k + n - 1``: the start is added here. Discrete actions
    come back as ``(N,)``, others keep their shape; all in the space's dtype.
    """
    if isinstance(space, gym.spaces.Discrete):
        return (actions.reshape(-1) + space.start).astype(space.dtype)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return (actions.reshape(-1, *space.shape) + space.start).astype(space.dtype)
    return actions.astype(space.dtype)
