"""Observations as tensors: one tensor, or a ``TensorDict`` of parts for a Dict space.

A Dict observation (``spaces.py``'s flat layout) is a ``TensorDict``: a dict of tensors that
share their leading dimensions, where indexing with anything but a part's name, ``copy_``,
``to`` and ``map`` apply to every part, so storage and loops index it as they index one
tensor. Each part keeps its own dtype: uint8 parts and integer images of at most 32 bits stay
as they are (``IMAGE_DTYPES``; the network converts them at its input), discrete parts are
int64, the action mask bool, everything else float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a2c_ppo.spaces import ACTION_MASK, is_image

#: The integer image dtypes kept as they are (a quarter or half of float32's memory for 8 and 16
#: bits): those that float32 does not outsize and torch indexes on every device. uint16 and
#: uint32 images are stored as float32 (exact for uint16), since CUDA has no indexing kernel
#: for them (``"index_cuda" not implemented for 'UInt16'``), which minibatches need.
IMAGE_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.int8): torch.int8, np.dtype(np.int16): torch.int16,
                np.dtype(np.int32): torch.int32}  # fmt: skip


class TensorDict(dict):
    """Parts of a batch of observations, keyed by name (see the module docstring)."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return dict.__getitem__(self, key)
        return TensorDict({name: value[key] for name, value in self.items()})

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(key, str):
            dict.__setitem__(self, key, value)
            return
        for name, part in self.items():
            part[key] = value[name]

    def copy_(self, other: TensorDict) -> TensorDict:
        for name, part in self.items():
            part.copy_(other[name])
        return self

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> TensorDict:
        return TensorDict({name: fn(part) for name, part in self.items()})

    def to(self, *args: Any, **kwargs: Any) -> TensorDict:
        return self.map(lambda part: part.to(*args, **kwargs))

    def cpu(self) -> TensorDict:
        return self.map(lambda part: part.cpu())


Obs = torch.Tensor | TensorDict


def copy_obs(target: Obs, source: Obs) -> None:
    """``target.copy_(source)``, part by part for a TensorDict."""
    target.copy_(source)  # type: ignore[arg-type]


def map_obs(fn: Callable[[torch.Tensor], torch.Tensor], obs: Obs) -> Obs:
    """``fn`` applied to the observation tensor, or to each part."""
    return obs.map(fn) if isinstance(obs, TensorDict) else fn(obs)


def flatten_steps(obs: Obs) -> Obs:
    """``(T, N, ...)`` -> ``(T * N, ...)`` (every part)."""
    return map_obs(lambda t: t.reshape(t.shape[0] * t.shape[1], *t.shape[2:]), obs)


def part_dtype(space: gym.Space, key: str | None = None) -> torch.dtype:
    """The tensor dtype of an observation part (see the module docstring)."""
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
        return torch.int64
    if isinstance(space, gym.spaces.MultiBinary):
        return torch.bool if key == ACTION_MASK else torch.uint8
    if space.dtype == np.uint8 or (is_image(space) and space.dtype in IMAGE_DTYPES):
        return IMAGE_DTYPES[space.dtype]
    return torch.float32


def obs_layout(space: gym.Space) -> dict[str | None, tuple[tuple[int, ...], torch.dtype]]:
    """``{part: (shape, dtype)}`` of one observation; the single part of a non-Dict space is ``None``."""
    parts = space.spaces if isinstance(space, gym.spaces.Dict) else {None: space}
    return {key: (tuple(part.shape or ()), part_dtype(part, key)) for key, part in parts.items()}


def empty_obs(space: gym.Space, leading: tuple[int, ...], device: torch.device | str = "cpu") -> Obs:
    """Zeros of ``leading + shape`` for every part of ``space``."""
    layout = obs_layout(space)
    tensors = {key: torch.zeros(*leading, *shape, dtype=dtype, device=device) for key, (shape, dtype) in layout.items()}
    return tensors[None] if None in tensors else TensorDict(tensors)


def probe_obs(space: gym.Space, rows: int, device: torch.device | str = "cpu") -> Obs:
    """``rows`` copies of the observation of ``space`` nearest 0 (each part: 0 clipped into a Box's
    bounds, a discrete space's ``start``, an action mask allowing all), for running a policy before
    any env has: zeros can lie outside the space (``Discrete(n, start=1)``), and a sample can be
    huge (a Box bounded by the float32 maximum)."""
    parts = space.spaces if isinstance(space, gym.spaces.Dict) else {None: space}
    arrays: dict[str | None, np.ndarray] = {}
    for key, part in parts.items():
        if isinstance(part, gym.spaces.Box):
            origin = np.clip(np.zeros(part.shape, part.dtype), part.low, part.high)
        elif isinstance(part, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
            origin = np.asarray(part.start)
        else:  # MultiBinary: all 0, but an action mask allows every action
            origin = np.full(tuple(part.shape or ()), key == ACTION_MASK, np.int8)
        arrays[key] = np.repeat(origin[None], rows, axis=0)
    obs = obs_from_numpy(arrays[None] if None in arrays else arrays, space)
    return map_obs(lambda tensor: tensor.to(device), obs)


def obs_from_numpy(obs: Any, space: gym.Space) -> Obs:
    """A numpy batch (an array, or a dict of arrays by part) as tensors of the parts' dtypes,
    sharing memory where the dtype already fits."""
    if not isinstance(obs, dict):
        return _tensor(obs, part_dtype(space))
    assert isinstance(space, gym.spaces.Dict)
    return TensorDict({key: _tensor(obs[key], part_dtype(part, key)) for key, part in space.spaces.items()})


def _tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def stack_obs(observations: list[Any], space: gym.Space) -> Obs:
    """Single observations (arrays, or dicts of arrays) as one batch of tensors."""
    if isinstance(space, gym.spaces.Dict):
        return obs_from_numpy({key: np.stack([o[key] for o in observations]) for key in space.spaces}, space)
    return obs_from_numpy(np.stack(observations), space)
