"""Proximal Policy Optimization (clipped surrogate objective).

Per minibatch, with ``r = pi(a|s) / pi_old(a|s)``, ``A`` the advantages and ``eps`` the
clip range::

    policy_loss = -mean(min(r * A, clip(r, 1 - eps, 1 + eps) * A))
    value_loss  = 0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2))
                  (0.5 * mean((V - R)^2) without the clipped value loss)
    loss        = policy_loss + value_loss_coef * value_loss - entropy_coef * mean(entropy)

Each minibatch step runs in this order: zero the gradient, the losses (forward pass and
objective), the gradient, its average over ranks, the norm clip, the optimizer step. A
gradient backend computes the losses and the gradient: ``AutogradGradient`` (any policy,
through ``Policy.evaluate_actions``), or the hand-written ``algo.hand_gradient.HandGradient``
for the fast-path MLP policies (the same maths; ``builders.make_agent`` chooses).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Protocol

import torch

from a2c_ppo.algo.common import (
    Reducer,
    all_mean,
    average_gradients,
    explained_variance,
    finish_metrics,
    rollout_advantages,
)
from a2c_ppo.algo.flat_params import FlatAdam, FlatParameters, clip_flat_gradient
from a2c_ppo.model import Policy
from a2c_ppo.storage import Minibatch, RolloutStorage

LOSS_NAMES = ("policy_loss", "value_loss", "entropy")


def ppo_losses(
    batch: Minibatch,
    values: torch.Tensor,
    log_probs: torch.Tensor,
    clip_param: float,
    clip_value_loss: bool,
    derivatives: bool = False,
) -> dict[str, torch.Tensor]:
    """The minibatch's 0-d policy and value losses (see the module docstring) from the new
    ``values`` and ``log_probs`` (B, 1), and the log-ratio ``log r`` (B, 1) they came from.

    With ``derivatives`` also ``d_log_probs`` = d policy_loss / d log_probs and ``d_values``
    = d value_loss / d values (B, 1), for a backward pass by hand. Where ``min`` / ``max``
    have equal arguments, the derivative is split in halves between them, as torch's is.
    """
    log_ratio = log_probs - batch.old_action_log_probs
    ratio = log_ratio.exp()
    surr1 = ratio * batch.advantages
    surr2 = ratio.clamp(1.0 - clip_param, 1.0 + clip_param) * batch.advantages
    policy_loss = -torch.min(surr1, surr2).mean()
    error = values - batch.returns
    if clip_value_loss:
        delta = values - batch.value_preds
        clipped_error = batch.value_preds + delta.clamp(-clip_param, clip_param) - batch.returns
        squared, clipped_squared = error.pow(2), clipped_error.pow(2)
        value_loss = 0.5 * torch.max(squared, clipped_squared).mean()
    else:
        value_loss = 0.5 * error.pow(2).mean()
    losses = {"policy_loss": policy_loss, "value_loss": value_loss, "log_ratio": log_ratio}
    if not derivatives:
        return losses
    B = len(values)
    # The unclipped term is the min exactly where the ratio is inside the clip range (then
    # the two are equal and each half carries A r) or below the clipped term outside it.
    losses["d_log_probs"] = (surr1 <= surr2) * (ratio * batch.advantages) * (-1.0 / B)
    if clip_value_loss:
        # max's derivative goes to the larger term; the clamp passes it inside its range only.
        weight = (squared > clipped_squared) + 0.5 * (squared == clipped_squared)
        inside = (delta >= -clip_param) & (delta <= clip_param)
        losses["d_values"] = (error * weight + clipped_error * (1.0 - weight) * inside) / B
    else:
        losses["d_values"] = error / B
    return losses


@torch.no_grad()
def ratio_metrics(log_ratio: torch.Tensor, clip_param: float) -> dict[str, torch.Tensor]:
    """0-d means over ``log_ratio`` (any shape): ``approx_kl``, the k3 estimator of KL(old || new)
    (unbiased and always >= 0), and ``clipfrac``, the fraction of ratios outside the clip range."""
    ratio = log_ratio.exp()
    return {
        "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
        "clipfrac": ((ratio - 1.0).abs() > clip_param).float().mean(),
    }


class GradientBackend(Protocol):
    """Computes a minibatch's losses, then (on request) their gradient into the ``.grad``s."""

    def losses(self, batch: Minibatch, objective: functools.partial) -> dict[str, torch.Tensor]: ...

    def backward(self, losses: dict[str, torch.Tensor], value_loss_coef: float, entropy_coef: float) -> None: ...


class AutogradGradient:
    """Losses through ``Policy.evaluate_actions``; the gradient by autograd."""

    def __init__(self, actor_critic: Policy) -> None:
        self.actor_critic = actor_critic

    def losses(self, batch: Minibatch, objective: functools.partial) -> dict[str, torch.Tensor]:
        values, log_probs, entropy, _ = self.actor_critic.evaluate_actions(
            batch.obs, batch.recurrent_hidden_states, batch.masks, batch.actions
        )
        losses = objective(batch, values, log_probs)
        losses["entropy"] = entropy.mean()
        return losses

    def backward(self, losses: dict[str, torch.Tensor], value_loss_coef: float, entropy_coef: float) -> None:
        loss = losses["policy_loss"] + value_loss_coef * losses["value_loss"]
        if entropy_coef:  # at 0 the gradient is the same without the entropy's backward pass
            loss = loss - entropy_coef * losses["entropy"]
        loss.backward()


