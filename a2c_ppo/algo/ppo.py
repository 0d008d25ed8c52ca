"""Proximal Policy Optimization (clipped surrogate objective).

Per minibatch, with ``r = pi(a|s) / pi_old(a|s)``, ``A`` the advantages and ``eps`` the
clip range::

    policy_loss = -mean(min(r * A, clip(r, 1 - eps, 1 + eps) * A))
    value_loss  = 0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2))
                  (0.5 * mean((V - R)^2) without the clipped value loss)
    loss        = policy_loss + value_loss_coef * value_loss - entropy_coef * mean(entropy)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from a2c_ppo.algo.common import (
    Reducer,
    all_mean,
    average_gradients,
    clip_gradients,
    explained_variance,
    finish_metrics,
    rollout_advantages,
)
from a2c_ppo.algo.optimizers import make_adam
from a2c_ppo.model import Policy
from a2c_ppo.storage import Minibatch, RolloutStorage


def ppo_losses(
    batch: Minibatch, values: torch.Tensor, log_probs: torch.Tensor, clip_param: float, clip_value_loss: bool
) -> dict[str, torch.Tensor]:
    """The minibatch's 0-d policy and value losses (see the module docstring), the k3 KL
    estimate and the fraction of clipped ratios, from the new ``values`` and ``log_probs`` (B, 1)."""
    log_ratio = log_probs - batch.old_action_log_probs
    ratio = log_ratio.exp()
    surr1 = ratio * batch.advantages
    surr2 = ratio.clamp(1.0 - clip_param, 1.0 + clip_param) * batch.advantages
    policy_loss = -torch.min(surr1, surr2).mean()
    if clip_value_loss:
        values_clipped = batch.value_preds + (values - batch.value_preds).clamp(-clip_param, clip_param)
        value_loss = 0.5 * torch.max((values - batch.returns).pow(2), (values_clipped - batch.returns).pow(2)).mean()
    else:
        value_loss = 0.5 * (batch.returns - values).pow(2).mean()
    with torch.no_grad():
        # k3 estimator of KL(old || new): unbiased and always >= 0.
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clipfrac = ((ratio - 1.0).abs() > clip_param).float().mean()
    return {"policy_loss": policy_loss, "value_loss": value_loss, "approx_kl": approx_kl, "clipfrac": clipfrac}


class PPO:
    """``update(rollouts)`` runs ``ppo_epoch`` epochs of ``num_mini_batch`` minibatches.

    With ``target_kl`` set, the update stops at the first minibatch whose approximate KL
    to the rollout policy exceeds it (that minibatch's step is not taken). With a
    ``reducer`` (data-parallel training) the gradients, advantage statistics, the KL
    decision and the metrics are combined across ranks (see ``algo.common``).
    """

    def __init__(
        self,
        actor_critic: Policy,
        *,
        clip_param: float,
        ppo_epoch: int,
        num_mini_batch: int,
        value_loss_coef: float,
        entropy_coef: float,
        lr: float,
        eps: float = 1e-5,
        max_grad_norm: float = 0.5,
        use_clipped_value_loss: bool = True,
        norm_adv: bool = True,
        target_kl: float | None = None,
        reducer: Reducer | None = None,
    ) -> None:
        self.actor_critic = actor_critic
        self.clip_param = clip_param
        self.ppo_epoch = ppo_epoch
        self.num_mini_batch = num_mini_batch
        self.value_loss_coef = value_loss_coef
        self.entropy_coef = entropy_coef
        self.max_grad_norm = max_grad_norm
        self.use_clipped_value_loss = use_clipped_value_loss
        self.norm_adv = norm_adv
        self.target_kl = target_kl
        self.reducer = reducer
        self.params = [p for p in actor_critic.parameters() if p.requires_grad]
        self.optimizer = make_adam(self.params, lr=lr, eps=eps)

    def _minibatches(self, rollouts: RolloutStorage, advantages: torch.Tensor) -> Iterator[Minibatch]:
        """Every epoch's minibatches, in order."""
        if self.actor_critic.is_recurrent:
            return rollouts.recurrent_generator(advantages, self.num_mini_batch, num_epochs=self.ppo_epoch)
        return rollouts.feed_forward_generator(advantages, self.num_mini_batch, num_epochs=self.ppo_epoch)

    def _losses(self, batch: Minibatch) -> dict[str, torch.Tensor]:
        values, log_probs, entropy, _ = self.actor_critic.evaluate_actions(
            batch.obs, batch.recurrent_hidden_states, batch.masks, batch.actions
        )
        losses = ppo_losses(batch, values, log_probs, self.clip_param, self.use_clipped_value_loss)
        losses["entropy"] = entropy.mean()
        return losses

    def _kl_exceeded(self, approx_kl: torch.Tensor) -> bool:
        """Whether the (rank-averaged) KL crossed ``target_kl``: the update's only per-minibatch sync."""
        return self.target_kl is not None and all_mean(approx_kl, self.reducer).item() > self.target_kl

    def update(self, rollouts: RolloutStorage) -> dict[str, float]:
        """One PPO update. Returns floats: means over all minibatches evaluated (with
        ``target_kl``, the one that crossed the limit too, though its step is not taken) of
        the losses, ``approx_kl`` and ``clipfrac``; ``grad_norm`` (pre-clip, mean over the
        gradient steps), ``explained_variance`` and ``num_gradient_steps``."""
        advantages = rollout_advantages(rollouts, self.norm_adv, self.reducer)
        # Summed as tensors: one host sync per update, not per minibatch.
        sums: dict[str, torch.Tensor] = {}
        grad_norm_sum = torch.zeros((), device=advantages.device)
        num_evaluated, num_steps = 0, 0
        for batch in self._minibatches(rollouts, advantages):
            losses = self._losses(batch)
            for name, value in losses.items():
                sums[name] = sums[name] + value.detach() if name in sums else value.detach()
            num_evaluated += 1
            if self._kl_exceeded(losses["approx_kl"]):
                break
            loss = (
                losses["policy_loss"]
                + self.value_loss_coef * losses["value_loss"]
                - self.entropy_coef * losses["entropy"]
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.reducer is not None:
                average_gradients(self.params, self.reducer)
            grad_norm_sum = grad_norm_sum + clip_gradients(self.params, self.max_grad_norm)
            self.optimizer.step()
            num_steps += 1
        metrics = {name: total / num_evaluated for name, total in sums.items()}
        metrics["grad_norm"] = grad_norm_sum / max(num_steps, 1)
        metrics["explained_variance"] = explained_variance(rollouts.value_preds[:-1], rollouts.returns)
        metrics["num_gradient_steps"] = torch.tensor(float(num_steps), device=advantages.device)
        return finish_metrics(metrics, self.reducer)
