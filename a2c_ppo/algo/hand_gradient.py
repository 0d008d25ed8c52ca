"""PPO's and A2C's gradient for the fast-path MLP policy, without autograd (``fastpath.py`` says when).

The same interface as ``ppo.AutogradGradient``: ``losses(batch, objective)`` runs the
forward pass (keeping every layer's output) and the objective, ``backward(losses, c_v, c_e)``
writes the gradient of ``policy_loss + c_v * value_loss - c_e * entropy`` into every
parameter's ``.grad`` (overwritten: ``FlatParameters`` gives them views of one buffer).

Notation: a layer is ``y = f(z)``, ``z = x W^T + b``; ``d_v`` is the derivative of the loss
with respect to ``v``. The objective gives ``d_log_probs`` and ``d_values`` (with
``derivatives=True``); the heads' derivatives are written next to the maths they
differentiate (``distributions.py``'s log-softmax, Gaussian log-density and entropies).
A test holds the result to autograd's for both heads, both value losses and an entropy bonus.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn as nn

from a2c_ppo.distributions import (
    categorical_entropy,
    finite_log_p,
    gaussian_entropy,
    gaussian_log_prob,
    log_softmax,
)
from a2c_ppo.fastpath import FastMLP, Layer
from a2c_ppo.storage import Minibatch

# (batch, values, log_probs, derivatives) -> {"policy_loss", "value_loss", "log_ratio", ["d_log_probs", "d_values"]}
Objective = Callable[..., dict[str, torch.Tensor]]
Score = Callable[[torch.Tensor, float], torch.Tensor]


def _tower_forward(x: torch.Tensor, layers: list[Layer]) -> list[torch.Tensor]:
    """``[x, y_1, ..., y_L]``: the input and every layer's output (the backward pass needs them)."""
    outputs = [x]
    for linear, activation in layers:
        outputs.append(activation.forward(torch, torch.addmm(linear.bias, outputs[-1], linear.weight.t())))
    return outputs


def _linear_backward(layer: nn.Linear, d_z: torch.Tensor, x: torch.Tensor) -> None:
    """Writes ``layer``'s gradients for ``z = x W^T + b`` given ``d_z`` (B, out), ``x`` (B, in)."""
    assert layer.weight.grad is not None and layer.bias.grad is not None
    torch.mm(d_z.t(), x, out=layer.weight.grad)
    torch.sum(d_z, 0, out=layer.bias.grad)


def _tower_backward(layers: list[Layer], outputs: list[torch.Tensor], d_y: torch.Tensor) -> None:
    """Backpropagates ``d_y`` (B, width), the derivative at the tower's output, through it."""
    for i in range(len(layers) - 1, -1, -1):
        linear, activation = layers[i]
        d_z = activation.backward(d_y, outputs[i + 1])
        _linear_backward(linear, d_z, outputs[i])
        if i:
            d_y = d_z.mm(linear.weight)


class _Forward(NamedTuple):
    values: torch.Tensor  # (B, 1)
    log_probs: torch.Tensor  # (B, 1) of the minibatch's actions
    entropy: torch.Tensor  # (B,)
    actor: list[torch.Tensor]  # the actor tower's input and layer outputs
    critic: list[torch.Tensor]
    score: Score  # (d_log_probs (B, 1), c) -> d at the head's output of sum(d_log_probs * log_probs) - c * sum(H)


class HandGradient:
    """The policy's forward and backward pass on a minibatch, by hand (see the module docstring)."""

    def __init__(self, parts: FastMLP) -> None:
        self.parts = parts
        self._forward: _Forward | None = None

    @torch.no_grad()
    def losses(self, batch: Minibatch, objective: Objective) -> dict[str, torch.Tensor]:
        """The objective's 0-d losses and ``log_ratio`` (B, 1), plus ``entropy``; keeps what
        ``backward`` needs."""
        p = self.parts
        assert isinstance(batch.obs, torch.Tensor)  # the fast path's policies take one vector
        x = batch.obs.float()
        actor, critic = _tower_forward(x, p.actor), _tower_forward(x, p.critic)
        values = torch.addmm(p.value_head.bias, critic[-1], p.value_head.weight.t())
        out = torch.addmm(p.action_head.bias, actor[-1], p.action_head.weight.t())
        head = _categorical(out, batch.actions) if p.log_std is None else _gaussian(out, p.log_std, batch.actions)
        self._forward = _Forward(values, *head[:2], actor, critic, head[2])
        losses = objective(batch, values, head[0], derivatives=True)
        losses["entropy"] = head[1].mean()
        return losses

    @torch.no_grad()
    def backward(self, losses: dict[str, torch.Tensor], value_loss_coef: float, entropy_coef: float) -> None:
        """The gradient of ``policy_loss + value_loss_coef * value_loss - entropy_coef * entropy``."""
        fwd, p = self._forward, self.parts
        assert fwd is not None, "backward() needs the losses() of the same minibatch"
        d_values = losses["d_values"] * value_loss_coef
        d_out = fwd.score(losses["d_log_probs"], entropy_coef / len(fwd.values))
        _linear_backward(p.value_head, d_values, fwd.critic[-1])
        _linear_backward(p.action_head, d_out, fwd.actor[-1])
        _tower_backward(p.critic, fwd.critic, d_values.mm(p.value_head.weight))
        _tower_backward(p.actor, fwd.actor, d_out.mm(p.action_head.weight))
        self._forward = None


def _categorical(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Score]:
    """``log_probs`` (B, 1) of ``actions`` (B, 1), ``entropy`` (B,) and their ``score``."""
    log_p = log_softmax(torch, logits)
    probs = log_p.exp()
    entropy = categorical_entropy(torch, log_p)

    def score(d_log_probs: torch.Tensor, c: float) -> torch.Tensor:
        # d log p_a / d logits = onehot(a) - p;  d H / d logits = -p * (log p + H)
        d_logits = probs * -d_log_probs
        if c:
            d_logits += c * probs * (finite_log_p(torch, log_p) + entropy[:, None])  # p = 0 adds 0
        return d_logits.scatter_add_(1, actions, d_log_probs)

    return log_p.gather(1, actions), entropy, score


def _gaussian(
    mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, Score]:
    """As ``_categorical`` for ``N(mean (B, A), exp(log_std (A,)))``; ``score`` also writes the
    log-std's gradient."""
    inverse_std = torch.exp(-log_std)
    noise = (actions - mean) * inverse_std
    entropy = gaussian_entropy(torch, log_std).expand(len(mean))

    def score(d_log_probs: torch.Tensor, c: float) -> torch.Tensor:
        # d log p / d mean = noise / std;  d log p / d log_std = noise^2 - 1;  d H / d log_std = 1
        assert log_std.grad is not None
        torch.sum(d_log_probs * (noise.pow(2) - 1.0), 0, out=log_std.grad)
        if c:
            log_std.grad -= c * len(mean)
        return d_log_probs * noise * inverse_std

    return gaussian_log_prob(torch, noise, log_std), entropy, score
