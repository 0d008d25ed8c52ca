"""A block of envs over its rows of the shared buffers: the code that touches the envs.

The same :class:`EnvBlock` runs in each worker process and, for the ``in_main`` share, in the
main process: ``execute(command, payload)`` is the whole per-command behaviour.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import create_empty_array

from a2c_ppo.envs.subproc.infos import Payload, step_payload
from a2c_ppo.envs.subproc.protocol import CMD_CALL, CMD_RESET, CMD_SET_ATTR, CMD_STEP
from a2c_ppo.envs.subproc.step_values import reward_error
from a2c_ppo.envs.timeouts import close_within

Layout = dict[str, tuple[tuple[int, ...], str]]  # name -> (shape, dtype string)


class SharedBuffers:
    """The shared arrays for all envs (obs, actions, rewards, terminated, truncated): numpy
    views over ``RawArray`` blocks, rebuilt in each worker from the same raws and layout."""

    def __init__(self, raws: dict[str, Any], layout: Layout) -> None:
        self.raws = raws
        self.layout = layout
        self.arrays = {
            name: np.frombuffer(raws[name], dtype=np.dtype(dtype), count=int(np.prod(shape))).reshape(shape)
            for name, (shape, dtype) in layout.items()
        }

    @classmethod
    def allocate(cls, ctx: Any, layout: Layout) -> SharedBuffers:
        raws = {}
        for name, (shape, dtype) in layout.items():
            nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
            raws[name] = ctx.RawArray(ctypes.c_uint8, nbytes)
        return cls(raws, layout)


OBS_PREFIX = "obs:"  # a Dict observation's part KEY lives in the buffer "obs:KEY"


def obs_layout(space: gym.Space, num_envs: int) -> Layout:
    """The shared buffers of ``num_envs`` observations: one (``"obs"``), or one per part of a
    flat Dict (``"obs:KEY"``), each ``(num_envs, *shape)`` in the space's dtype."""
    parts = space.spaces if isinstance(space, gym.spaces.Dict) else {None: space}
    layout = {}
    for key, part in parts.items():
        empty = cast(np.ndarray, create_empty_array(part, n=num_envs, fn=np.zeros))
        layout["obs" if key is None else OBS_PREFIX + key] = (empty.shape, empty.dtype.str)
    return layout


