"""GAIL's discriminator: an MLP logit on (observation, action) pairs, its binary cross-entropy
and the WGAN-GP gradient penalty (the loss in ``gail``'s module docstring).

Shapes: m minibatch rows of each side, F the pair width (``gail_pairs``). Hidden size 100 and
tanh layers, lambda 10: ikostrikov/pytorch-a2c-ppo-acktr-gail (``main.py``:
``gail.Discriminator(obs_dim + action_dim, 100, device)``; ``algo/gail.py``:
``compute_grad_pen(..., lambda_=10)``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_HIDDEN_SIZE = 100
DEFAULT_GRAD_PENALTY = 10.0


class Discriminator(nn.Module):
    """MLP logit f(x) on pairs x (F,) (``gail_pairs``): two tanh hidden layers."""

    def __init__(self, pair_width: int, hidden_size: int = DEFAULT_HIDDEN_SIZE) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(pair_width, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, 1),
        )

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """pairs (B, F) -> logits (B, 1)."""
        return self.trunk(pairs)


def discriminator_loss(
    expert_logits: torch.Tensor, policy_logits: torch.Tensor, expert_weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """0-d (bce, expert_accuracy, policy_accuracy) from logits (m, 1) of each side (see module
    docstring); ``expert_weights`` (m, 1) weigh the expert rows' bce terms (None: all 1)."""
    bce = F.binary_cross_entropy_with_logits(
        expert_logits, torch.ones_like(expert_logits), weight=expert_weights
    ) + F.binary_cross_entropy_with_logits(policy_logits, torch.zeros_like(policy_logits))
    return bce, (expert_logits > 0).float().mean(), (policy_logits < 0).float().mean()


def gradient_penalty(
    disc: Callable[[torch.Tensor], torch.Tensor],
    expert_pairs: torch.Tensor,
    policy_pairs: torch.Tensor,
    lambda_: float = DEFAULT_GRAD_PENALTY,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """0-d ``lambda * mean((||grad_x disc(x_hat)||_2 - 1)^2)`` on random interpolations x_hat
    of the expert and policy pairs (m, F); differentiable in the discriminator's parameters.

    ``alpha`` (m, 1) is drawn from ``generator`` (on its device; None: the pairs' device's
    global RNG).
    """
    device = generator.device if generator is not None else expert_pairs.device
    alpha = torch.rand(len(expert_pairs), 1, generator=generator, device=device).to(expert_pairs)
    mixed = (alpha * expert_pairs + (1.0 - alpha) * policy_pairs).detach().requires_grad_(True)
    # Rows are independent, so the gradient of the sum is each row's own gradient;
    # create_graph keeps the penalty differentiable for the discriminator's step.
    (grad,) = torch.autograd.grad(disc(mixed).sum(), mixed, create_graph=True)
    return lambda_ * (grad.norm(2, dim=1) - 1.0).pow(2).mean()
