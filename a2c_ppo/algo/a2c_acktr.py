"""A2C (synchronous advantage actor-critic) and ACKTR (A2C with a K-FAC natural gradient).

Both make exactly one gradient step per rollout over the whole ``T x N`` batch, straight
from the storage's tensors (no minibatch generator). A recurrent policy is evaluated in
its sequence mode: the starting hidden state ``(N, H)`` of slot 0 plus the time-major
flattened observations and masks, so the net sees each environment's real sequence.

Loss (same names and definitions as PPO's metrics)::

    policy_loss = -mean(A_t * log pi(a_t | s_t))      A_t = R_t - V_old(s_t), detached
    value_loss  = 0.5 * mean((R_t - V(s_t))^2)
    loss        = policy_loss + value_loss_coef * value_loss - entropy_coef * mean(entropy)

``R_t`` are the storage's returns (GAE or n-step, as the run's flags chose). Advantages
are standardised over the batch only with ``norm_adv`` (off by default for A2C and ACKTR,
as in the original algorithms).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from a2c_ppo.algo.common import explained_variance, rollout_advantages
from a2c_ppo.algo.kfac import KFACOptimizer
from a2c_ppo.model import Policy
from a2c_ppo.storage import RolloutStorage


def evaluate_rollout(actor_critic: Policy, rollouts: RolloutStorage) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Values (T*N, 1), log-probs of the stored actions (T*N, 1) and entropies (T*N,).

    Rows are time-major: row ``t * N + n`` is step ``t`` of environment ``n``.
    """
    T, N = rollouts.rewards.shape[:2]
    obs = rollouts.obs[:-1].reshape(T * N, *rollouts.obs.shape[2:])
    masks = rollouts.masks[:-1].reshape(T * N, 1)
    if actor_critic.is_recurrent:
        # Sequence mode: the hidden state at t=0 for every env, inputs time-major flattened.
        rnn_hxs = rollouts.recurrent_hidden_states[0]
    else:
        rnn_hxs = rollouts.recurrent_hidden_states[:-1].reshape(T * N, -1)
    actions = rollouts.actions.reshape(T * N, -1)
    values, log_probs, entropy, _ = actor_critic.evaluate_actions(obs, rnn_hxs, masks, actions)
    return values, log_probs, entropy


class A2C:
    """Advantage actor-critic with RMSprop; ``update(rollouts)`` makes one gradient step."""

    def __init__(
        self,
        actor_critic: Policy,
        *,
        value_loss_coef: float,
        entropy_coef: float,
        lr: float,
        eps: float = 1e-5,
        alpha: float = 0.99,
        max_grad_norm: float | None = 0.5,
        norm_adv: bool = False,
    ) -> None:
        self.actor_critic = actor_critic
        self.value_loss_coef = value_loss_coef
        self.entropy_coef = entropy_coef
        self.max_grad_norm = max_grad_norm
        self.norm_adv = norm_adv
        self.optimizer: torch.optim.Optimizer = self._make_optimizer(lr=lr, eps=eps, alpha=alpha)

    def _make_optimizer(self, *, lr: float, eps: float, alpha: float) -> torch.optim.Optimizer:
        return torch.optim.RMSprop(self.actor_critic.parameters(), lr=lr, eps=eps, alpha=alpha)

    def _losses(self, rollouts: RolloutStorage) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        values, log_probs, entropy = evaluate_rollout(self.actor_critic, rollouts)
        advantages = rollout_advantages(rollouts, self.norm_adv).reshape(-1, 1).detach()
        returns = rollouts.returns.reshape(-1, 1)
        losses = {
            "policy_loss": -(advantages * log_probs).mean(),
            "value_loss": 0.5 * (returns - values).pow(2).mean(),
            "entropy": entropy.mean(),
        }
        return losses, values, log_probs

    def _total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return (
            losses["policy_loss"] + self.value_loss_coef * losses["value_loss"] - self.entropy_coef * losses["entropy"]
        )

    def update(self, rollouts: RolloutStorage) -> dict[str, float]:
        """One gradient step on the whole rollout; returns its losses."""
        losses, _, _ = self._losses(rollouts)
        self.optimizer.zero_grad(set_to_none=True)
        self._total_loss(losses).backward()
        if self.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.actor_critic.parameters(), self.max_grad_norm)
        self.optimizer.step()
        return self._metrics(losses, rollouts)

    @staticmethod
    def _metrics(losses: dict[str, torch.Tensor], rollouts: RolloutStorage) -> dict[str, float]:
        metrics = {name: value.item() for name, value in losses.items()}
        metrics["explained_variance"] = explained_variance(rollouts.value_preds[:-1], rollouts.returns)
        metrics["num_gradient_steps"] = 1.0
        return metrics


class ACKTR(A2C):
    """A2C whose step is a K-FAC natural gradient with a KL-clipped step size.

    On the optimizer's statistics steps the update first backpropagates a *sampled Fisher
    loss* through the same forward pass: the log-likelihood of the stored actions (they
    were sampled from this very policy, whose parameters have not changed since the
    rollout) plus the log-likelihood of a value target drawn from N(V(s), 1). The
    gradients it yields are distributed as the model's own, so the K-FAC hooks estimate
    the Fisher from them. Then the real loss is backpropagated and the K-FAC step taken.
    No gradient-norm clipping: the KL clip bounds the step instead.
    Recurrent policies are not supported (arguments.validate refuses them).
    """

    def __init__(
        self,
        actor_critic: Policy,
        *,
        value_loss_coef: float,
        entropy_coef: float,
        lr: float,
        norm_adv: bool = False,
        momentum: float = 0.9,
        damping: float = 1e-2,
        kl_clip: float = 1e-3,
        stat_decay: float = 0.99,
        stats_interval: int = 1,
        inverse_interval: int = 10,
    ) -> None:
        if actor_critic.is_recurrent:
            raise ValueError("ACKTR does not support recurrent policies (K-FAC has no factors for GRU layers)")
        self._kfac_kwargs = dict(
            momentum=momentum,
            damping=damping,
            kl_clip=kl_clip,
            stat_decay=stat_decay,
            stats_interval=stats_interval,
            inverse_interval=inverse_interval,
        )
        super().__init__(
            actor_critic,
            value_loss_coef=value_loss_coef,
            entropy_coef=entropy_coef,
            lr=lr,
            max_grad_norm=None,
            norm_adv=norm_adv,
        )

    def _make_optimizer(self, *, lr: float, eps: float, alpha: float) -> KFACOptimizer:
        return KFACOptimizer(self.actor_critic, lr=lr, **self._kfac_kwargs)

    def update(self, rollouts: RolloutStorage) -> dict[str, float]:
        optimizer: KFACOptimizer = self.optimizer  # type: ignore[assignment]
        with optimizer.recording(optimizer.wants_stats()):
            losses, values, log_probs = self._losses(rollouts)
        if optimizer.has_pending_stats():
            noisy_values = values.detach() + torch.randn_like(values)
            fisher_loss = -log_probs.mean() + 0.5 * (values - noisy_values).pow(2).mean()
            optimizer.accumulate_stats(fisher_loss)
        self.optimizer.zero_grad(set_to_none=True)
        self._total_loss(losses).backward()
        self.optimizer.step()
        metrics = self._metrics(losses, rollouts)
        metrics["kl_estimate"] = optimizer.last_kl
        return metrics
