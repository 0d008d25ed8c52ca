"""A2C (synchronous advantage actor-critic) and ACKTR (A2C with a K-FAC natural gradient).

Both make exactly one gradient step per rollout over the whole ``T x N`` batch, straight
from the storage's tensors (no minibatch generator), with the optimizer they are given:
a ``FlatRMSprop`` for A2C (``make_rmsprop``), a ``KFACOptimizer`` for ACKTR. A recurrent policy is
evaluated in its sequence mode: the starting hidden state ``(N, H)`` of slot 0 plus the
time-major flattened observations and masks, so the net sees each environment's real sequence.

Loss (same names and definitions as PPO's metrics)::

    policy_loss = -mean(A_t * log pi(a_t | s_t))      A_t = R_t - V_old(s_t), detached
    value_loss  = 0.5 * mean((R_t - V(s_t))^2)
    loss        = policy_loss + value_loss_coef * value_loss - entropy_coef * mean(entropy)

``R_t`` are the storage's returns (GAE or n-step, as the run's flags chose). Advantages
are standardised over the batch only with ``norm_adv`` (off by default for A2C and ACKTR,
as in the original algorithms). A2C with the fast path's MLP policy (``fastpath.py``) computes
the gradient of the same loss by hand (``HandGradient``), as PPO does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from a2c_ppo.algo.common import (
    LOSS_NAMES,
    Reducer,
    average_gradients,
    clip_gradients,
    evaluate_rollout,
    explained_variance,
    finish_metrics,
    rollout_advantages,
)
from a2c_ppo.algo.flat_params import FlatParameters, FlatRMSprop, clip_flat_gradient
from a2c_ppo.algo.hand_gradient import HandGradient
from a2c_ppo.algo.kfac import KFACOptimizer
from a2c_ppo.model import Policy
from a2c_ppo.storage import Minibatch, RolloutStorage


def a2c_losses(
    batch: Minibatch, values: torch.Tensor, log_probs: torch.Tensor, derivatives: bool = False, dist: Any = None
) -> dict[str, torch.Tensor]:
    """The 0-d ``policy_loss`` and ``value_loss`` (see the module docstring) of ``values`` and
    ``log_probs`` (B, 1) against ``batch.returns`` and ``batch.advantages`` (B, 1). With
    ``derivatives`` also ``d_log_probs`` = d policy_loss / d log_probs = -A / B and ``d_values``
    = d value_loss / d values = (V - R) / B, both (B, 1), for the backward pass by hand."""
    error = values - batch.returns
    losses = {"policy_loss": -(batch.advantages * log_probs).mean(), "value_loss": 0.5 * error.pow(2).mean()}
    if derivatives:
        losses["d_log_probs"] = batch.advantages * (-1.0 / len(values))
        losses["d_values"] = error / len(values)
    return losses


class A2C:
    """Advantage actor-critic; ``update(rollouts)`` makes one step of ``optimizer``.

    ``max_grad_norm`` None: no clipping. With a ``reducer`` (data-parallel training) the
    gradient is averaged across ranks before clipping, the advantage statistics are global
    and the metrics are means over ranks (see ``algo.common``). ``gradient``: the hand-written
    backward pass of a fast-path MLP policy (None: autograd).
    """

    def __init__(
        self,
        actor_critic: Policy,
        optimizer: torch.optim.Optimizer | FlatRMSprop,
        *,
        value_loss_coef: float,
        entropy_coef: float,
        max_grad_norm: float | None = 0.5,
        norm_adv: bool = False,
        reducer: Reducer | None = None,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        gradient: HandGradient | None = None,
    ) -> None:
        self.actor_critic = actor_critic
        self.autocast = autocast  # the policy's pass: bf16 mixed precision (precision.py), or none
        self.optimizer = optimizer
        self.value_loss_coef = value_loss_coef
        self.entropy_coef = entropy_coef
        self.max_grad_norm = max_grad_norm
        self.norm_adv = norm_adv
        self.reducer = reducer
        self.params = [p for p in actor_critic.parameters() if p.requires_grad]
        self.gradient = gradient
        # Gradients as views of one buffer, zeroed and clipped as one: the flat optimizer's
        # (make_rmsprop), or one of its own for the hand-written pass, which overwrites them.
        self.flat: FlatParameters | None = None
        if isinstance(optimizer, FlatRMSprop):
            self.flat = optimizer.flat
        elif gradient is not None:
            self.flat = FlatParameters(self.params)

    def _losses(self, rollouts: RolloutStorage) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """0-d losses, and the values (T*N, 1) and log-probs (T*N, 1) they came from."""
        with self.autocast():
            values, dist = evaluate_rollout(self.actor_critic, rollouts)
        values = values.float()
        log_probs, entropy = dist.log_probs(rollouts.actions.reshape(len(values), -1)).float(), dist.entropy().float()
        batch = rollouts.valid_batch(rollout_advantages(rollouts, self.norm_adv, self.reducer).detach())
        rows = rollouts.valid_rows()
        if rows is not None:  # the reset steps of a next-step vector env are no transitions
            values, log_probs, entropy = values[rows], log_probs[rows], entropy[rows]
        losses = a2c_losses(batch, values, log_probs)
        losses["entropy"] = entropy.mean()
        return losses, values, log_probs

    def _step(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Backpropagate the total loss and take the optimizer's step; returns the pre-clip gradient norm."""
        loss = (
            losses["policy_loss"] + self.value_loss_coef * losses["value_loss"] - self.entropy_coef * losses["entropy"]
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return self._apply_gradient()

    def _apply_gradient(self) -> torch.Tensor:
        """Average the gradient over ranks, clip it and take the optimizer's step; the pre-clip norm."""
        if self.reducer is not None:
            average_gradients(self.params, self.reducer)  # this rank has rows: every rank steps
        return self._clip_and_step()

    def _clip_and_step(self) -> torch.Tensor:
        """Clip the gradient and take the optimizer's step; the pre-clip norm."""
        if self.flat is not None:
            grad_norm = clip_flat_gradient(self.flat.grad, self.max_grad_norm)
        else:
            grad_norm = clip_gradients(self.params, self.max_grad_norm)
        self.optimizer.step()
        return grad_norm

    def _metrics(
        self, losses: dict[str, torch.Tensor], grad_norm: torch.Tensor, rollouts: RolloutStorage
    ) -> dict[str, torch.Tensor]:
        metrics = {name: value.detach() for name, value in losses.items()}
        metrics["grad_norm"] = grad_norm
        metrics["explained_variance"] = explained_variance(rollouts.value_preds[:-1], rollouts.returns, rollouts.valid)
        metrics["num_gradient_steps"] = torch.ones((), device=grad_norm.device)
        return metrics

    def update(self, rollouts: RolloutStorage) -> dict[str, float]:
        """One gradient step on the whole rollout; returns its losses, ``grad_norm`` (pre-clip),
        ``explained_variance`` and ``num_gradient_steps`` (1) as floats. A rollout of a
        next-step vector env's reset rows only (one step after every env ended) trains nothing:
        no step, losses reported as 0 (under torchrun the step of the other ranks' gradient,
        none where every rank's rollout is such)."""
        if rollouts.trains_on_nothing():
            return finish_metrics(self._without_rows(rollouts), self.reducer)
        if self.gradient is None:
            losses, _, _ = self._losses(rollouts)
            grad_norm = self._step(losses)
        else:
            losses, grad_norm = self._hand_step(rollouts)
        return finish_metrics(self._metrics(losses, grad_norm, rollouts), self.reducer)

    def _without_rows(self, rollouts: RolloutStorage) -> dict[str, torch.Tensor]:
        """An update without a row to train on: no step in one process; under a reducer this
        rank joins the others' collectives (advantage statistics, gradient) with a zero
        gradient, and their step unless no rank had a row. Its metrics: losses 0."""
        zero = torch.zeros((), device=rollouts.rewards.device)
        metrics = {**dict.fromkeys(LOSS_NAMES, zero), "grad_norm": zero, "explained_variance": zero + torch.nan}
        if self.reducer is None:
            return {**metrics, "num_gradient_steps": zero}
        rollout_advantages(rollouts, self.norm_adv, self.reducer)
        if self.flat is not None:  # the buffer the hand-written pass writes into, and its views
            self.flat.zero_grad()
        else:
            self.optimizer.zero_grad(set_to_none=True)
        if not average_gradients(self.params, self.reducer, has_rows=False):
            return {**metrics, "num_gradient_steps": zero}  # no rank had a row: no step anywhere
        metrics["grad_norm"] = self._clip_and_step()
        return {**metrics, "num_gradient_steps": zero + 1}

    def _hand_step(self, rollouts: RolloutStorage) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``_losses`` and ``_step`` with the gradient by hand: the losses and the pre-clip norm."""
        assert self.gradient is not None and self.flat is not None
        batch = rollouts.valid_batch(rollout_advantages(rollouts, self.norm_adv, self.reducer))
        losses = self.gradient.losses(batch, a2c_losses)
        self.gradient.backward(losses, self.value_loss_coef, self.entropy_coef)
        return {name: losses[name] for name in LOSS_NAMES}, self._apply_gradient()


class ACKTR(A2C):
    """A2C whose step is a K-FAC natural gradient with a KL-clipped step size.

    On the optimizer's statistics steps the update first backpropagates a *sampled Fisher
    loss* through the same forward pass: the log-likelihood of the stored actions (they
    were sampled from this very policy, whose parameters have not changed since the
    rollout) plus the log-likelihood of a value target drawn from N(V(s), 1). The
    gradients it yields are distributed as the model's own, so the K-FAC hooks estimate
    the Fisher from them. Then the real loss is backpropagated and the K-FAC step taken.
    No gradient-norm clipping: the KL clip bounds the step instead (``grad_norm`` reports
    the raw gradient's norm). Recurrent policies and data-parallel training are refused.
    """

    def __init__(
        self,
        actor_critic: Policy,
        optimizer: KFACOptimizer,
        *,
        value_loss_coef: float,
        entropy_coef: float,
        norm_adv: bool = False,
        reducer: Reducer | None = None,
    ) -> None:
        if actor_critic.is_recurrent:
            raise ValueError("ACKTR does not support recurrent policies (K-FAC has no factors for GRU layers)")
        if reducer is not None:
            raise ValueError("ACKTR under torchrun needs all-reduced K-FAC factors, which are not implemented")
        super().__init__(
            actor_critic,
            optimizer,
            value_loss_coef=value_loss_coef,
            entropy_coef=entropy_coef,
            max_grad_norm=None,
            norm_adv=norm_adv,
        )
        self.kfac = optimizer

    def update(self, rollouts: RolloutStorage) -> dict[str, float]:
        """Like A2C's, plus ``kl_estimate``: the quadratic KL estimate of the applied (clipped) step."""
        if rollouts.trains_on_nothing():  # (never under torchrun, which ACKTR refuses)
            return finish_metrics({**self._without_rows(rollouts), "kl_estimate": rollouts.rewards.new_zeros(())}, None)
        with self.kfac.recording(self.kfac.wants_stats()):
            losses, values, log_probs = self._losses(rollouts)
        if self.kfac.has_pending_stats():
            noisy_values = values.detach() + torch.randn_like(values)
            fisher_loss = -log_probs.mean() + 0.5 * (values - noisy_values).pow(2).mean()
            self.kfac.accumulate_stats(fisher_loss, rollouts.valid_rows())
        grad_norm = self._step(losses)
        metrics = self._metrics(losses, grad_norm, rollouts)
        metrics["kl_estimate"] = torch.tensor(self.kfac.last_kl, device=grad_norm.device)
        return finish_metrics(metrics, self.reducer)
