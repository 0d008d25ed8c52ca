"""Pieces every algorithm's update shares, including the data-parallel hooks.

With a ``Reducer`` (one per torchrun process group) every rank computes on its own rollout
and the algorithms combine ranks only through ``all_reduce_sum``: gradients (averaged every
minibatch, before clipping, with whether any rank had a row to train on: without, no rank
steps), the advantage statistics, the target-KL decision and the reported metrics. Every
rank's rollout has the same size (the flags guarantee it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn as nn

from a2c_ppo.algo.flat_params import FlatParameters
from a2c_ppo.observations import flatten_steps
from a2c_ppo.storage import RolloutStorage

LOSS_NAMES = ("policy_loss", "value_loss", "entropy")  # every algorithm's reported losses


class Reducer(Protocol):
    """Sums tensors across data-parallel ranks, in place (torch.distributed.all_reduce)."""

    world_size: int

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor: ...


def pooled_mean(
    values: torch.Tensor | None, reducer: Reducer | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """0-d: the mean of ``values`` (any shape; ``None``: none on this rank) over every rank's
    elements, and their count (0 gives a mean of 0). Ranks may hold different numbers of them
    (a next-step vector env's rows): one all-reduce of the sum and the count."""
    if values is None:
        sums = torch.zeros(2, device=device)
    else:
        sums = torch.stack([values.sum(), values.new_full((), float(values.numel()))])
    if reducer is not None:
        sums = reducer.all_reduce_sum(sums)
    return sums[0] / sums[1].clamp(min=1.0), sums[1]


def all_mean(tensor: torch.Tensor, reducer: Reducer | None) -> torch.Tensor:
    """The mean of ``tensor`` over ranks (``tensor`` itself without a reducer)."""
    if reducer is None:
        return tensor
    return reducer.all_reduce_sum(tensor.clone()) / reducer.world_size


def evaluate_rollout(actor_critic: Any, rollouts: RolloutStorage) -> tuple[torch.Tensor, Any]:
    """Values ``(T*N, 1)`` and the action distribution of every row of the rollout, rows
    time-major (row ``t * N + n`` is step ``t`` of env ``n``). A recurrent policy runs in its
    sequence mode from each env's state at slot 0, so it sees each env's real sequence."""
    T, N = rollouts.rewards.shape[:2]
    obs = flatten_steps(rollouts.obs[:-1])
    masks = rollouts.masks[:-1].reshape(T * N, 1)
    if actor_critic.is_recurrent:
        rnn_hxs = rollouts.recurrent_hidden_states[0]
    else:
        rnn_hxs = rollouts.recurrent_hidden_states[:-1].reshape(T * N, -1)
    values, dist, _ = actor_critic.evaluate(obs, rnn_hxs, masks)
    return values, dist


def explained_variance(
    predictions: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """0-d tensor: 1 - Var(targets - predictions) / Var(targets) (over the ``valid`` rows);
    nan when the targets are constant or fewer than two."""
    if valid is not None:
        predictions, targets = predictions[valid], targets[valid]
    if targets.numel() < 2:
        return targets.new_full((), torch.nan)
    var_targets = targets.var()
    ratio = (targets - predictions).var() / var_targets
    return torch.where(var_targets == 0, torch.nan, 1.0 - ratio)


#: Added to the advantages' std before dividing by it (SB3's and CleanRL's value).
ADVANTAGE_STD_EPS = 1e-8


def rollout_advantages(rollouts: RolloutStorage, normalize: bool, reducer: Reducer | None = None) -> torch.Tensor:
    """Advantages (T, N, 1) = returns - values, in reward units (``value_scale``), optionally
    standardised over the batch of all ranks.

    The mean and the (unbiased) std come from all-reduced sums, in two passes (the sum, then
    the sum of squared deviations) for accuracy. The count is all-reduced with the sum: the
    ranks of a next-step vector env train on different numbers of rows.
    """
    advantages = rollouts.returns - rollouts.value_preds[:-1]
    if rollouts.value_scale != 1.0:
        advantages = advantages * rollouts.value_scale
    if not normalize:
        return advantages
    rows = advantages if rollouts.valid is None else advantages[rollouts.valid]  # the rows trained on
    # the count a tensor, all-reduced with the sum: knowing it on the host would cost a sync
    sums = torch.stack([rows.sum(), rows.new_full((), float(rows.numel()))])
    total, count = reducer.all_reduce_sum(sums) if reducer is not None else sums
    mean = total / count
    squares = (rows - mean).pow(2).sum()
    std = ((reducer.all_reduce_sum(squares) if reducer is not None else squares) / (count - 1)).sqrt()
    # fewer than two rows in all (nearly all of them reset rows) have no std: left as they are
    return torch.where(count < 2, advantages, (advantages - mean) / (std + ADVANTAGE_STD_EPS))


def standardized(advantages: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """``advantages (B, 1)`` less their mean, over their (unbiased) std: one minibatch's, on
    this rank (``--norm-adv-scope minibatch``, as SB3, CleanRL and Tianshou do), taken over
    ``rows`` (V,) only where given (the transitions of a batch that holds other rows);
    unchanged for fewer than two rows."""
    sample = advantages if rows is None else advantages[rows]
    if sample.numel() < 2:
        return advantages
    return (advantages - sample.mean()) / (sample.std() + ADVANTAGE_STD_EPS)


def average_gradients(params: Sequence[torch.Tensor], reducer: Reducer, has_rows: bool = True) -> bool:
    """Replace every gradient by its mean over ranks, with ONE all-reduce of the flat vector;
    returns whether to step: whether any rank had a row to train on (``has_rows``: this one).

    A parameter without a gradient counts as a zero gradient (and gets one), so every rank
    reduces a vector of the same layout. Existing gradients are overwritten in place (they
    may be views into a ``FlatParameters`` buffer). The vector's last element counts the
    ranks without rows (see ``_any_rank_has_rows``).
    """
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([*(g.reshape(-1) for g in grads), grads[0].new_full((1,), float(not has_rows))])
    reducer.all_reduce_sum(flat)
    flat[:-1] /= reducer.world_size
    for grad, chunk in zip(grads, flat[:-1].split([g.numel() for g in grads])):
        grad.copy_(chunk.view_as(grad))
    return _any_rank_has_rows(flat, has_rows, reducer.world_size)


def average_flat_gradient(flat: FlatParameters, reducer: Reducer, has_rows: bool) -> bool:
    """``average_gradients`` for a ``FlatParameters``, in place: its ``reduced`` buffer holds the
    gradient and the slot after it (zeroed with the gradient), so the count costs no extra op."""
    if not has_rows:
        flat.reduced[-1] = 1.0
    reducer.all_reduce_sum(flat.reduced)
    flat.grad /= reducer.world_size
    return _any_rank_has_rows(flat.reduced, has_rows, reducer.world_size)


def _any_rank_has_rows(reduced: torch.Tensor, has_rows: bool, world_size: int) -> bool:
    """Whether to step after the all-reduce of ``reduced``, whose last element is the count of
    ranks without rows: every rank decides the same. A zero gradient is no no-op for Adam or
    RMSprop (their averages decay, Adam's step count moves and its momentum steps on), and one
    process skips a batch without rows, so no rank steps when no rank had any. A rank that has
    rows knows without a host sync (or even indexing the count); only one without reads it."""
    return has_rows or reduced[-1].item() < world_size


def clip_gradients(params: Sequence[nn.Parameter], max_norm: float | None) -> torch.Tensor:
    """Clip the total gradient norm to ``max_norm`` (None: no clipping); returns the pre-clip norm (0-d)."""
    if max_norm is None:
        return nn.utils.get_total_norm([p.grad for p in params if p.grad is not None], foreach=True)
    return nn.utils.clip_grad_norm_(params, max_norm, foreach=True)


def finish_metrics(metrics: dict[str, torch.Tensor], reducer: Reducer | None) -> dict[str, float]:
    """0-d metric tensors -> floats, averaged over ranks: ONE host sync (and one all-reduce)."""
    device = next(iter(metrics.values())).device
    values = torch.stack([value.detach().float().reshape(()).to(device) for value in metrics.values()])
    return dict(zip(metrics, all_mean(values, reducer).tolist()))


class Optimizer(Protocol):
    """What training needs of an algorithm's optimizer (K-FAC, or the flat FlatAdam and FlatRMSprop)."""

    param_groups: list[dict[str, Any]]

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


def set_learning_rate(optimizer: Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
