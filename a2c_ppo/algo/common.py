"""Pieces every algorithm's update shares."""

from __future__ import annotations

import torch

from a2c_ppo.storage import RolloutStorage


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """1 - Var(targets - predictions) / Var(targets); nan when the targets are constant."""
    var_targets = targets.var()
    if var_targets.item() == 0:
        return float("nan")
    return float(1.0 - (targets - predictions).var() / var_targets)


def rollout_advantages(rollouts: RolloutStorage, normalize: bool) -> torch.Tensor:
    """Advantages (T, N, 1) = returns - values, optionally standardised over the batch."""
    advantages = rollouts.returns - rollouts.value_preds[:-1]
    if normalize and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return advantages


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