def obs_arrays(arrays: dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
    """The observation buffer(s) among ``arrays``: one array, or a dict by part."""
    if "obs" in arrays:
        return arrays["obs"]
    return {name[len(OBS_PREFIX) :]: array for name, array in arrays.items() if name.startswith(OBS_PREFIX)}


def obs_rows(obs: np.ndarray | dict[str, np.ndarray], start: int, stop: int, copy: bool) -> Any:
    """Rows ``start:stop`` of the observation buffer(s), copied or as views."""
    if isinstance(obs, dict):
        return {key: (a[start:stop].copy() if copy else a[start:stop]) for key, a in obs.items()}
    return obs[start:stop].copy() if copy else obs[start:stop]


def whereabouts(where: np.ndarray | list[int]) -> tuple[int, str]:
    """``where`` cells (env index, phase code) -> (env index, what it is doing)."""
    return int(where[0]), PHASES[int(where[1])]


def spaces_mismatch(index: int, env: gym.Env, spaces: tuple[gym.Space, gym.Space]) -> str | None:
    """Why env ``index`` cannot join a vector env whose envs have ``spaces``, or ``None``."""
    if env.observation_space == spaces[0] and env.action_space == spaces[1]:
        return None
    return (
        f"env {index} has observation space {env.observation_space} and action space {env.action_space}, "
        f"but env 0 has {spaces[0]} and {spaces[1]}; all envs of a vector env must have the same spaces"
    )


#: What a block can be doing, by the code its ``where`` cells hold.
PHASES = ("creating the env", "step", "the autoreset after its episode ended", "reset", "call", "set_attr")
CREATE, STEP, AUTORESET, RESET, CALL, SET_ATTR = range(len(PHASES))
COMMAND_PHASES = {CMD_STEP: STEP, CMD_RESET: RESET, CMD_CALL: CALL, CMD_SET_ATTR: SET_ATTR}


def _put(buffer: np.ndarray, i: int, value: Any, what: str) -> None:
    # Without this check a scalar or (1,) observation would broadcast into the row silently.
    # An array's own shape first: np.shape's dispatch costs more than the check, per env step.
    shape = value.shape if type(value) is np.ndarray else np.shape(value)
    if shape != buffer.shape[1:]:
        raise ValueError(f"env {i} returned {what} of shape {shape}, but its space has shape {buffer.shape[1:]}")
    try:
        buffer[i] = value
    except (TypeError, ValueError, OverflowError):  # numpy's words ("int() argument must be ...") name neither
        raise ValueError(
            f"env {i} returned {what} {value!r}, not a number of its space's dtype {buffer.dtype}"
        ) from None


def _check_info(i: int, info: Any, what: str) -> None:
    """Called where ``info`` is not exactly a dict (a test per env step, no call): it is merged
    into the vector env's infos, where another type would fail far from the env."""
    if not isinstance(info, dict):
        raise ValueError(f"env {i} returned the info {info!r} from {what}; an env's info is a dict ({{}} for none)")


class EnvBlock:
    """Envs ``lo .. lo + len(envs) - 1``; they read actions from and write results into their
    rows of ``arrays`` (global env indices). ``where`` (2,) int64 holds the index of the env
    being worked on and the code of what it is doing (``PHASES``), so that whoever catches an
    exception can name the env; for a worker the cells live in shared memory, so that the main
    process can name the env of a worker that stopped answering. Without ``step_infos`` a
    step's info reaches the vector env only where the step ends an episode."""

    def __init__(
        self,
        lo: int,
        arrays: dict[str, np.ndarray],
        spaces: tuple[gym.Space, gym.Space],
        where: np.ndarray | list[int] | None = None,
        step_infos: bool = True,
    ) -> None:
        self.lo = lo
        self.step_infos = step_infos
        self.envs: list[gym.Env] = []
        self.spaces = spaces
        self.obs, self.actions = obs_arrays(arrays), arrays["actions"]
        self.rewards, self.terminated, self.truncated = arrays["rewards"], arrays["terminated"], arrays["truncated"]
        # A list in this process: a numpy cell costs twice as much to write, once per env step.
        self.where: np.ndarray | list[int] = where if where is not None else [0, 0]
        self.where[:] = (lo, CREATE)

    def whereabouts(self) -> tuple[int, str]:
        """(env index, what it is doing)."""
        return whereabouts(self.where)

    @property
    def hi(self) -> int:
        return self.lo + len(self.envs)

    def build(self, env_fns: Sequence[Callable[[], gym.Env]]) -> None:
        """Construct the envs one by one (each is kept at once, so ``close`` closes it)."""
        for fn in env_fns:
            index = self.lo + len(self.envs)
            self.where[:] = (index, CREATE)
            env = fn()
            self.envs.append(env)
            problem = spaces_mismatch(index, env, self.spaces)
            if problem:
                raise RuntimeError(problem)

    def execute(self, cmd: bytes, payload: Any) -> Any:
        """Run one protocol command; its result (``None``: nothing to send back)."""
        if cmd == CMD_STEP:
            start, stop = (self.lo, self.hi) if payload is None else payload
            return self.step(start, stop)
        if cmd == CMD_RESET:
            return self.reset(*payload)
        if cmd == CMD_CALL:
            return self.call(*payload)
        if cmd == CMD_SET_ATTR:
            self.set_attr(*payload)
            return None
        raise RuntimeError(f"unknown command {cmd!r}")

    def _put_obs(self, i: int, obs: Any) -> None:
        if isinstance(self.obs, dict):
            if not isinstance(obs, dict) or obs.keys() != self.obs.keys():
                raise ValueError(
                    f"env {i} returned an observation with parts {sorted(obs) if isinstance(obs, dict) else obs!r}, "
                    f"but its observation space has parts {sorted(self.obs)}"
                )
            for key, buffer in self.obs.items():
                _put(buffer, i, obs[key], f"an observation part {key!r}")
        else:
            _put(self.obs, i, obs, "an observation")

    def step(self, start: int, stop: int) -> Payload | None:
        """Step envs ``start .. stop - 1`` with same-step autoreset; the info payload."""
        actions = self.actions[start:stop].copy()  # the main process may write other rows meanwhile
        plain = None  # (env index, info) of envs that did not finish, with an info
        done = None  # (env index, reset info, final obs, final info) of finished envs
        where = self.where
        for i in range(start, stop):
            where[0] = i
            where[1] = STEP
            env = self.envs[i - self.lo]
            obs, reward, terminated, truncated, info = env.step(actions[i - start])
            if type(info) is not dict:
                _check_info(i, info, "step")
            if terminated or truncated:
                final_obs, final_info = obs, info
                where[1] = AUTORESET
                obs, info = env.reset()
                if type(info) is not dict:
                    _check_info(i, info, "reset")
                done = done or []
                done.append((i, info, final_obs, final_info))
            elif info and self.step_infos:
                plain = plain or []
                plain.append((i, info))
            self._put_obs(i, obs)
            try:
                self.rewards[i] = reward
            except (TypeError, ValueError):  # numpy's words ("setting an array element with a sequence") name neither
                raise reward_error(i, reward) from None
            self.terminated[i] = terminated
            self.truncated[i] = truncated
        return step_payload(plain, done)

    def reset(self, seeds: Sequence[int | None], options: dict | None, mask: np.ndarray | None) -> Payload:
        """Reset the block's envs (those in ``mask``, one entry per env of the block)."""
        plain = []
        for j, env in enumerate(self.envs):
            if mask is not None and not mask[j]:
                continue
            i = self.lo + j
            self.where[:] = (i, RESET)
            obs, info = env.reset(seed=seeds[j], options=options)
            if type(info) is not dict:
                _check_info(i, info, "reset")
            self._put_obs(i, obs)
            self.terminated[i] = False
            self.truncated[i] = False
            plain.append((i, info))
        return plain, []

    def call(self, name: str, args: tuple, kwargs: dict) -> list:
        results = []
        for j, env in enumerate(self.envs):
            self.where[:] = (self.lo + j, CALL)
            attr = env.get_wrapper_attr(name)
            results.append(attr(*args, **kwargs) if callable(attr) else attr)
        return results

    def set_attr(self, name: str, values: Sequence[Any]) -> None:
        for j, env in enumerate(self.envs):
            self.where[:] = (self.lo + j, SET_ATTR)
            env.set_wrapper_attr(name, values[j])

    def close(self) -> None:
        """Close every env, ignoring their errors (this runs on the way out); one whose close
        hangs is left after ``CLOSE_TIMEOUT_S`` (in the main process)."""
        envs, self.envs = self.envs, []
        for env in envs:
            close_within(env)
