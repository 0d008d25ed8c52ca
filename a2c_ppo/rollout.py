"""Collecting one rollout: the policy acts, the vector env steps, the storage fills."""

from __future__ import annotations

import torch

from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.model import Policy
from a2c_ppo.storage import RolloutStorage


def collect_rollout(
    policy: Policy, envs: TorchVecEnv, rollouts: RolloutStorage, proper_time_limits: bool
) -> list[tuple[float, int]]:
    """Fill ``rollouts`` with ``num_steps`` steps of every env, acting from slot 0 on.

    Truncated steps store V(final_obs) to bootstrap from (with ``proper_time_limits``;
    else truncation counts as termination). Returns (true return, length) of the episodes
    that ended.
    """
    episodes: list[tuple[float, int]] = []
    for step in range(rollouts.num_steps):
        with torch.no_grad():
            value, action, log_prob, rnn_hxs = policy.act(
                rollouts.obs[step], rollouts.recurrent_hidden_states[step], rollouts.masks[step]
            )
        out = envs.step(action)
        bootstrap = torch.zeros_like(value)
        terminated, truncated = out.terminated, out.truncated
        if not proper_time_limits:
            terminated, truncated = terminated | truncated, torch.zeros_like(truncated)
        elif len(out.truncated_idx):
            idx = out.truncated_idx
            with torch.no_grad():
                bootstrap[idx] = policy.get_value(out.final_obs, rnn_hxs[idx], torch.ones_like(bootstrap[idx]))
        rollouts.insert(
            obs=out.obs,
            recurrent_hidden_states=rnn_hxs,
            actions=action,
            action_log_probs=log_prob,
            value_preds=value,
            rewards=out.reward,
            terminated=terminated,
            truncated=truncated,
            bootstrap_values=bootstrap,
        )
        episodes.extend((ret, length) for _, ret, length in out.episodes)
    return episodes
