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
    """``data`` (P,): every parameter, concatenated; ``grad`` (P,): their gradients."""

    def __init__(self, params: Iterable[nn.Parameter]) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("no trainable parameters to flatten")
        first = self.params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in self.params):
            raise ValueError("flat parameters need one dtype and one device for all parameters")
        total = sum(p.numel() for p in self.params)
        self.data = torch.empty(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.data)
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
        """Zero the gradient buffer (one op), re-attaching any gradient something replaced."""
        self.grad.zero_()
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


class FlatAdam:
    """Adam on a ``FlatParameters``: seven in-place ops per step.

    The update is torch's single-tensor Adam (no AMSGrad, no weight decay), bit for bit; what
    it drops is ``torch.optim``'s per-step bookkeeping (grouping tensors by device and dtype,
    step counters as tensors, hooks), which costs more than the arithmetic at this size. The
    learning rate lives in ``param_groups[0]["lr"]``, as for a torch optimizer.
    """

    def __init__(self, flat: FlatParameters, lr: float, eps: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.flat = flat
        self.param_groups: list[dict[str, Any]] = [{"lr": lr, "eps": eps, "betas": betas}]
        self.exp_avg = torch.zeros_like(flat.data)
        self.exp_avg_sq = torch.zeros_like(flat.data)
        self.num_steps = 0

    def step(self) -> None:
        """One Adam step on ``flat.data`` with the gradient in ``flat.grad``."""
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        grad = self.flat.grad
        self.num_steps += 1
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        # The bias corrections are Python floats: no tensor op and no host sync for them.
        bias_correction1 = 1 - beta1**self.num_steps
        bias_correction2_sqrt = (1 - beta2**self.num_steps) ** 0.5
        denom = (self.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(group["eps"])
        self.flat.data.addcdiv_(self.exp_avg, denom, value=-group["lr"] / bias_correction1)

    def state_dict(self) -> dict[str, Any]:
        """Plain data and tensors (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "num_steps": self.num_steps,
            "exp_avg": self.exp_avg.clone(),
            "exp_avg_sq": self.exp_avg_sq.clone(),
            "param_groups": [dict(group, betas=list(group["betas"])) for group in self.param_groups],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned, for a model of the same size."""
        if tuple(state_dict["exp_avg"].shape) != tuple(self.exp_avg.shape):
            raise ValueError(
                f"the saved optimizer state is for {state_dict['exp_avg'].numel()} parameters, "
                f"this model has {self.exp_avg.numel()}"
            )
        self.exp_avg.copy_(state_dict["exp_avg"])
        self.exp_avg_sq.copy_(state_dict["exp_avg_sq"])
        self.num_steps = int(state_dict["num_steps"])
        self.param_groups = [dict(group, betas=tuple(group["betas"])) for group in state_dict["param_groups"]]
