"""Collecting one rollout: the policy acts, the vector env steps, the storage fills."""

from __future__ import annotations

import torch

from a2c_ppo.envs.torch_env import StepResult, TorchVecEnv
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
    zeros = torch.zeros_like(rollouts.bootstrap_values[0])  # (N, 1): no bootstrap this step
    with torch.inference_mode():  # nothing computed here is differentiated later
        for step in range(rollouts.num_steps):
            value, action, log_prob, rnn_hxs = policy.act(
                rollouts.obs[step], rollouts.recurrent_hidden_states[step], rollouts.masks[step]
            )
            out = envs.step(action)
            terminated, truncated, bootstrap = _ends(policy, out, rnn_hxs, zeros, proper_time_limits)
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


def _ends(
    policy: Policy, out: StepResult, rnn_hxs: torch.Tensor, zeros: torch.Tensor, proper_time_limits: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(terminated, truncated, bootstrap value), each ``(n, 1)``, to store for step ``out``.

    A truncated row bootstraps from V(final_obs), computed with ``rnn_hxs``: the hidden state
    the policy carried out of this step, i.e. the one the episode would have continued with
    (mask 1). Terminated rows, and every row without ``proper_time_limits``, store 0.
    """
    if not proper_time_limits:
        return out.terminated | out.truncated, torch.zeros_like(out.truncated), zeros
    if not len(out.truncated_idx):
        return out.terminated, out.truncated, zeros
    idx = out.truncated_idx
    bootstrap = zeros.clone()
    bootstrap[idx] = policy.get_value(out.final_obs, rnn_hxs[idx], torch.ones(len(idx), 1, device=zeros.device))
    return out.terminated, out.truncated, bootstrap
