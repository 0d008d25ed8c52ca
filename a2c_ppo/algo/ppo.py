"""Proximal Policy Optimization (clipped surrogate objective)."""

from __future__ import annotations

import torch
import torch.nn as nn

from a2c_ppo.algo.common import explained_variance, rollout_advantages
from a2c_ppo.model import Policy
from a2c_ppo.storage import Minibatch, RolloutStorage


class PPO:
    """``update(rollouts)`` runs ``ppo_epoch`` epochs of ``num_mini_batch`` minibatches.

    With ``target_kl`` set, the update stops at the first minibatch whose approximate KL
    to the rollout policy exceeds it (that minibatch's step is not taken).
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
        self.optimizer = torch.optim.Adam(actor_critic.parameters(), lr=lr, eps=eps)

    def _minibatches(self, rollouts: RolloutStorage, advantages: torch.Tensor):
        if self.actor_critic.is_recurrent:
            return rollouts.recurrent_generator(advantages, self.num_mini_batch)
        return rollouts.feed_forward_generator(advantages, self.num_mini_batch)

    def _losses(self, batch: Minibatch) -> dict[str, torch.Tensor]:
        values, log_probs, entropy, _ = self.actor_critic.evaluate_actions(
            batch.obs, batch.recurrent_hidden_states, batch.masks, batch.actions
        )
        log_ratio = log_probs - batch.old_action_log_probs
        ratio = log_ratio.exp()
        surr1 = ratio * batch.advantages
        surr2 = ratio.clamp(1.0 - self.clip_param, 1.0 + self.clip_param) * batch.advantages
        policy_loss = -torch.min(surr1, surr2).mean()
        if self.use_clipped_value_loss:
            values_clipped = batch.value_preds + (values - batch.value_preds).clamp(-self.clip_param, self.clip_param)
            value_loss = (
                0.5 * torch.max((values - batch.returns).pow(2), (values_clipped - batch.returns).pow(2)).mean()
            )
        else:
            value_loss = 0.5 * (batch.returns - values).pow(2).mean()
        with torch.no_grad():
            # k3 estimator of KL(old || new): unbiased and always >= 0.
            approx_kl = ((ratio - 1.0) - log_ratio).mean()
            clipfrac = ((ratio - 1.0).abs() > self.clip_param).float().mean()
        return {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy.mean(),
            "approx_kl": approx_kl,
            "clipfrac": clipfrac,
        }

    def update(self, rollouts: RolloutStorage) -> dict[str, float]:
        """One PPO update; returns means over all minibatches evaluated (with ``target_kl``,
        the one that crossed the limit too, though its step is not taken)."""
        advantages = rollout_advantages(rollouts, self.norm_adv)
        totals: dict[str, torch.Tensor] = {}
        num_evaluated, num_steps = 0, 0
        kl_exceeded = False
        for _ in range(self.ppo_epoch):
            for batch in self._minibatches(rollouts, advantages):
                losses = self._losses(batch)
                # Summed as tensors: one device sync per update, not per minibatch.
                for name, value in losses.items():
                    totals[name] = totals.get(name, 0.0) + value.detach()
                num_evaluated += 1
                if self.target_kl is not None and losses["approx_kl"].item() > self.target_kl:
                    kl_exceeded = True
                    break
                loss = (
                    losses["policy_loss"]
                    + self.value_loss_coef * losses["value_loss"]
                    - self.entropy_coef * losses["entropy"]
                )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.actor_critic.parameters(), self.max_grad_norm)
                self.optimizer.step()
                num_steps += 1
            if kl_exceeded:
                break
        metrics = {name: total.item() / num_evaluated for name, total in totals.items()}
        metrics["explained_variance"] = explained_variance(rollouts.value_preds[:-1], rollouts.returns)
        metrics["num_gradient_steps"] = float(num_steps)
        return metrics
