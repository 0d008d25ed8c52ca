"""A numpy twin of ``Policy.act`` for the small feed-forward MLP policies of classic control
and MuJoCo, used by the rollout on the CPU.

Acting runs once per env step on a handful of rows, where a torch op's fixed cost (some
5 us) dwarfs its arithmetic: ``Policy.act`` for a 64x64 MLP is ~25 ops and ~20 module calls.
numpy does the same sums with about a tenth of that overhead (measured in
docs/BENCHMARKS.md). The arrays are numpy *views* of the policy's parameter tensors, so they
see every optimizer step and ``load_state_dict`` without copying; build the actor again after
moving the policy. Random numbers come from torch's global generator (the same draws
``Policy.act`` makes for a Gaussian), so runs stay reproducible and resumable exactly.

``acting_function(policy)`` returns this actor where it applies (non-recurrent MLP base,
Discrete or 1-D Box actions, float32 CPU parameters, width up to ``MAX_HIDDEN``) and
``policy.act`` otherwise; both map ``(obs (N, D), rnn_hxs (N, H), masks (N, 1))`` to
``(value (N, 1), action (N, A), log_prob (N, 1), rnn_hxs (N, H))``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from a2c_ppo.distributions import LOG_SQRT_2PI, CategoricalHead, DiagGaussianHead
from a2c_ppo.model import MLPBase, Policy

#: Widest hidden layer acted on in numpy: beyond it the matrix products, not the per-op
#: overhead, dominate, and torch's kernels are the better choice.
MAX_HIDDEN = 256

ActFunction = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
]


def _linear(layer: torch.nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    """``(weight.T (in, out), bias (out,))``: numpy views of the layer's parameters."""
    return layer.weight.detach().numpy().T, layer.bias.detach().numpy()


def _layers(sequential: torch.nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    """The tower's Linear layers, in order, as ``_linear`` views."""
    return [_linear(m) for m in sequential if isinstance(m, torch.nn.Linear)]


def _tower(x: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    for weight, bias in layers:
        x = np.tanh(x @ weight + bias)
    return x


class NumpyActor:
    """``policy.act`` computed in numpy (see the module docstring); ``deterministic`` takes
    the mean or the most likely class instead of sampling."""

    def __init__(self, policy: Policy, deterministic: bool = False) -> None:
        base, head = policy.base, policy.dist
        assert isinstance(base, MLPBase) and isinstance(head, (CategoricalHead, DiagGaussianHead))
        self.deterministic = deterministic
        self.actor = _layers(base.actor)
        self.critic = _layers(base.critic)
        self.value_head = _linear(base.critic_linear)
        self.action_head = _linear(head.linear if isinstance(head, CategoricalHead) else head.mean)
        self.log_std = head.log_std.bias.detach().numpy() if isinstance(head, DiagGaussianHead) else None

    def __call__(
        self, obs: torch.Tensor, rnn_hxs: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = obs.numpy().astype(np.float32, copy=False)
        weight, bias = self.value_head
        value = _tower(x, self.critic) @ weight + bias
        weight, bias = self.action_head
        out = _tower(x, self.actor) @ weight + bias
        action, log_prob = self._categorical(out) if self.log_std is None else self._gaussian(out, self.log_std)
        return torch.from_numpy(value), torch.from_numpy(action), torch.from_numpy(log_prob), rnn_hxs

    def _gaussian(self, mean: np.ndarray, log_std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """action = mean + std * noise, so its log-density needs only the noise."""
        if self.deterministic:
            noise = np.zeros_like(mean)
        else:
            noise = torch.randn(mean.shape).numpy()
        log_prob = (-0.5 * noise * noise - log_std - LOG_SQRT_2PI).sum(-1, keepdims=True, dtype=np.float32)
        return mean + np.exp(log_std) * noise, log_prob

    def _categorical(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sampled by inverting the CDF with one uniform draw per row."""
        shifted = logits - logits.max(-1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        if self.deterministic:
            action = log_p.argmax(-1)[:, None]
        else:
            uniform = torch.rand(len(logits), 1).numpy()
            below = (np.exp(log_p).cumsum(-1) < uniform).sum(-1, keepdims=True)
            # rounding can leave the last cumulative probability a hair under 1
            action = np.minimum(below, log_p.shape[-1] - 1)
        action = action.astype(np.int64)
        return action, log_p[np.arange(len(log_p)), action[:, 0], None]  # (N, 1): a third of take_along_axis' time


def numpy_actor_applies(policy: Policy) -> bool:
    """Whether ``NumpyActor`` can act for ``policy`` (see the module docstring)."""
    base, head = getattr(policy, "base", None), getattr(policy, "dist", None)
    return (
        isinstance(base, MLPBase)
        and not base.is_recurrent
        and isinstance(head, (CategoricalHead, DiagGaussianHead))
        and base.output_size <= MAX_HIDDEN
        and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in policy.parameters())
    )


def acting_function(policy: Policy, deterministic: bool = False) -> ActFunction:
    """The fastest correct ``act`` for ``policy`` now: a ``NumpyActor`` or ``policy.act``."""
    if numpy_actor_applies(policy):
        return NumpyActor(policy, deterministic)
    return lambda obs, rnn_hxs, masks: policy.act(obs, rnn_hxs, masks, deterministic)
