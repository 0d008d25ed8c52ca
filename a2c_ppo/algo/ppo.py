"""Proximal Policy Optimization: the clipped surrogate and the KL-penalty objectives.

Per minibatch, with ``r = pi(a|s) / pi_old(a|s)``, ``A`` the advantages and ``eps`` the
clip range (Schulman et al. 2017, sections 3 and 4)::

    clip:        policy_loss = -mean(min(r * A, clip(r, 1 - eps, 1 + eps) * A))
    kl-penalty:  policy_loss = -mean(r * A) + beta * mean(KL[pi_old(.|s) || pi(.|s)])
    value_loss  = 0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2))
                  (0.5 * mean((V - R)^2) without the clipped value loss)
    loss        = policy_loss + value_loss_coef * value_loss - entropy_coef * mean(entropy)

The KL is the exact one (closed form, ``distributions.py``'s ``kl_from``) per state, between
the rollout policy's distribution (computed once per update, before its first step) and the
current one. After each update, with ``d`` the mean of that KL over the batch (all ranks),
``beta`` halves if ``d < kl_target / 1.5`` and doubles if ``d > 1.5 kl_target`` (the paper's
rule; ``kl_target`` 0 keeps it fixed), staying within ``KL_COEF_RANGE``: beyond it the penalty
is already nil or already all of the objective (the advantages are standardised), so a longer
run of halvings (a policy that stops moving: the learning rate's decay) would only delay its
recovery, and at 0.0 (float underflow, or ``--kl-coef 0``) doubling could never bring it back.

Each minibatch step runs in this order: zero the gradient, the losses (forward pass and
objective), the gradient, its average over ranks, the norm clip, the optimizer step. A
gradient backend computes the losses and the gradient: ``AutogradGradient`` (any policy,
through ``Policy.evaluate``), or the hand-written ``algo.hand_gradient.HandGradient``
for the fast-path MLP policies (the same maths; ``builders.make_agent`` chooses).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch

from a2c_ppo.algo.common import (
    LOSS_NAMES,
    Reducer,
    average_flat_gradient,
    evaluate_rollout,
    explained_variance,
    finish_metrics,
    pooled_mean,
    rollout_advantages,
    standardized,
)
from a2c_ppo.algo.flat_params import FlatAdam, FlatParameters, clip_flat_gradient
from a2c_ppo.algo.hand_gradient import HandGradient
from a2c_ppo.model import Policy
from a2c_ppo.storage import Minibatch, RolloutStorage, take_rows

#: Where the adaptive beta stays (see the module docstring): about 2**-20 .. 2**20.
KL_COEF_RANGE = (1e-6, 1e6)


def ppo_losses(
    batch: Minibatch,
    values: torch.Tensor,
    log_probs: torch.Tensor,
    clip_param: float,
    clip_value_loss: bool,
    derivatives: bool = False,
    kl: torch.Tensor | None = None,
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
    value_loss, d_values = _value_loss(batch, values, clip_param, clip_value_loss, derivatives)
    losses = {"policy_loss": policy_loss, "value_loss": value_loss, "log_ratio": log_ratio}
    if not derivatives:
        return losses
    # The unclipped term is the min exactly where the ratio is inside the clip range (then
    # the two are equal and each half carries A r) or below the clipped term outside it.
    losses["d_log_probs"] = (surr1 <= surr2) * (ratio * batch.advantages) * (-1.0 / len(values))
    losses["d_values"] = d_values  # type: ignore[assignment]
    return losses


def kl_penalty_losses(
    batch: Minibatch,
    values: torch.Tensor,
    log_probs: torch.Tensor,
    beta: float,
    clip_param: float,
    clip_value_loss: bool,
    kl: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """As ``ppo_losses`` for the KL-penalty objective (see the module docstring) from each row's
    exact ``kl`` (B,) = KL[pi_old || pi], plus ``kl``, the minibatch's mean of it."""
    assert kl is not None, "the KL penalty needs each row's KL"
    log_ratio = log_probs - batch.old_action_log_probs
    kl = kl.mean()
    policy_loss = -(log_ratio.exp() * batch.advantages).mean() + beta * kl
    value_loss, _ = _value_loss(batch, values, clip_param, clip_value_loss, False)
    return {"policy_loss": policy_loss, "value_loss": value_loss, "log_ratio": log_ratio, "kl": kl}


