"""Building the pieces of a run from its RunConfig: device, seeds, envs, policy, algorithm.

Shared by training (``train.py``), replay (``enjoy.py``) and validation (``resolve.py``), so
each piece is described by the config in one place.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a2c_ppo.algo import A2C, ACKTR, PPO, KFACOptimizer, make_rmsprop
from a2c_ppo.algo.common import Reducer
from a2c_ppo.algo.hand_gradient import HandGradient
from a2c_ppo.config import RunConfig
from a2c_ppo.envs import make_vec_envs
from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.fastpath import acting_function, fast_mlp
from a2c_ppo.model import Policy, make_policy
from a2c_ppo.observations import empty_obs


def select_device(config: RunConfig) -> torch.device:
    if torch.cuda.is_available() and not config.no_cuda:
        if config.cuda_deterministic:
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_envs(
    config: RunConfig, num_envs: int, device: torch.device, policy: Policy | None = None, **overrides: Any
) -> TorchVecEnv:
    """The vector env ``config`` describes (``overrides`` go to make_vec_envs), as tensors.

    With ``policy`` the layout is the training one: ``--overlap auto`` times the policy's act."""
    timer = None
    if policy is not None and config.overlap == "auto":
        timer = policy_step_timer(policy, device, fast=config.fast_path == "auto")
    kwargs = {
        "overlap": config.overlap if policy is not None else "off",
        "policy_step_s": timer,
        "gamma": config.gamma,
        "norm_obs": config.norm_obs,
        "norm_reward": config.norm_reward,
        "vec_env": config.vec_env,
        "num_workers": config.num_workers,
        "env_timeout": config.env_timeout,
        "action_masks": config.action_masks == "on",
        **overrides,
    }
    return TorchVecEnv(make_vec_envs(config.env_name, num_envs, **kwargs), device)


def make_agent(config: RunConfig, policy: Policy, reducer: Reducer | None = None) -> PPO | A2C | ACKTR:
    """The algorithm object for ``config.algo``; ``reducer`` for data-parallel training."""
    common: dict[str, Any] = {
        "value_loss_coef": config.value_loss_coef,
        "entropy_coef": config.entropy_coef,
        "norm_adv": config.norm_adv,
    }
    if config.algo == "acktr":  # refused under torchrun (distributed.check_algorithm)
        return ACKTR(policy, KFACOptimizer(policy, lr=config.lr), **common)
    if config.algo == "a2c":
        optimizer = make_rmsprop(policy.parameters(), lr=config.lr, eps=config.eps, alpha=config.alpha)
        return A2C(policy, optimizer, max_grad_norm=config.max_grad_norm, reducer=reducer, **common)
    parts = fast_mlp(policy) if config.fast_path == "auto" else None
    return PPO(
        policy,
        gradient=HandGradient(parts) if parts is not None else None,
        lr=config.lr,
        clip_param=config.clip_param,
        ppo_epoch=config.ppo_epoch,
        num_mini_batch=config.num_mini_batch,
        eps=config.eps,
        max_grad_norm=config.max_grad_norm,
        use_clipped_value_loss=config.clip_value_loss,
        target_kl=config.target_kl,
        reducer=reducer,
        **common,
    )


def policy_for(config: RunConfig, observation_space: gym.Space, action_space: gym.Space) -> Policy:
    """The Policy ``config`` describes for these spaces (on the CPU)."""
    return make_policy(
        observation_space,
        action_space,
        hidden_size=config.hidden_size,
        recurrent=config.recurrent_policy,
        rnn_type=config.recurrent_type,
    )


def policy_step_timer(policy: Policy, device: torch.device | str = "cpu", fast: bool = True) -> Callable[[int], float]:
    """``seconds(n)``: the median time of one deterministic act (as the rollout acts) on ``n``
    envs (observations of the policy's space), for the ``auto`` overlap choice of ``make_vec_envs``.

    Deterministic, so that timing draws no random numbers and leaves the run's results alone.
    """
    act = acting_function(policy, deterministic=True, fast=fast)

    def seconds(n: int, repeats: int = 7) -> float:
        obs = empty_obs(policy.obs_space, (n,), device)
        rnn_hxs = torch.zeros(n, policy.recurrent_hidden_state_size, device=device)
        masks = torch.ones(n, 1, device=device)
        times = []
        with torch.inference_mode():
            for _ in range(repeats + 1):
                start = time.perf_counter()
                act(obs, rnn_hxs, masks)
                times.append(time.perf_counter() - start)
        return float(np.median(times[1:]))  # the first call warms caches up

    return seconds
