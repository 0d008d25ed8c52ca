"""The tensor-facing side of a vector env: what the training and replay loops use."""

from __future__ import annotations

from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv

from a2c_ppo.envs.make import episode_stats


class StepResult(NamedTuple):
    """One vector step, as tensors on the loop's device.

    ``final_obs`` holds the true last observation of each episode that ended by
    truncation this step (rows of ``truncated_idx``): the value of those is bootstrapped.
    """

    obs: torch.Tensor  # (N, *obs_shape), reset obs where an episode ended
    reward: torch.Tensor  # (N, 1) float32, as the agent is trained on (maybe normalised)
    terminated: torch.Tensor  # (N, 1) bool
    truncated: torch.Tensor  # (N, 1) bool
    truncated_idx: torch.Tensor  # (K,) long, envs that were truncated (not terminated)
    final_obs: torch.Tensor  # (K, *obs_shape)
    episodes: list[tuple[int, float, int]]  # (env index, true return, length) of finished episodes


class TorchVecEnv:
    """Wraps a gymnasium ``VectorEnv`` (same-step autoreset) to speak torch tensors."""

    def __init__(self, envs: VectorEnv, device: torch.device | str = "cpu") -> None:
        self.envs = envs
        self.device = torch.device(device)
        self.num_envs = envs.num_envs
        self.observation_space = envs.single_observation_space
        self.action_space = envs.single_action_space

    def _obs(self, obs: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(obs))
        if tensor.dtype == torch.float64:
            tensor = tensor.float()
        return tensor.to(self.device)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        obs, _ = self.envs.reset(seed=seed)
        return self._obs(obs)

    def _actions(self, actions: torch.Tensor) -> np.ndarray:
        actions = actions.detach().cpu().numpy()
        if isinstance(self.action_space, gym.spaces.Discrete):
            return actions.reshape(-1).astype(self.action_space.dtype)
        return actions.astype(self.action_space.dtype)

    def step(self, actions: torch.Tensor) -> StepResult:
        """Step with ``actions`` of shape ``(N, action_dim)`` as the policy produced them."""
        obs, reward, terminated, truncated, infos = self.envs.step(self._actions(actions))
        truncated_only = np.logical_and(truncated, np.logical_not(terminated))
        idx = np.flatnonzero(truncated_only)
        if len(idx):
            final = np.stack([infos["final_obs"][i] for i in idx])
        else:
            final = np.zeros((0, *self.observation_space.shape), dtype=self.observation_space.dtype)

        def column(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x), dtype=dtype, device=self.device).view(-1, 1)

        return StepResult(
            obs=self._obs(obs),
            reward=column(reward, torch.float32),
            terminated=column(terminated, torch.bool),
            truncated=column(truncated_only, torch.bool),
            truncated_idx=torch.as_tensor(idx, dtype=torch.long, device=self.device),
            final_obs=self._obs(final),
            episodes=episode_stats(infos),
        )

    def close(self) -> None:
        self.envs.close()
