"""Action-distribution heads, one per gymnasium action-space kind.

Every distribution speaks the same batch convention: actions are ``(B, action_dim)``
tensors (``action_dim`` is 1 for Discrete), ``log_probs(actions)`` is ``(B, 1)`` (summed
over action dimensions), ``entropy()`` is ``(B,)`` and ``mode()`` is the deterministic action.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from a2c_ppo.init import init_orthogonal

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def sample_categorical(logits: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``logits (B, K)`` -> action ``(B, 1)`` long (sampled, or the argmax) and its log-prob ``(B, 1)``."""
    log_p = torch.log_softmax(logits, dim=-1)
    action = log_p.argmax(dim=-1, keepdim=True) if deterministic else torch.multinomial(log_p.exp(), 1)
    return action, log_p.gather(-1, action)


class FixedCategorical(torch.distributions.Categorical):
    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        return super().log_prob(actions.squeeze(-1)).unsqueeze(-1)


# The Gaussian that PPO's MuJoCo minibatches are scored with is computed directly from the
# head's mean and log-std: torch.distributions.Normal costs twice the ops (broadcasting, a
# log of the exp of the log-std), and each op is time in the forward and the backward pass
# of every minibatch. (The categorical keeps torch's: its share of an update is negligible.)


class DiagNormal:
    """Independent Gaussians with ``mean`` and ``log_std`` ``(B, A)``; actions ``(B, A)``."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor) -> None:
        self.mean, self.log_std = mean, log_std

    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        noise = (actions - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * noise.pow(2) - self.log_std - LOG_SQRT_2PI).sum(-1, keepdim=True)

    def entropy(self) -> torch.Tensor:
        return (self.log_std + (0.5 + LOG_SQRT_2PI)).sum(-1)


class FixedBernoulli(torch.distributions.Bernoulli):
    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        return super().log_prob(actions).sum(-1, keepdim=True)

    def entropy(self) -> torch.Tensor:
        return super().entropy().sum(-1)


class MultiCategoricalDistribution:
    """Independent categoricals, one per MultiDiscrete dimension; actions ``(B, K)`` long."""

    def __init__(self, logits: torch.Tensor, nvec: list[int]) -> None:
        self.dists = [
            torch.distributions.Categorical(logits=chunk, validate_args=False)
            for chunk in torch.split(logits, nvec, dim=-1)
        ]

    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        parts = [d.log_prob(a) for d, a in zip(self.dists, actions.unbind(-1))]
        return torch.stack(parts, dim=-1).sum(-1, keepdim=True)

    def entropy(self) -> torch.Tensor:
        return torch.stack([d.entropy() for d in self.dists], dim=-1).sum(-1)


# Every head has two paths: ``forward(x)`` returns a torch distribution for
# ``evaluate_actions`` (exact log-probs and entropies, with gradients), and
# ``act(x, deterministic)`` returns ``(action (B, A), log_prob (B, 1))`` computed directly,
# without building distribution objects: it runs at every env step.


class CategoricalHead(nn.Module):
    def __init__(self, num_inputs: int, num_outputs: int) -> None:
        super().__init__()
        self.linear = init_orthogonal(nn.Linear(num_inputs, num_outputs), gain=0.01)

    def forward(self, x: torch.Tensor) -> FixedCategorical:
        return FixedCategorical(logits=self.linear(x), validate_args=False)

    def act(self, x: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return sample_categorical(self.linear(x), deterministic)


class LogStd(nn.Module):
    """A learned, state-independent log-std ``(A,)`` broadcast to ``(B, A)``: a bias-only layer
    (K-FAC factors it as one)."""

    def __init__(self, num_outputs: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_outputs))

    def forward(self, mean: torch.Tensor) -> torch.Tensor:
        return self.bias.expand_as(mean)


class DiagGaussianHead(nn.Module):
    """Gaussian with a state-dependent mean and a state-independent, learned log-std."""

    def __init__(self, num_inputs: int, num_outputs: int) -> None:
        super().__init__()
        self.mean = init_orthogonal(nn.Linear(num_inputs, num_outputs), gain=0.01)
        self.log_std = LogStd(num_outputs)

    def forward(self, x: torch.Tensor) -> DiagNormal:
        mean = self.mean(x)
        return DiagNormal(mean, self.log_std(mean))

    def act(self, x: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean(x)
        log_std = self.log_std(mean)
        noise = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)
        # action = mean + std * noise, so (action - mean) / std is the noise itself.
        log_prob = (-0.5 * noise.pow(2) - log_std - LOG_SQRT_2PI).sum(-1, keepdim=True)
        return mean + log_std.exp() * noise, log_prob


class BernoulliHead(nn.Module):
    def __init__(self, num_inputs: int, num_outputs: int) -> None:
        super().__init__()
        self.linear = init_orthogonal(nn.Linear(num_inputs, num_outputs), gain=0.01)

    def forward(self, x: torch.Tensor) -> FixedBernoulli:
        return FixedBernoulli(logits=self.linear(x), validate_args=False)

    def act(self, x: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.linear(x)
        action = (logits > 0).float() if deterministic else torch.bernoulli(torch.sigmoid(logits))
        log_prob = -F.binary_cross_entropy_with_logits(logits, action, reduction="none")
        return action, log_prob.sum(-1, keepdim=True)


class MultiCategoricalHead(nn.Module):
    def __init__(self, num_inputs: int, nvec: list[int]) -> None:
        super().__init__()
        self.nvec = [int(n) for n in nvec]
        self.linear = init_orthogonal(nn.Linear(num_inputs, sum(self.nvec)), gain=0.01)

    def forward(self, x: torch.Tensor) -> MultiCategoricalDistribution:
        return MultiCategoricalDistribution(self.linear(x), self.nvec)

    def act(self, x: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [sample_categorical(chunk, deterministic) for chunk in torch.split(self.linear(x), self.nvec, dim=-1)]
        actions, log_probs = zip(*parts)
        return torch.cat(actions, dim=-1), torch.cat(log_probs, dim=-1).sum(-1, keepdim=True)


ActionHead = CategoricalHead | DiagGaussianHead | BernoulliHead | MultiCategoricalHead


def make_head(action_space: gym.Space, num_inputs: int) -> ActionHead:
    """The head that parameterises a distribution over ``action_space``."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(num_inputs, int(action_space.n))
    if isinstance(action_space, gym.spaces.Box):
        if len(action_space.shape) != 1:
            raise ValueError(f"Box action spaces must be 1-D, got shape {action_space.shape}")
        return DiagGaussianHead(num_inputs, action_space.shape[0])
    if isinstance(action_space, gym.spaces.MultiBinary):
        return BernoulliHead(num_inputs, int(np.prod(action_space.shape)))
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return MultiCategoricalHead(num_inputs, list(action_space.nvec.reshape(-1)))
    raise ValueError(f"unsupported action space {action_space}: use Discrete, Box, MultiBinary or MultiDiscrete")


def action_shape(action_space: gym.Space) -> tuple[int, torch.dtype]:
    """``(action_dim, dtype)`` of the stored action tensor for ``action_space``."""
    if isinstance(action_space, gym.spaces.Discrete):
        return 1, torch.long
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return int(action_space.nvec.size), torch.long
    if isinstance(action_space, gym.spaces.MultiBinary):
        return int(np.prod(action_space.shape)), torch.float32
    if isinstance(action_space, gym.spaces.Box):
        return int(action_space.shape[0]), torch.float32
    raise ValueError(f"unsupported action space {action_space}")
