"""Generalized state-dependent exploration (gSDE; Raffin, Kober and Stulp 2021, "Smooth
Exploration for Robotic Reinforcement Learning"), as Stable-Baselines3 uses it with PPO and A2C.

A Gaussian policy usually adds fresh noise at every step: ``a = mu(s) + sigma * eps``. gSDE
instead draws, per env, a noise matrix ``M (F, A)`` with entries ``M_ij ~ N(0, sigma_ij^2)``
(``sigma = exp(log_std)``, a learned ``(F, A)`` parameter) and acts ``a = mu(s) + phi(s) M``,
where ``phi(s) (F,)`` are the policy's last hidden features. While ``M`` is kept, the noise is a
smooth, deterministic function of the state, so a motor is not shaken at every step; ``M`` is
drawn again every ``--sde-sample-freq`` steps, or once per rollout (-1).

Over the draw of ``M`` a state's action is Gaussian, ``a_j ~ N(mu_j(s), sum_i phi_i(s)^2
sigma_ij^2)``, independently per action dimension: that is the distribution the update
evaluates (``forward``), so log-probabilities and entropies do not depend on the matrix drawn.
The features enter the variance without a gradient (SB3's default ``learn_features=False``):
the log-std learns the noise's scale, the towers learn the mean and the value.

The rollout calls ``resample_noise`` before each step's actions and, where it acts on a part of
the envs, wraps the act in ``noise_rows``; both do nothing for other heads. The matrices are
not saved: a rollout always starts with new ones, drawn from torch's generator, whose state
the checkpoint holds, so resumes stay exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import gymnasium as gym
import torch
import torch.nn as nn

from a2c_ppo.distributions import DiagNormal, gaussian_log_prob
from a2c_ppo.init import init_orthogonal

#: Added to the variance so that its log stays finite where the features are all zero (SB3's epsilon).
VARIANCE_FLOOR = 1e-6


def state_dependent_log_std(features: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """The action's log-std ``(B, A)``: ``1/2 log(phi^2 sigma^2 + floor)`` from ``features (B, F)``
    and ``log_std (F, A)``; no gradient flows into the features."""
    variance = features.detach().pow(2) @ torch.exp(2.0 * log_std)
    return 0.5 * torch.log(variance + VARIANCE_FLOOR)


def is_due(step: int, sample_freq: int) -> bool:
    """Whether the noise is drawn again before the actions of rollout step ``step``: at step 0
    (every rollout) and, with ``sample_freq`` > 0, every ``sample_freq`` steps."""
    return step == 0 or (sample_freq > 0 and step % sample_freq == 0)


class StateDependentNoiseHead(nn.Module):
    """A Gaussian head with gSDE noise: the mean is a linear layer of the features, the noise
    ``phi(s) M`` with one matrix ``M`` per env (``resample``).

    ``act`` on a batch of as many rows as there are matrices (the rollout's envs, or the rows
    ``noise_rows`` selects) gives row ``i`` matrix ``i``; any other batch (evaluation, replay)
    shares the first matrix, as SB3 does.
    """

    def __init__(self, num_inputs: int, num_outputs: int, log_std_init: float = 0.0, sample_freq: int = -1) -> None:
        super().__init__()
        self.mean = init_orthogonal(nn.Linear(num_inputs, num_outputs), gain=0.01)
        self.log_std = nn.Parameter(torch.full((num_inputs, num_outputs), float(log_std_init)))
        self.sample_freq = sample_freq
        self.rows = slice(None)
        # (K, F, A): not saved (see the module docstring), so not a persistent buffer
        self.exploration: torch.Tensor
        self.register_buffer("exploration", torch.zeros(1, num_inputs, num_outputs), persistent=False)
        self.resample(1)

    def resample(self, num_envs: int) -> None:
        """Draw ``num_envs`` new noise matrices from torch's (CPU) generator."""
        std = torch.exp(self.log_std.detach()).cpu()
        draws = torch.randn(num_envs, *std.shape) * std
        self.exploration = draws.to(self.log_std.device)

    def noise(self, features: torch.Tensor) -> torch.Tensor:
        """``phi(s) M`` ``(B, A)`` for ``features (B, F)`` (see the class docstring)."""
        phi = features.detach().float()
        matrices = self.exploration[self.rows]
        if len(matrices) == len(phi):
            return torch.bmm(phi.unsqueeze(1), matrices).squeeze(1)
        return phi @ matrices[0]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> DiagNormal:
        """The distribution of the action given the state, over the draw of the matrix."""
        return DiagNormal(self.mean(x), state_dependent_log_std(x, self.log_std))

    def act(
        self, x: torch.Tensor, deterministic: bool, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(action (B, A), log_prob (B, 1))``: the mean, plus the noise unless ``deterministic``."""
        mean, log_std = self.mean(x), state_dependent_log_std(x, self.log_std)
        noise = torch.zeros_like(mean) if deterministic else self.noise(x)
        return mean + noise, gaussian_log_prob(torch, noise * torch.exp(-log_std), log_std)


def make_sde_head(
    action_space: gym.Space, num_inputs: int, log_std_init: float, sample_freq: int
) -> StateDependentNoiseHead:
    """The gSDE head for ``action_space``; ValueError unless it is a 1-D Box."""
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        raise ValueError(f"gSDE (--use-sde) needs a 1-D Box action space, got {action_space}; drop --use-sde")
    return StateDependentNoiseHead(num_inputs, action_space.shape[0], log_std_init, sample_freq)


def resample_noise(policy: nn.Module, num_envs: int, step: int) -> None:
    """Before the actions of rollout step ``step`` on ``num_envs`` envs: new matrices where
    gSDE is due (``is_due``); nothing for other heads."""
    head = getattr(policy, "dist", None)
    if isinstance(head, StateDependentNoiseHead) and is_due(step, head.sample_freq):
        head.resample(num_envs)


@contextlib.contextmanager
def noise_rows(policy: nn.Module, rows: slice) -> Iterator[None]:
    """Acts inside use the matrices of envs ``rows`` (an overlapped rollout acts on half of
    the envs at a time); nothing for other heads."""
    head = getattr(policy, "dist", None)
    if not isinstance(head, StateDependentNoiseHead):
        yield
        return
    head.rows = rows
    try:
        yield
    finally:
        head.rows = slice(None)
