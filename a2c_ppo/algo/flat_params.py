"""A model's parameters as views into one flat buffer, and their gradients into another.

PPO takes hundreds of gradient steps per rollout on small batches, where the cost of a step
is the number of tensor ops, not their size. A 64x64 actor-critic has 13 parameter tensors,
so zeroing, clipping and Adam over them cost some 60 small ops per minibatch: more than the
backward pass of the network itself (measured: docs/BENCHMARKS.md). Here every parameter is a
view into ``data`` (P,) and its gradient a view into ``grad`` (P,), so each of those is one op
on one tensor. Autograd accumulates into an existing ``.grad`` in place, so after
``backward()`` ``grad`` holds the whole gradient, and ``FlatAdam`` steps ``data`` with it.

The module keeps its parameters (names, shapes, ``state_dict``) unchanged; only their storage
moves. Load weights with ``load_state_dict`` (which copies in place), never by reassigning
``.data``, and build this after the model reached its device.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn


class FlatParameters:
    """``data`` (P,): every parameter, concatenated; ``grad`` (P,): their gradients, the head of
    ``reduced`` (P + 1,), whose last element data-parallel training all-reduces along with them
    (``algo.common.average_flat_gradient``: how many ranks had no row to train on)."""

    def __init__(self, params: Iterable[nn.Parameter]) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("no trainable parameters to flatten")
        first = self.params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in self.params):
            raise ValueError("flat parameters need one dtype and one device for all parameters")
        total = sum(p.numel() for p in self.params)
        self.data = torch.empty(total, dtype=first.dtype, device=first.device)
        # One buffer for the gradient and the slot after it: one in-place all-reduce carries both.
        self.reduced = torch.zeros(total + 1, dtype=first.dtype, device=first.device)
        self.grad = self.reduced[:total]
        self._param_views: list[torch.Tensor] = []
        self._grad_views: list[torch.Tensor] = []
        offset = 0
        for p in self.params:
            n = p.numel()
            self.data[offset : offset + n].copy_(p.detach().reshape(-1))
            self._param_views.append(self.data[offset : offset + n].view_as(p))
            self._grad_views.append(self.grad[offset : offset + n].view_as(p))
            offset += n
        with torch.no_grad():
            for p, view in zip(self.params, self._param_views):
                p.data = view
        self.data.grad = self.grad  # what an optimizer over [data] reads
        self._attach_grads()

    def _attach_grads(self) -> None:
        for p, view in zip(self.params, self._grad_views):
            if p.grad is not view:
                p.grad = view

    def zero_grad(self) -> None:
        """Zero the gradient buffer and its slot (one op), re-attaching any gradient something replaced."""
        self.reduced.zero_()
        self._attach_grads()
        self.data.grad = self.grad


def clip_flat_gradient(grad: torch.Tensor, max_norm: float | None) -> torch.Tensor:
    """Scale ``grad`` (P,) in place to a norm of at most ``max_norm`` (None: leave it); returns
    the pre-clip norm (0-d). The same rule as ``nn.utils.clip_grad_norm_``; on an accelerator
    without a host sync."""
    norm = torch.linalg.vector_norm(grad)
    if max_norm is None:
        return norm
    if grad.device.type == "cpu":  # the norm is on the host already: one op, and only when it clips
        scale = max_norm / (float(norm) + 1e-6)
        if scale < 1.0:
            grad.mul_(scale)
    else:
        grad.mul_((max_norm / (norm + 1e-6)).clamp(max=1.0))
    return norm


class _FlatOptimizer:
    """What ``FlatAdam`` and ``FlatRMSprop`` share: one hyper-parameter group in
    ``param_groups[0]`` (the learning rate under ``"lr"``, as for a torch optimizer), a step
    count, and state vectors (P,) named by ``STATE``, saved as plain data and tensors."""

    STATE: tuple[str, ...] = ()

    def __init__(self, flat: FlatParameters, **group: Any) -> None:
        self.flat = flat
        self.param_groups: list[dict[str, Any]] = [group]
        self.num_steps = 0
        self.state = {name: torch.zeros_like(flat.data) for name in self.STATE}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradient buffer; the gradients stay its views (whatever ``set_to_none`` says)."""
        self.flat.zero_grad()

    def state_dict(self) -> dict[str, Any]:
        """Plain data and tensors (loadable with ``torch.load(weights_only=True)``)."""
        groups = [
            {key: list(v) if isinstance(v, tuple) else v for key, v in group.items()} for group in self.param_groups
        ]
        return {
            "num_steps": self.num_steps,
            **{name: v.clone() for name, v in self.state.items()},
            "param_groups": groups,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned, for a model of the same size."""
        for name, vector in self.state.items():
            if tuple(state_dict[name].shape) != tuple(vector.shape):
                raise ValueError(
                    f"the saved optimizer state is for {state_dict[name].numel()} parameters, "
                    f"this model has {vector.numel()}"
                )
        for name, vector in self.state.items():
            vector.copy_(state_dict[name])
        self.num_steps = int(state_dict["num_steps"])
        self.param_groups = [
            {key: tuple(v) if isinstance(v, list) else v for key, v in group.items()}
            for group in state_dict["param_groups"]
        ]


class FlatAdam(_FlatOptimizer):
    """Adam on a ``FlatParameters``: seven in-place ops per step.

    The update is torch's single-tensor Adam (no AMSGrad, no weight decay), bit for bit; what
    it drops is ``torch.optim``'s per-step bookkeeping (grouping tensors by device and dtype,
    step counters as tensors, hooks), which costs more than the arithmetic at this size.
    """

    STATE = ("exp_avg", "exp_avg_sq")

    def __init__(self, flat: FlatParameters, lr: float, eps: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        super().__init__(flat, lr=lr, eps=eps, betas=betas)

    def step(self) -> None:
        """One Adam step on ``flat.data`` with the gradient in ``flat.grad``."""
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        grad, exp_avg, exp_avg_sq = self.flat.grad, self.state["exp_avg"], self.state["exp_avg_sq"]
        self.num_steps += 1
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        # The bias corrections are Python floats: no tensor op and no host sync for them.
        bias_correction1 = 1 - beta1**self.num_steps
        bias_correction2_sqrt = (1 - beta2**self.num_steps) ** 0.5
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(group["eps"])
        self.flat.data.addcdiv_(exp_avg, denom, value=-group["lr"] / bias_correction1)


class FlatRMSprop(_FlatOptimizer):
    """RMSprop on a ``FlatParameters`` (A2C's): four in-place ops per step, torch's RMSprop
    (not centred, no momentum, no weight decay) bit for bit, without its per-step bookkeeping
    (at A2C's 5-step rollouts a step per 5 env steps, where that bookkeeping showed)."""

    STATE = ("square_avg",)

    def __init__(self, flat: FlatParameters, lr: float, eps: float, alpha: float) -> None:
        super().__init__(flat, lr=lr, eps=eps, alpha=alpha)

    def step(self) -> None:
        """One RMSprop step on ``flat.data`` with the gradient in ``flat.grad``."""
        group = self.param_groups[0]
        grad, square_avg = self.flat.grad, self.state["square_avg"]
        self.num_steps += 1
        square_avg.mul_(group["alpha"]).addcmul_(grad, grad, value=1 - group["alpha"])
        self.flat.data.addcdiv_(grad, square_avg.sqrt().add_(group["eps"]), value=-group["lr"])
