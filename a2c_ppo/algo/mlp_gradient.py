"""The feed-forward MLP policy's forward pass on a minibatch, and the backward pass of a
loss built from its outputs, written out by hand.

A PPO update on classic-control or MuJoCo shapes is hundreds of minibatches of 64-256 rows
through two 64x64 tanh towers. There autograd's bookkeeping (recording the graph, a node
and a dispatch per op, accumulating into ``.grad``) costs more than the matrix products:
the hand-written pass does the same arithmetic in well under half the time
(docs/BENCHMARKS.md). It applies to the non-recurrent ``MLPBase`` with a categorical or
diagonal-Gaussian head (``applies``); ``PPO`` uses autograd for everything else. A test
checks the gradients against autograd's for both heads, both value losses and a non-zero
entropy coefficient.

Notation: a layer is ``y = tanh(z)``, ``z = x W^T + b``; ``d_v`` is the derivative of the
loss with respect to ``v``. The loss is given to ``backward`` by its derivatives with respect
to the values and log-probabilities (``ppo.ppo_losses`` computes them) and the weight of
the entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn as nn

from a2c_ppo.distributions import LOG_SQRT_2PI, CategoricalHead, DiagGaussianHead
from a2c_ppo.model import MLPBase, Policy

# (log_probs (B, 1), entropy (B,), score): see _categorical
HeadOutputs = tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor, float], torch.Tensor]]


def applies(policy: Policy) -> bool:
    """Whether ``MLPGradient`` can compute ``policy``'s gradient: a non-recurrent ``MLPBase``
    of Linear + Tanh layers and a categorical or diagonal-Gaussian head."""
    base = getattr(policy, "base", None)
    return (
        isinstance(base, MLPBase)
        and not base.is_recurrent
        and isinstance(policy.dist, (CategoricalHead, DiagGaussianHead))
        and all(_is_tanh_mlp(tower) for tower in (base.actor, base.critic))
    )


def _is_tanh_mlp(tower: nn.Sequential) -> bool:
    kinds = [type(module) for module in tower]
    return len(kinds) % 2 == 0 and all(kinds[i : i + 2] == [nn.Linear, nn.Tanh] for i in range(0, len(kinds), 2))


def _tower_forward(x: torch.Tensor, layers: list[nn.Linear]) -> list[torch.Tensor]:
    """``[x, y_1, ..., y_L]``: the input and every layer's output (the backward pass needs them)."""
    outputs = [x]
    for layer in layers:
        outputs.append(torch.tanh(torch.addmm(layer.bias, outputs[-1], layer.weight.t())))
    return outputs


def _linear_backward(layer: nn.Linear, d_z: torch.Tensor, x: torch.Tensor) -> None:
    """Writes ``layer``'s gradients for ``z = x W^T + b`` given ``d_z`` (B, out), ``x`` (B, in)."""
    assert layer.weight.grad is not None and layer.bias.grad is not None
    torch.mm(d_z.t(), x, out=layer.weight.grad)
    torch.sum(d_z, 0, out=layer.bias.grad)


def _tower_backward(layers: list[nn.Linear], outputs: list[torch.Tensor], d_y: torch.Tensor) -> None:
    """Backpropagates ``d_y`` (B, width), the derivative at the tower's output, through it."""
    for i in range(len(layers) - 1, -1, -1):
        d_z = torch.ops.aten.tanh_backward(d_y, outputs[i + 1])  # d_y * (1 - y^2)
        _linear_backward(layers[i], d_z, outputs[i])
        if i:
            d_y = d_z.mm(layers[i].weight)


class MLPForward(NamedTuple):
    """The forward pass of a minibatch: what the loss needs, and what the backward pass needs."""

    values: torch.Tensor  # (B, 1)
    log_probs: torch.Tensor  # (B, 1) of the minibatch's actions
    entropy: torch.Tensor  # (B,)
    actor: list[torch.Tensor]  # the actor tower's input and layer outputs
    critic: list[torch.Tensor]  # the critic tower's
    score: Callable[[torch.Tensor, float], torch.Tensor]  # see _categorical


