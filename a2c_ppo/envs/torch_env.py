"""The tensor-facing side of a vector env: what the training and replay loops use.

The per-step path is kept lean: actions reach the env as numpy views of the policy's
tensor (a copy only where a dtype or a ``start`` offset needs one); rewards and flags are
written into tensors allocated once; observations are wrapped with ``torch.from_numpy``
when their dtype already fits; infos are only looked at when an episode ended.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv

from a2c_ppo.envs.finite import check_classes, check_finite, class_range
from a2c_ppo.envs.make import episode_stats
from a2c_ppo.observations import Obs, empty_obs, obs_from_numpy, stack_obs

ALL_ENVS = slice(None)


class StepResult(NamedTuple):
    """One vector step (of all envs, or of the block ``envs`` of ``step_wait``), as tensors.

    ``final_obs`` holds the true last observation of each episode that ended by truncation
    this step (rows ``truncated_idx`` of this result): the value of those is bootstrapped.
    The tensors may share memory with buffers that the next ``step`` / ``step_wait`` of the
    same envs overwrites: copy what must outlive it (RolloutStorage.insert does).
    """

    obs: Obs  # (n, *obs_shape) (each part of a Dict), reset obs where an episode ended
    reward: torch.Tensor  # (n, 1) float32, as the agent is trained on (maybe normalised)
    terminated: torch.Tensor  # (n, 1) bool
    truncated: torch.Tensor  # (n, 1) bool, truncated and not terminated
    truncated_idx: torch.Tensor  # (K,) long, rows of this result that were truncated
    final_obs: Obs  # (K, *obs_shape)
    episodes: list[tuple[int, float, int]]  # (env index in the vector env, true return, length)
    # (n, 1) bool: rows that are no transition at all, the reset step of a next-step-autoreset
    # native vector env (see envs/native.py); None when there is none
    dummy: torch.Tensor | None = None


class EnvActionConverter:
    """``convert(actions)``: the policy's ``(N, action_dim)`` tensor -> the env's numpy actions.

    The policy's discrete actions count from 0; ``Discrete(n, start=k)`` and
    ``MultiDiscrete(..., start=s)`` envs get them shifted by their ``start``. The result is a
    view of the tensor's memory wherever the dtype already matches and no offset applies. A
    class rather than a closure so that what holds one (``Agent``) can be pickled.
    """

    __slots__ = ("shape", "dtype", "start", "shifted")

    def __init__(self, space: gym.Space) -> None:
        self.shape, self.dtype = tuple(space.shape or ()), space.dtype
        self.start = np.zeros((), dtype=self.dtype)
        if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
            self.start = np.asarray(space.start, dtype=self.dtype)
        self.shifted = bool(self.start.any())

    def __call__(self, actions: torch.Tensor) -> np.ndarray:
        array = actions.detach().cpu().numpy().reshape(-1, *self.shape).astype(self.dtype, copy=False)
        return array + self.start if self.shifted else array


class _Block(NamedTuple):
    """Views of TorchVecEnv's (host) step buffers for envs ``offset ..`` (made once per block)."""

    offset: int
    obs_np: np.ndarray
    reward_np: np.ndarray
    terminated_np: np.ndarray
    truncated_np: np.ndarray
    obs: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor


