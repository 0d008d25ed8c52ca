"""Guards for what envs return: no NaN or infinity, no class outside its space (numpy only, so
env-side code can use them too)."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from a2c_ppo.envs.subproc.protocol import EnvWorkerError
from a2c_ppo.errors import NonFiniteError
from a2c_ppo.spaces import allows_an_action


def check_finite(array: np.ndarray, name: str, *, env_offset: int = 0, source: np.ndarray | None = None) -> None:
    """Raise NonFiniteError naming ``name`` and the env when the float ``array`` ``(n, ...)``
    (rows are envs ``env_offset ..``) holds a NaN or an infinity. ``source``: the env's own
    array that ``array`` is a float32 copy of; where it is finite, its value was beyond
    float32's range (the cast made it infinite) and the message shows it."""
    # The common case in one numpy call: a sum is finite only if every term is (or it overflowed:
    # the rows below then find no culprit).
    if math.isfinite(np.add.reduce(array, axis=None)):
        return
    bad = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))
    if not len(bad):
        return
    row = int(bad[0])
    if source is not None and np.isfinite(source[row]).all():
        article = "an" if name[0] in "aeiou" else "a"
        raise NonFiniteError(
            f"env {env_offset + row} returned {article} {name} beyond float32's range "
            f"({shown(source[row], ~np.isfinite(array[row]))}), in which the agent trains; "
            "scale it down in the environment (or a wrapper)"
        )
    raise NonFiniteError(
        f"env {env_offset + row} returned a non-finite {name} ({shown(array[row])}); "
        "check the environment (or its wrappers) for a division by zero or an overflow"
    )


def shown(value: np.ndarray, wrong: np.ndarray | None = None) -> str:
    """A wrong env value for a message: as Python shows it when small, else its first wrong
    element (``wrong``, a mask of its shape; default: not finite), where it is, and the
    array's shape."""
    if value.size <= 8:
        return str(value.tolist())
    flat = value.reshape(-1)
    first = int(np.flatnonzero(~np.isfinite(flat) if wrong is None else wrong.reshape(-1))[0])
    where = tuple(int(i) for i in np.unravel_index(first, value.shape))
    return f"{flat[first].item()} at {where} of an array of shape {tuple(value.shape)}"


def check_masks(masks: np.ndarray, splits: list[int], skip: np.ndarray | None = None) -> None:
    """Raise EnvWorkerError naming the env when one of a vector env's action masks ``(N, size)``
    allows no action (``spaces.allows_an_action``); rows in ``skip`` (N,) bool are not checked
    (an ended episode's last observation, from which no action is chosen)."""
    allowed = allows_an_action(masks.astype(np.bool_, copy=False), splits)
    if skip is not None:
        allowed |= skip
    if allowed.all():
        return
    row = int(np.flatnonzero(~allowed)[0])
    raise EnvWorkerError(
        f"env {row} gave the action mask {masks[row].astype(np.int8).tolist()}, which allows no action; fix the "
        "env's masks (an episode that has no move left must end)",
        env_index=row,
        worker_index=None,
    )


def class_range(space: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lowest, highest)`` class of a ``Discrete`` or ``MultiDiscrete`` space (arrays of its
    shape), or ``None`` for any other space."""
    if isinstance(space, gym.spaces.Discrete):
        return np.asarray(space.start), np.asarray(space.start + space.n - 1)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return space.start, space.start + space.nvec - 1
    return None


def check_classes(array: np.ndarray, bounds: tuple[np.ndarray, np.ndarray], name: str, *, env_offset: int = 0) -> None:
    """Raise EnvWorkerError naming ``name`` and the env when a class of ``array`` ``(n, ...)``
    (rows are envs ``env_offset ..``) lies outside ``bounds`` (``class_range``): the policy
    one-hot encodes it, and no one-hot holds it."""
    low, high = bounds
    if low.ndim == 0 and array.size:  # a Discrete part: two reductions, its per-step cost
        if low <= array.min() and array.max() <= high:
            return
    outside = (array < low) | (array > high)
    if not outside.any():
        return
    row = int(np.flatnonzero(outside.reshape(len(array), -1).any(axis=1))[0])
    raise EnvWorkerError(
        f"env {env_offset + row} returned {name} {array[row].tolist()}, outside its space's classes "
        f"{low.tolist()}..{high.tolist()}; "
        "fix the env or its observation space",
        env_index=env_offset + row,
        worker_index=None,
    )