class MLPGradient:
    """``forward(obs, actions)`` and ``backward(...)``: the policy's outputs on a minibatch
    without autograd, then the gradient of a loss built from them, written into every
    parameter's ``.grad`` (overwritten, not accumulated).

    Every parameter needs a ``.grad`` tensor of its shape to write into (``FlatParameters``
    gives them views of its flat gradient).
    """

    def __init__(self, policy: Policy) -> None:
        if not applies(policy):
            raise ValueError("MLPGradient needs a non-recurrent tanh MLPBase with a categorical or Gaussian head")
        base, head = policy.base, policy.dist
        assert isinstance(base, MLPBase) and isinstance(head, (CategoricalHead, DiagGaussianHead))
        self.actor = [m for m in base.actor if isinstance(m, nn.Linear)]
        self.critic = [m for m in base.critic if isinstance(m, nn.Linear)]
        self.value_head = base.critic_linear
        self.action_head = head.mean if isinstance(head, DiagGaussianHead) else head.linear
        self.log_std = head.log_std.bias if isinstance(head, DiagGaussianHead) else None
        layers = (*self.actor, *self.critic, self.value_head, self.action_head)
        written = {id(p) for layer in layers for p in layer.parameters()}
        if self.log_std is not None:
            written.add(id(self.log_std))
        if written != {id(p) for p in policy.parameters()}:
            raise ValueError("the policy has parameters that MLPGradient would not write a gradient for")

    @torch.no_grad()
    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> MLPForward:
        """``obs`` (B, D), ``actions`` (B, 1) long or (B, A) float, as ``Policy.evaluate_actions``."""
        x = obs.float()
        actor = _tower_forward(x, self.actor)
        critic = _tower_forward(x, self.critic)
        values = torch.addmm(self.value_head.bias, critic[-1], self.value_head.weight.t())
        head_out = torch.addmm(self.action_head.bias, actor[-1], self.action_head.weight.t())
        if self.log_std is None:
            log_probs, entropy, score = _categorical(head_out, actions)
        else:
            log_probs, entropy, score = _gaussian(head_out, self.log_std, actions)
        return MLPForward(values, log_probs, entropy, actor, critic, score)

    @torch.no_grad()
    def backward(
        self, fwd: MLPForward, d_values: torch.Tensor, d_log_probs: torch.Tensor, entropy_weight: float
    ) -> None:
        """The gradient of ``sum(d_values * values) + sum(d_log_probs * log_probs) -
        entropy_weight * sum(entropy)`` (the loss, to first order) into the ``.grad``s."""
        d_head_out = fwd.score(d_log_probs, entropy_weight)
        _linear_backward(self.value_head, d_values, fwd.critic[-1])
        _linear_backward(self.action_head, d_head_out, fwd.actor[-1])
        _tower_backward(self.critic, fwd.critic, d_values.mm(self.value_head.weight))
        _tower_backward(self.actor, fwd.actor, d_head_out.mm(self.action_head.weight))


def _categorical(logits: torch.Tensor, actions: torch.Tensor) -> HeadOutputs:
    """``log_probs`` (B, 1) of ``actions`` (B, 1), ``entropy`` (B,), and ``score(d_log_probs,
    c)``: the derivative at the logits of ``sum(d_log_probs * log_probs) - c * sum(entropy)``."""
    log_p = torch.log_softmax(logits, -1)  # one kernel, where logsumexp is several
    probs = log_p.exp()
    entropy = -(probs * log_p).sum(-1)

    def score(d_log_probs: torch.Tensor, c: float) -> torch.Tensor:
        # d log p_a / d logits = onehot(a) - p;  d H / d logits = -p * (log p + H)
        d_logits = probs * -d_log_probs
        if c:
            d_logits += c * probs * (log_p + entropy[:, None])
        return d_logits.scatter_add_(1, actions, d_log_probs)

    return log_p.gather(1, actions), entropy, score


def _gaussian(mean: torch.Tensor, log_std_param: torch.Tensor, actions: torch.Tensor) -> HeadOutputs:
    """As ``_categorical`` for the diagonal Gaussian ``(mean (B, A), exp(log_std (A,)))``;
    ``score`` also writes the log-std's gradient."""
    noise = (actions - mean) * torch.exp(-log_std_param)
    log_probs = (-0.5 * noise.pow(2) - log_std_param - LOG_SQRT_2PI).sum(-1, keepdim=True)
    entropy = (log_std_param + (0.5 + LOG_SQRT_2PI)).sum(-1).expand(len(mean))

    def score(d_log_probs: torch.Tensor, c: float) -> torch.Tensor:
        # d log p / d mean = noise / std;  d log p / d log_std = noise^2 - 1;  d H / d log_std = 1
        assert log_std_param.grad is not None
        torch.sum(d_log_probs * (noise.pow(2) - 1.0), 0, out=log_std_param.grad)
        if c:
            log_std_param.grad -= c * len(mean)
        return d_log_probs * noise * torch.exp(-log_std_param)

    return log_probs, entropy, score