class TorchVecEnv:
    """Wraps a gymnasium ``VectorEnv`` (same-step autoreset) to speak torch tensors.

    Raises NonFiniteError (naming the env) when an env returns a NaN or infinite float
    observation or reward. ``step_async`` / ``step_wait`` step one block of envs at a time
    (overlapped stepping, see ``a2c_ppo.rollout``) where the vector env offers them.
    """

    def __init__(self, envs: VectorEnv, device: torch.device | str = "cpu") -> None:
        self.envs = envs
        self.device = torch.device(device)
        # A float64 observation beyond float32's range is refused by check_finite in one
        # paragraph that shows the value, and its one-call sum of huge finite values may
        # overflow (then it looks row by row): numpy's warnings would print above or for nothing.
        # These two modules' only; set here rather than at import, which a caller's
        # ``warnings.catch_warnings`` block around the import would undo.
        warnings.filterwarnings(
            "ignore", "overflow encountered in (cast|reduce)", RuntimeWarning, r"a2c_ppo\.envs\.(torch_env|finite)$"
        )
        self.num_envs = n = envs.num_envs
        self.observation_space = envs.single_observation_space
        self.action_space = envs.single_action_space
        self._to_env_actions = EnvActionConverter(self.action_space)
        self._composite = isinstance(self.observation_space, gym.spaces.Dict)
        # A Dict observation goes through observations.obs_from_numpy; below, one array's fast path.
        obs_shape = () if self._composite else tuple(self.observation_space.shape or ())
        obs_dtype = np.dtype(np.float32 if self._composite else self.observation_space.dtype)
        self._check_obs = np.issubdtype(obs_dtype, np.floating)
        # the class range of each Discrete / MultiDiscrete part (key None: the whole observation)
        space = self.observation_space
        parts = dict(space.spaces) if isinstance(space, gym.spaces.Dict) else {None: space}
        self._classes = {key: bounds for key, part in parts.items() if (bounds := class_range(part)) is not None}
        self._obs_dtype = np.dtype(np.float32) if obs_dtype == np.float64 else obs_dtype
        # Host buffers written every step; the numpy views share their memory.
        self._obs = torch.from_numpy(np.zeros((n, *obs_shape), dtype=self._obs_dtype))
        self._reward = torch.zeros(n, 1)
        self._terminated = torch.zeros(n, 1, dtype=torch.bool)
        self._truncated = torch.zeros(n, 1, dtype=torch.bool)
        self._blocks: dict[tuple[int, int], _Block] = {}
        self._no_idx = torch.zeros(0, dtype=torch.long, device=self.device)
        self._no_final = empty_obs(self.observation_space, (0,), self.device)

    @property
    def supports_blocks(self) -> bool:
        """Whether the vector env can step a block of envs asynchronously (``step_async``)."""
        return all(hasattr(env, "step_wait") for env in (self.envs, self.envs.unwrapped))

    @property
    def overlap(self) -> bool:
        """Whether rollouts use overlapped stepping: ``make_vec_envs`` chose it (recorded as
        ``metadata["overlap"]``), the vector env can step blocks and has two envs or more."""
        return bool(self.envs.metadata.get("overlap", False)) and self.supports_blocks and self.num_envs >= 2

    def _block(self, envs: slice) -> _Block:
        lo, hi, _ = envs.indices(self.num_envs)
        block = self._blocks.get((lo, hi))
        if block is None:
            obs, reward, terminated, truncated = (
                t[lo:hi] for t in (self._obs, self._reward, self._terminated, self._truncated)
            )
            numpy_views = (obs.numpy(), reward.numpy()[:, 0], terminated.numpy()[:, 0], truncated.numpy()[:, 0])
            block = _Block(lo, *numpy_views, obs, reward, terminated, truncated)
            self._blocks[(lo, hi)] = block
        return block

    def _to_device(self, tensor: Any) -> Any:
        return tensor if self.device.type == "cpu" else tensor.to(self.device)

    def _obs_tensor(self, obs: Any, block: _Block) -> Obs:
        """``obs`` as a tensor: the array itself where it fits (no copy), else our buffer."""
        if self._composite:
            tensors = obs_from_numpy(obs, self.observation_space)
            for key, part in obs.items():
                if np.issubdtype(part.dtype, np.floating):  # checked as cast: float64 beyond float32 is inf there
                    assert isinstance(tensors, dict)
                    cast = tensors[key].numpy()
                    check_finite(cast, f"observation part {key!r}", env_offset=block.offset, source=part)
                elif key in self._classes:
                    check_classes(part, self._classes[key], f"observation part {key!r}", env_offset=block.offset)
            return self._to_device(tensors)
        if not self._check_obs and self._classes:
            check_classes(obs, self._classes[None], "observation", env_offset=block.offset)
        if obs.dtype == self._obs_dtype and obs.flags.c_contiguous and obs.flags.writeable:
            if self._check_obs:
                check_finite(obs, "observation", env_offset=block.offset)
            return self._to_device(torch.from_numpy(obs))
        np.copyto(block.obs_np, obs, casting="same_kind")
        if self._check_obs:  # the float32 copy: a float64 value beyond its range is infinite there
            check_finite(block.obs_np, "observation", env_offset=block.offset, source=obs)
        return self._to_device(block.obs)

    def reset(self, seed: int | None = None) -> Obs:
        obs, _ = self.envs.reset(seed=seed)
        return self._obs_tensor(obs, self._block(ALL_ENVS))

    def step(self, actions: torch.Tensor) -> StepResult:
        """Step every env with ``actions`` of shape ``(N, action_dim)`` as the policy produced them."""
        return self._result(self.envs.step(self._to_env_actions(actions)), self._block(ALL_ENVS))

    def step_async(self, actions: torch.Tensor, envs: slice) -> None:
        """Start stepping the envs ``envs`` (a contiguous ``slice(lo, hi)``) with their actions
        ``(hi - lo, action_dim)``; ``step_wait(envs)`` returns the result."""
        self.envs.step_async(self._to_env_actions(actions), envs)  # type: ignore[attr-defined]

    def step_wait(self, envs: slice) -> StepResult:
        """The result of ``step_async(..., envs)``; ``episodes`` name envs by their index in the
        whole vector env, ``truncated_idx`` by their row in this result."""
        return self._result(self.envs.step_wait(envs), self._block(envs))  # type: ignore[attr-defined]

    def _result(self, step: tuple, block: _Block) -> StepResult:
        """The StepResult of the vector env's ``(obs, reward, terminated, truncated, infos)``."""
        obs, reward, terminated, truncated, infos = step
        np.copyto(block.reward_np, reward, casting="same_kind")
        # the float32 copy, as the agent trains on it: a float64 reward beyond its range is infinite there
        check_finite(block.reward_np, "reward", env_offset=block.offset, source=reward)
        np.copyto(block.terminated_np, terminated)
        # truncated and not terminated, in one ufunc (for bools, a > b is a and not b)
        np.greater(truncated, terminated, out=block.truncated_np)
        idx_tensor, final = self._no_idx, self._no_final
        episodes: list[tuple[int, float, int]] = []
        # Infos matter only when an episode ended, and then they are not empty (final_obs).
        if infos and (block.terminated_np.any() or block.truncated_np.any()):
            idx = np.flatnonzero(block.truncated_np)
            if len(idx):
                idx_tensor = torch.from_numpy(idx).to(self.device)
                final = self._to_device(stack_obs([infos["final_obs"][i] for i in idx], self.observation_space))
            episodes = [(block.offset + i, ret, length) for i, ret, length in episode_stats(infos)]
        dummy = infos.get("_reset_step") if infos else None
        return StepResult(
            obs=self._obs_tensor(obs, block),
            reward=self._to_device(block.reward),
            terminated=self._to_device(block.terminated),
            truncated=self._to_device(block.truncated),
            truncated_idx=idx_tensor,
            final_obs=final,
            episodes=episodes,
            dummy=None if dummy is None else self._to_device(torch.from_numpy(np.asarray(dummy)).view(-1, 1)),
        )

    def close(self) -> None:
        self.envs.close()
