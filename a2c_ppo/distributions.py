"""Action distributions: their maths, written once, and the heads that put them on a policy.

The functions at the top take an array module ``xp`` (``numpy`` or ``torch``; reductions are
called as methods with ``axis=`` / ``keepdims=``, which both accept, and which cost numpy
half of its function wrappers' time) and are the one definition of each
distribution's log-probability, entropy and sampling rule: the torch heads below use them
with ``xp=torch``, and the fast path (``fastpath.py``: numpy acting, the hand-written PPO
gradient) uses the same functions, so the code a reader reads is the code that runs.

Batch convention: actions are ``(B, action_dim)`` (``action_dim`` is 1 for Discrete),
``log_probs(actions)`` is ``(B, 1)`` (summed over action dimensions), ``entropy()`` is
``(B,)``. ``params()`` ``(B, P)`` is everything that defines the distribution (log-probabilities,
or mean and log-std), and ``kl_from(old_params)`` ``(B,)`` the exact KL[old || this] in closed form
(the KL-penalty PPO's). Random numbers always come from torch's global generator (``torch.rand`` /
``torch.randn``), whichever array module computes, so one seed gives the same actions on
every path, and exact resumes hold.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from a2c_ppo.draws import normal_draws, uniform_draws
from a2c_ppo.init import init_orthogonal

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

# ----------------------------------------------------------------------------- the maths


def log_softmax(xp: Any, logits: Any) -> Any:
    """``log p (B, K)`` of ``logits (B, K)`` (torch's fused kernel where ``xp`` is torch), float32
    for bf16 logits."""
    if xp is torch:
        # CUDA's autocast lifts log_softmax to float32, the CPU's leaves it in bf16, whose 8-bit
        # mantissa rounds log p = -0.127 to -0.1270 +- 2e-3: a 2% error in PPO's ratio
        return torch.log_softmax(logits, dim=-1, dtype=torch.float32 if logits.dtype is torch.bfloat16 else None)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def finite_log_p(xp: Any, log_p: Any) -> Any:
    """``log p (B, K)`` with ``-inf`` (a class of logit ``-inf``, which a network of one's own can
    give) raised to the dtype's lowest number, so that ``p * log p`` is 0 there rather than
    ``0 * -inf = NaN``, and so is its gradient (torch's own ``Categorical`` clamps the same way)."""
    return log_p.clip(min=xp.finfo(log_p.dtype).min)


def categorical_entropy(xp: Any, log_p: Any) -> Any:
    """``H (B,) = -sum_k p_k log p_k`` from ``log p (B, K)``; a class of probability 0 adds 0."""
    return -(xp.exp(log_p) * finite_log_p(xp, log_p)).sum(axis=-1)


def categorical_sample(xp: Any, log_p: Any, uniform: Any) -> Any:
    """The sampling rule: invert the CDF of ``p`` at ``uniform (B, 1)`` in [0, 1) -> ``(B, 1)``
    class indices (int64), the smallest ``k`` with ``cdf_k > uniform * cdf_K`` (the total, which
    rounding leaves a hair off 1): a class of probability 0 is never drawn, neither at ``uniform``
    0 nor at its largest value, ``1 - 2**-24`` (``torch.rand`` gives each once in 2**24 draws)."""
    cdf = xp.exp(log_p).cumsum(axis=-1)
    below = (cdf <= uniform * cdf[..., -1:]).sum(axis=-1, keepdims=True)
    # rounding can leave the last cdf a hair under 1 (np.minimum: a sixth of np.clip's time)
    last = log_p.shape[-1] - 1
    return below.clamp_(max=last) if xp is torch else xp.minimum(below, last)


def gaussian_log_prob(xp: Any, noise: Any, log_std: Any) -> Any:
    """``log N (B, 1)`` of an action ``mean + exp(log_std) * noise``, from the standardised
    ``noise (B, A)`` and ``log_std ((A,) or (B, A))``."""
    return (-0.5 * noise * noise - log_std - LOG_SQRT_2PI).sum(axis=-1, keepdims=True)


def gaussian_entropy(xp: Any, log_std: Any) -> Any:
    """``H = sum_a (log_std_a + 1/2 + log sqrt(2 pi))``, summed over the last axis."""
    return (log_std + (0.5 + LOG_SQRT_2PI)).sum(axis=-1)


#: A masked-out action's logit: the lowest bf16 number (-3.39e38; also exact in float32), below
#: any allowed logit short of -inf, so its probability is exactly 0 and 0 * log p stays finite
#: in the entropy while the allowed logits are below 1e37. sb3-contrib's -1e8 outweighed allowed
#: logits below -1e8 (deterministic acting took the forbidden action); float32's own lowest
#: number rounds to -inf in bf16.
MASKED_LOGIT = torch.finfo(torch.bfloat16).min


def masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``logits (B, K)`` with the actions ``mask (B, K)`` forbids (False) set to ``MASKED_LOGIT``."""
    return logits if mask is None else logits.masked_fill(~mask, MASKED_LOGIT)


# ----------------------------------------------------------------------------- distributions


class Categorical:
    """Categorical over the last axis of ``logits (B, K)``; actions ``(B, 1)`` long."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.log_p = log_softmax(torch, logits)

    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        return self.log_p.gather(-1, actions.long())

    def entropy(self) -> torch.Tensor:
        return categorical_entropy(torch, self.log_p)

    def params(self) -> torch.Tensor:
        return self.log_p

    def kl_from(self, old: torch.Tensor) -> torch.Tensor:
        """``sum_k p_old (log p_old - log p)``; a masked class or one of logit -inf (p = 0 on both
        sides) adds 0."""
        return (old.exp() * (finite_log_p(torch, old) - finite_log_p(torch, self.log_p))).sum(-1)


class DiagNormal:
    """Independent Gaussians with ``mean`` and ``log_std`` ``(B, A)``; actions ``(B, A)``."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor) -> None:
        self.mean, self.log_std = mean, log_std

    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        return gaussian_log_prob(torch, (actions - self.mean) * torch.exp(-self.log_std), self.log_std)

    def entropy(self) -> torch.Tensor:
        return gaussian_entropy(torch, self.log_std)

    def params(self) -> torch.Tensor:
        return torch.cat([self.mean, self.log_std], dim=-1)

    def kl_from(self, old: torch.Tensor) -> torch.Tensor:
        """``sum_a log(s / s_old) + (s_old^2 + (m_old - m)^2) / (2 s^2) - 1/2``."""
        old_mean, old_log_std = old.chunk(2, dim=-1)
        ratio = (old_mean - self.mean) * torch.exp(-self.log_std)
        variance_ratio = torch.exp(2.0 * (old_log_std - self.log_std))
        return (self.log_std - old_log_std + 0.5 * (variance_ratio + ratio * ratio) - 0.5).sum(-1)


class Bernoulli:
    """Independent Bernoullis with ``logits (B, K)``; actions ``(B, K)`` float 0/1."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        log_p = -F.binary_cross_entropy_with_logits(self.logits, actions, reduction="none")
        return log_p.sum(-1, keepdim=True)

    def entropy(self) -> torch.Tensor:
        p = torch.sigmoid(self.logits)
        return F.binary_cross_entropy_with_logits(self.logits, p, reduction="none").sum(-1)

    def params(self) -> torch.Tensor:
        return self.logits

    def kl_from(self, old: torch.Tensor) -> torch.Tensor:
        """``sum_k p_old log(p_old / p) + (1 - p_old) log((1 - p_old) / (1 - p))``, in logits."""
        p_old = torch.sigmoid(old)
        log_ratio_one = F.logsigmoid(old) - F.logsigmoid(self.logits)
        log_ratio_zero = F.logsigmoid(-old) - F.logsigmoid(-self.logits)
        return (p_old * log_ratio_one + (1.0 - p_old) * log_ratio_zero).sum(-1)


class MultiCategorical:
    """Independent categoricals, one per MultiDiscrete dimension; actions ``(B, K)`` long."""

    def __init__(self, logits: torch.Tensor, nvec: list[int], mask: torch.Tensor | None = None) -> None:
        logits = masked_logits(logits, mask)
        self.parts = [Categorical(chunk) for chunk in torch.split(logits, nvec, dim=-1)]

    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        return sum(d.log_probs(a) for d, a in zip(self.parts, actions.split(1, dim=-1)))  # type: ignore[return-value]

    def entropy(self) -> torch.Tensor:
        return sum(d.entropy() for d in self.parts)  # type: ignore[return-value]

    def params(self) -> torch.Tensor:
        return torch.cat([d.params() for d in self.parts], dim=-1)

    def kl_from(self, old: torch.Tensor) -> torch.Tensor:
        """The sum of the dimensions' KLs (they are independent)."""
        sizes = [d.log_p.shape[-1] for d in self.parts]
        return sum(d.kl_from(o) for d, o in zip(self.parts, old.split(sizes, dim=-1)))  # type: ignore[return-value]


# ----------------------------------------------------------------------------- heads
# Every head has two paths: ``forward(x)`` returns a distribution for ``evaluate_actions``
# (exact log-probs and entropies, with gradients), and ``act(x, deterministic)`` returns
# ``(action (B, A), log_prob (B, 1))`` directly, at every env step.


def _sample_categorical(
    logits: torch.Tensor, deterministic: bool, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    log_p = log_softmax(torch, masked_logits(logits, mask))
    if deterministic:
        action = log_p.argmax(dim=-1, keepdim=True)
    else:
        action = categorical_sample(torch, log_p, uniform_draws((len(log_p), 1)).to(log_p.device))
        if mask is not None:  # rounding can leave the cdf short of the uniform: the last class, maybe forbidden
            forbidden = ~mask.gather(-1, action)
            if bool(forbidden.any()):
                last_allowed = (mask * torch.arange(mask.shape[-1], device=mask.device)).argmax(-1, keepdim=True)
                action = torch.where(forbidden, last_allowed, action)
    return action, log_p.gather(-1, action)


class CategoricalHead(nn.Module):
    def __init__(self, num_inputs: int, num_outputs: int) -> None:
        super().__init__()
        self.linear = init_orthogonal(nn.Linear(num_inputs, num_outputs), gain=0.01)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> Categorical:
        return Categorical(masked_logits(self.linear(x), mask))

    def act(
        self, x: torch.Tensor, deterministic: bool, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return _sample_categorical(self.linear(x), deterministic, mask)


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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> DiagNormal:
        mean = self.mean(x)
        return DiagNormal(mean, self.log_std(mean))

    def act(
        self, x: torch.Tensor, deterministic: bool, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean(x)
        log_std = self.log_std(mean)
        noise = torch.zeros_like(mean) if deterministic else normal_draws(mean.shape).to(mean.device)
        # action = mean + std * noise, so the log-density needs only the noise
        return mean + log_std.exp() * noise, gaussian_log_prob(torch, noise, log_std)


class BernoulliHead(nn.Module):
    def __init__(self, num_inputs: int, num_outputs: int) -> None:
        super().__init__()
        self.linear = init_orthogonal(nn.Linear(num_inputs, num_outputs), gain=0.01)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> Bernoulli:
        return Bernoulli(self.linear(x))

    def act(
        self, x: torch.Tensor, deterministic: bool, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.linear(x)
        if deterministic:
            action = (logits > 0).float()
        else:
            action = (uniform_draws(tuple(logits.shape)).to(logits.device) < torch.sigmoid(logits)).float()
        return action, Bernoulli(logits).log_probs(action)


class MultiCategoricalHead(nn.Module):
    def __init__(self, num_inputs: int, nvec: list[int]) -> None:
        super().__init__()
        self.nvec = [int(n) for n in nvec]
        self.linear = init_orthogonal(nn.Linear(num_inputs, sum(self.nvec)), gain=0.01)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> MultiCategorical:
        return MultiCategorical(self.linear(x), self.nvec, mask)

    def act(
        self, x: torch.Tensor, deterministic: bool, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        chunks = torch.split(self.linear(x), self.nvec, dim=-1)
        masks = torch.split(mask, self.nvec, dim=-1) if mask is not None else [None] * len(chunks)
        actions, log_probs = zip(*(_sample_categorical(c, deterministic, m) for c, m in zip(chunks, masks)))
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