class PPO:
    """``update(rollouts)`` runs ``ppo_epoch`` epochs of ``num_mini_batch`` minibatches.

    With ``target_kl`` set, the update stops at the first minibatch whose approximate KL
    to the rollout policy exceeds it (that minibatch's step is not taken). With a
    ``reducer`` (data-parallel training) the gradients, advantage statistics, the KL
    decision and the metrics are combined across ranks (see ``algo.common``). ``gradient``:
    the backend (default ``AutogradGradient``).
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
        gradient: GradientBackend | None = None,
    ) -> None:
        self.actor_critic = actor_critic
        self.clip_param = clip_param
        self.ppo_epoch = ppo_epoch
        self.num_mini_batch = num_mini_batch
        self.value_loss_coef = value_loss_coef
        self.entropy_coef = entropy_coef
        self.max_grad_norm = max_grad_norm
        self.norm_adv = norm_adv
        self.target_kl = target_kl
        self.reducer = reducer
        self.objective = functools.partial(ppo_losses, clip_param=clip_param, clip_value_loss=use_clipped_value_loss)
        self.gradient = gradient if gradient is not None else AutogradGradient(actor_critic)
        # One buffer for all parameters: zeroing, clipping and Adam are one op each per minibatch.
        self.flat = FlatParameters(actor_critic.parameters())
        self.optimizer = FlatAdam(self.flat, lr=lr, eps=eps)

    def _minibatches(self, rollouts: RolloutStorage, advantages: torch.Tensor) -> Iterator[Minibatch]:
        """Every epoch's minibatches, in order."""
        if self.actor_critic.is_recurrent:
            return rollouts.recurrent_generator(advantages, self.num_mini_batch, num_epochs=self.ppo_epoch)
        return rollouts.feed_forward_generator(advantages, self.num_mini_batch, num_epochs=self.ppo_epoch)

    def losses(self, batch: Minibatch) -> dict[str, torch.Tensor]:
        """The minibatch's 0-d ``policy_loss``, ``value_loss``, ``entropy`` and its ``log_ratio`` (B, 1)."""
        return self.gradient.losses(batch, self.objective)

    def _kl_exceeded(self, log_ratio: torch.Tensor) -> bool:
        """Whether the (rank-averaged) KL crossed ``target_kl``: the update's only per-minibatch sync."""
        if self.target_kl is None:
            return False
        approx_kl = ratio_metrics(log_ratio, self.clip_param)["approx_kl"]
        return all_mean(approx_kl, self.reducer).item() > self.target_kl

    def update(self, rollouts: RolloutStorage) -> dict[str, float]:
        """One PPO update. Returns floats: the losses (means over the minibatches evaluated, with
        ``target_kl`` the one that crossed the limit too, though its step is not taken),
        ``approx_kl`` and ``clipfrac`` (over every sample evaluated), ``grad_norm`` (pre-clip,
        mean over the gradient steps), ``explained_variance`` and ``num_gradient_steps``."""
        advantages = rollout_advantages(rollouts, self.norm_adv, self.reducer)
        # Kept as tensors and reduced once: one host sync per update, not per minibatch.
        loss_values: list[torch.Tensor] = []  # (3,): policy loss, value loss, entropy
        log_ratios: list[torch.Tensor] = []
        grad_norm_sum = torch.zeros((), device=advantages.device)
        num_steps = 0
        for batch in self._minibatches(rollouts, advantages):
            self.flat.zero_grad()  # also re-attaches the flat views a backend writes into
            losses = self.losses(batch)
            loss_values.append(torch.stack([losses[name].detach() for name in LOSS_NAMES]))
            log_ratios.append(losses["log_ratio"].detach())
            if self._kl_exceeded(log_ratios[-1]):
                break
            self.gradient.backward(losses, self.value_loss_coef, self.entropy_coef)
            if self.reducer is not None:
                average_gradients([self.flat.data], self.reducer)
            grad_norm_sum = grad_norm_sum + clip_flat_gradient(self.flat.grad, self.max_grad_norm)
            self.optimizer.step()
            num_steps += 1
        metrics = dict(zip(LOSS_NAMES, torch.stack(loss_values).mean(0)))
        metrics.update(ratio_metrics(torch.cat(log_ratios), self.clip_param))
        metrics["grad_norm"] = grad_norm_sum / max(num_steps, 1)
        metrics["explained_variance"] = explained_variance(rollouts.value_preds[:-1], rollouts.returns)
        metrics["num_gradient_steps"] = torch.tensor(float(num_steps), device=advantages.device)
        return finish_metrics(metrics, self.reducer)
