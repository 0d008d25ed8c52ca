"""Action-distribution heads, one per gymnasium action-space kind.

Every distribution speaks the same batch convention: actions are ``(B, action_dim)``
tensors (``action_dim`` is 1 for Discrete), ``log_probs(actions)`` is ``(B, 1)`` (summed
over action dimensions), ``entropy()`` is ``(B,)`` and ``mode()`` is the deterministic action.
"""

from __future__ import annotations

import gymnasium as gym
import torch
import torch.nn as nn

from a2c_ppo.init import init_orthogonal


class FixedCategorical(torch.distributions.Categorical):
    def sample(self) -> torch.Tensor:
        return super().sample().unsqueeze(-1)

    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        return super().log_prob(actions.squeeze(-1)).unsqueeze(-1)

    def mode(self) -> torch.Tensor:
        return self.probs.argmax(dim=-1, keepdim=True)


class FixedNormal(torch.distributions.Normal):
    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        return super().log_prob(actions).sum(-1, keepdim=True)

    def entropy(self) -> torch.Tensor:
        return super().entropy().sum(-1)

    def mode(self) -> torch.Tensor:
        return self.mean


class FixedBernoulli(torch.distributions.Bernoulli):
    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        return super().log_prob(actions).sum(-1, keepdim=True)

    def entropy(self) -> torch.Tensor:
        return super().entropy().sum(-1)

    def mode(self) -> torch.Tensor:
        return (self.probs > 0.5).float()


class MultiCategoricalDistribution:
    """Independent categoricals, one per MultiDiscrete dimension; actions ``(B, K)`` long."""

    def __init__(self, logits: torch.Tensor, nvec: list[int]) -> None:
        self.dists = [
            torch.distributions.Categorical(logits=chunk, validate_args=False)
            for chunk in torch.split(logits, nvec, dim=-1)
        ]

    def sample(self) -> torch.Tensor:
        return torch.stack([d.sample() for d in self.dists], dim=-1)

    def mode(self) -> torch.Tensor:
        return torch.stack([d.probs.argmax(dim=-1) for d in self.dists], dim=-1)

    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        parts = [d.log_prob(a) for d, a in zip(self.dists, actions.unbind(-1))]
        return torch.stack(parts, dim=-1).sum(-1, keepdim=True)

    def entropy(self) -> torch.Tensor:
        return torch.stack([d.entropy() for d in self.dists], dim=-1).sum(-1)


class CategoricalHead(nn.Module):
    def __init__(self, num_inputs: int, num_outputs: int) -> None:
        super().__init__()
        self.linear = init_orthogonal(nn.Linear(num_inputs, num_outputs), gain=0.01)

    def forward(self, x: torch.Tensor) -> FixedCategorical:
        return FixedCategorical(logits=self.linear(x), validate_args=False)


class DiagGaussianHead(nn.Module):
    """Gaussian with a state-dependent mean and a state-independent, learned log-std."""

    def __init__(self, num_inputs: int, num_outputs: int) -> None:
        super().__init__()
        self.mean = init_orthogonal(nn.Linear(num_inputs, num_outputs), gain=0.01)
        self.log_std = nn.Parameter(torch.zeros(num_outputs))

    def forward(self, x: torch.Tensor) -> FixedNormal:
        mean = self.mean(x)
        return FixedNormal(mean, self.log_std.exp().expand_as(mean), validate_args=False)


class BernoulliHead(nn.Module):
    def __init__(self, num_inputs: int, num_outputs: int) -> None:
        super().__init__()
        self.linear = init_orthogonal(nn.Linear(num_inputs, num_outputs), gain=0.01)

    def forward(self, x: torch.Tensor) -> FixedBernoulli:
        return FixedBernoulli(logits=self.linear(x), validate_args=False)


class MultiCategoricalHead(nn.Module):
    def __init__(self, num_inputs: int, nvec: list[int]) -> None:
        super().__init__()
        self.nvec = [int(n) for n in nvec]
        self.linear = init_orthogonal(nn.Linear(num_inputs, sum(self.nvec)), gain=0.01)

    def forward(self, x: torch.Tensor) -> MultiCategoricalDistribution:
        return MultiCategoricalDistribution(self.linear(x), self.nvec)


def make_head(action_space: gym.Space, num_inputs: int) -> nn.Module:
    """The head that parameterises a distribution over ``action_space``."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(num_inputs, int(action_space.n))
    if isinstance(action_space, gym.spaces.Box):
        if len(action_space.shape) != 1:
            raise ValueError(f"Box action spaces must be 1-D, got shape {action_space.shape}")
        return DiagGaussianHead(num_inputs, action_space.shape[0])
    if isinstance(action_space, gym.spaces.MultiBinary):
        return BernoulliHead(num_inputs, int(action_space.n))
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
        return int(action_space.n), torch.float32
    if isinstance(action_space, gym.spaces.Box):
        return int(action_space.shape[0]), torch.float32
    raise ValueError(f"unsupported action space {action_space}")