def _value_loss(
    batch: Minibatch, values: torch.Tensor, clip_param: float, clip_value_loss: bool, derivatives: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The 0-d value loss and (with ``derivatives``) d value_loss / d values (B, 1)."""
    error = values - batch.returns
    if not clip_value_loss:
        return 0.5 * error.pow(2).mean(), error / len(values) if derivatives else None
    delta = values - batch.value_preds
    clipped_error = batch.value_preds + delta.clamp(-clip_param, clip_param) - batch.returns
    squared, clipped_squared = error.pow(2), clipped_error.pow(2)
    value_loss = 0.5 * torch.max(squared, clipped_squared).mean()
    if not derivatives:
        return value_loss, None
    # max's derivative goes to the larger term; the clamp passes it inside its range only.
    weight = (squared > clipped_squared) + 0.5 * (squared == clipped_squared)
    inside = (delta >= -clip_param) & (delta <= clip_param)
    return value_loss, (error * weight + clipped_error * (1.0 - weight) * inside) / len(values)


@torch.no_grad()
def approx_kl_terms(log_ratio: torch.Tensor) -> torch.Tensor:
    """Per sample, the k3 estimator of KL(old || new): ``(r - 1) - log r`` (unbiased, >= 0)."""
    return (log_ratio.exp() - 1.0) - log_ratio


def ratio_metrics(log_ratio: torch.Tensor, clip_param: float) -> dict[str, torch.Tensor]:
    """0-d means over ``log_ratio`` (any shape): ``approx_kl`` (``approx_kl_terms``' mean) and
    ``clipfrac``, the fraction of ratios outside the clip range."""
    ratio = log_ratio.exp()
    return {
        "approx_kl": approx_kl_terms(log_ratio).mean(),
        "clipfrac": ((ratio - 1.0).abs() > clip_param).float().mean(),
    }


class GradientBackend(Protocol):
    """Computes a minibatch's losses, then (on request) their gradient into the ``.grad``s."""

    def losses(self, batch: Minibatch, objective: functools.partial) -> dict[str, torch.Tensor]: ...

    def backward(self, losses: dict[str, torch.Tensor], value_loss_coef: float, entropy_coef: float) -> None: ...


class AutogradGradient:
    """Losses through ``Policy.evaluate``; the gradient by autograd. ``autocast``: the context
    the policy's pass runs in (``precision.autocast``: bf16 mixed precision, or none)."""

    def __init__(
        self, actor_critic: Policy, autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    ) -> None:
        self.actor_critic = actor_critic
        self.autocast = autocast

    def losses(self, batch: Minibatch, objective: functools.partial) -> dict[str, torch.Tensor]:
        with self.autocast():
            values, dist, _ = self.actor_critic.evaluate(batch.obs, batch.recurrent_hidden_states, batch.masks)
        values, log_probs, entropy = values.float(), dist.log_probs(batch.actions).float(), dist.entropy()
        kl = None if batch.old_dist_params is None else dist.kl_from(batch.old_dist_params)
        if batch.transitions is not None:  # a recurrent minibatch's reset rows: stepped through, not trained on
            rows = batch.transitions
            values, log_probs, entropy, kl = values[rows], log_probs[rows], entropy[rows], take_rows(kl, rows)
            batch = batch.loss_rows()
        losses = objective(batch, values, log_probs, kl=kl)
        losses["entropy"] = entropy.float().mean()
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
    the backend (default ``AutogradGradient``). ``variant``: ``"clip"`` or ``"kl-penalty"``
    (with ``kl_coef``, beta's first value, and ``kl_target``; see the module docstring).
    ``norm_adv`` standardises the advantages over the whole rollout of all ranks
    (``norm_adv_scope="rollout"``, ikostrikov's PPO) or over each minibatch on its rank
    (``"minibatch"``, as SB3, CleanRL and Tianshou do: every minibatch's advantages then have
    mean 0, which changes the gradient wherever there are several minibatches).
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
        norm_adv_scope: str = "rollout",
        target_kl: float | None = None,
        reducer: Reducer | None = None,
        gradient: GradientBackend | None = None,
        variant: str = "clip",
        kl_coef: float = 1.0,
        kl_target: float = 0.01,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> None:
        self.actor_critic = actor_critic
        self.clip_param = clip_param
        self.ppo_epoch = ppo_epoch
        self.num_mini_batch = num_mini_batch
        self.value_loss_coef = value_loss_coef
        self.entropy_coef = entropy_coef
        self.max_grad_norm = max_grad_norm
        self.norm_adv = norm_adv
        if norm_adv_scope not in ("rollout", "minibatch"):
            raise ValueError(f"norm_adv_scope must be 'rollout' or 'minibatch', got {norm_adv_scope!r}")
        self.norm_adv_per_minibatch = norm_adv and norm_adv_scope == "minibatch"
        self.target_kl = target_kl
        self.reducer = reducer
        self.clip_value_loss = use_clipped_value_loss
        self.variant, self.kl_coef, self.kl_target = variant, kl_coef, kl_target
        if variant == "kl-penalty" and isinstance(gradient, HandGradient):  # (builders.make_agent never pairs them)
            raise ValueError("the KL penalty's gradient comes from autograd: give PPO no HandGradient with it")
        self.gradient = gradient if gradient is not None else AutogradGradient(actor_critic, autocast)
        # One buffer for all parameters: zeroing, clipping and Adam are one op each per minibatch.
        self.flat = FlatParameters(actor_critic.parameters())
        self.optimizer = FlatAdam(self.flat, lr=lr, eps=eps)

    def _minibatches(self, rollouts: RolloutStorage, advantages: torch.Tensor) -> Iterator[Minibatch]:
        """Every epoch's minibatches, in order."""
        if self.actor_critic.is_recurrent:
            return rollouts.recurrent_generator(advantages, self.num_mini_batch, num_epochs=self.ppo_epoch)
        return rollouts.feed_forward_generator(advantages, self.num_mini_batch, num_epochs=self.ppo_epoch)

    @property
    def objective(self) -> functools.partial:
        """The minibatch objective of this update (the KL penalty's at the current beta)."""
        if self.variant == "kl-penalty":
            return functools.partial(kl_penalty_losses, beta=self.kl_coef, clip_param=self.clip_param,
                                     clip_value_loss=self.clip_value_loss)  # fmt: skip
        return functools.partial(ppo_losses, clip_param=self.clip_param, clip_value_loss=self.clip_value_loss)

    def losses(self, batch: Minibatch) -> dict[str, torch.Tensor]:
        """The minibatch's 0-d ``policy_loss``, ``value_loss``, ``entropy`` and its ``log_ratio`` (V, 1),
        V the rows it trains on (``Minibatch.transitions``; all B of them where that is None)."""
        return self.gradient.losses(batch, self.objective)

    @torch.no_grad()
    def _rollout_kl(self, rollouts: RolloutStorage) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean exact KL[pi_old || pi] over the rows trained on, of all ranks (pi the current
        policy), and their count: 0 rows (only a next-step vector env's reset rows) give 0."""
        _, dist = evaluate_rollout(self.actor_critic, rollouts)
        assert rollouts.dist_params is not None
        kl = dist.kl_from(rollouts.dist_params.reshape(len(dist.params()), -1))
        rows = rollouts.valid_rows()
        return pooled_mean(kl if rows is None else kl[rows], self.reducer, kl.device)

    def _adapt_kl_coef(self, kl: float) -> None:
        """The paper's rule: halve beta below ``kl_target / 1.5``, double it above ``1.5 kl_target``."""
        low, high = KL_COEF_RANGE  # a --kl-coef outside it is not moved further out, nor pulled in
        if self.kl_target > 0 and kl < self.kl_target / 1.5:
            self.kl_coef = max(self.kl_coef / 2.0, min(self.kl_coef, low))
        elif self.kl_target > 0 and kl > self.kl_target * 1.5:
            self.kl_coef = min(max(self.kl_coef * 2.0, low), max(self.kl_coef, high))

    def state_dict(self) -> dict[str, Any]:
        """What an exact resume needs beyond the parameters and the optimizer: the KL penalty's
        beta (the clipped objective has none: a resume with the KL penalty starts from
        ``--kl-coef``)."""
        return {"kl_coef": self.kl_coef} if self.variant == "kl-penalty" else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kl_coef = float(state.get("kl_coef", self.kl_coef))

    def _kl_exceeded(self, log_ratio: torch.Tensor | None) -> bool:
        """Whether the approximate KL of this minibatch's rows, on all ranks, crossed ``target_kl``
        (``log_ratio`` (V, 1), or ``None`` where this rank has no rows in it): the update's only
        per-minibatch sync."""
        if self.target_kl is None:
            return False
        k3 = None if log_ratio is None else approx_kl_terms(log_ratio)
        return pooled_mean(k3, self.reducer, self.flat.data.device)[0].item() > self.target_kl

    def update(self, rollouts: RolloutStorage) -> dict[str, float]:
        """One PPO update. Returns floats: the losses (means over the minibatches evaluated, with
        ``target_kl`` the one that crossed the limit too, though its step is not taken),
        ``approx_kl`` and ``clipfrac`` (over every sample evaluated), ``grad_norm`` (pre-clip,
        mean over the gradient steps), ``explained_variance`` and ``num_gradient_steps``."""
        advantages = rollout_advantages(rollouts, self.norm_adv and not self.norm_adv_per_minibatch, self.reducer)
        if self.variant == "kl-penalty":  # pi_old, before the first step changes the policy
            with torch.no_grad():
                rollouts.dist_params = (
                    evaluate_rollout(self.actor_critic, rollouts)[1].params().reshape(*rollouts.rewards.shape[:2], -1)
                )
        # Kept as tensors and reduced once: one host sync per update, not per minibatch.
        loss_values: list[torch.Tensor] = []  # (3,): policy loss, value loss, entropy
        log_ratios: list[torch.Tensor] = []
        grad_norm_sum = torch.zeros((), device=advantages.device)
        num_steps = 0
        for batch in self._minibatches(rollouts, advantages):
            self.flat.zero_grad()  # also re-attaches the flat views a backend writes into
            if batch.empty:  # only a next-step vector env's reset rows: nothing to train on here
                if self.reducer is None:
                    continue
                if self._kl_exceeded(None):  # the other ranks' collectives, with a zero gradient
                    break
            else:
                if self.norm_adv_per_minibatch:
                    batch = batch._replace(advantages=standardized(batch.advantages, batch.transitions))
                losses = self.losses(batch)
                loss_values.append(torch.stack([losses[name].detach() for name in LOSS_NAMES]))
                log_ratios.append(losses["log_ratio"].detach())
                if self._kl_exceeded(log_ratios[-1]):
                    break
                self.gradient.backward(losses, self.value_loss_coef, self.entropy_coef)
            if self.reducer is not None and not average_flat_gradient(self.flat, self.reducer, not batch.empty):
                continue  # no rank had a row: no step anywhere, as in one process
            grad_norm_sum = grad_norm_sum + clip_flat_gradient(self.flat.grad, self.max_grad_norm)
            self.optimizer.step()
            num_steps += 1
        if not loss_values:  # every minibatch was reset rows only (a tiny rollout): nothing trained
            loss_values, log_ratios = [advantages.new_zeros(len(LOSS_NAMES))], [advantages.new_zeros(1, 1)]
        metrics = dict(zip(LOSS_NAMES, torch.stack(loss_values).mean(0)))
        metrics.update(ratio_metrics(torch.cat(log_ratios), self.clip_param))
        metrics["grad_norm"] = grad_norm_sum / max(num_steps, 1)
        metrics["explained_variance"] = explained_variance(rollouts.value_preds[:-1], rollouts.returns, rollouts.valid)
        metrics["num_gradient_steps"] = torch.tensor(float(num_steps), device=advantages.device)
        if self.variant == "kl-penalty":
            metrics["kl_coef"] = torch.tensor(self.kl_coef, device=advantages.device)  # the beta this update used
            metrics["kl"], kl_rows = self._rollout_kl(rollouts)
        result = finish_metrics(metrics, self.reducer)
        if self.variant == "kl-penalty":
            if kl_rows.item() > 0:  # beta moves on a KL measured on some row
                self._adapt_kl_coef(result["kl"])
            rollouts.dist_params = None
        return result
