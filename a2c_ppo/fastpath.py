"""The fast path for small feed-forward MLP policies: acting in numpy, the gradient by hand.

Classic control and MuJoCo policies are two small towers (``model.MLPBase``) and a
categorical or diagonal-Gaussian head. At these sizes a torch op's fixed cost (some 5 us)
dwarfs its arithmetic, so the rollout acts in numpy (``NumpyActor``, a tenth of the
overhead) and PPO (each minibatch) and A2C (each update) compute the gradient without
autograd (``HandGradient``, about 0.6x autograd's time; docs/BENCHMARKS.md). Both compute
exactly what ``Policy.act`` and ``Policy.evaluate_actions`` compute: the towers are the
policy's own Linear layers and activations, and every log-probability, entropy and sampling
rule is the one function in ``distributions.py``, called with ``numpy`` or ``torch`` as the
array module. Random numbers
come from torch's generator on every path, so one seed gives the same actions either way.

``fast_mlp(policy)`` is the one gate for both: it returns the policy's parts, or ``None``
with the reason in ``why_not_fast(policy)``, for anything else (recurrent or custom bases,
other activations or heads, parameters outside the towers and heads). ``--fast-path off``
turns the fast path off, leaving ``Policy.act`` and autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from a2c_ppo.distributions import (
    CategoricalHead,
    DiagGaussianHead,
    categorical_sample,
    gaussian_log_prob,
    log_softmax,
)
from a2c_ppo.draws import normal_draws, uniform_draws
from a2c_ppo.model import MLPBase, Policy
from a2c_ppo.observations import Obs
from a2c_ppo.sde import StateDependentNoiseHead

#: Widest hidden layer acted on in numpy: beyond it the matrix products, not the per-op
#: overhead, dominate, and torch's kernels are the better choice.
MAX_NUMPY_WIDTH = 256

ActFunction = Callable[[Obs, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Activation:
    """An activation's forward pass for array module ``xp``, and its derivative from the output."""

    forward: Callable[[Any, Any], Any]
    backward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (d_y, y) -> d_z


ACTIVATIONS: dict[type[nn.Module], Activation] = {
    nn.Tanh: Activation(lambda xp, z: xp.tanh(z), lambda d_y, y: torch.ops.aten.tanh_backward(d_y, y)),
    nn.ReLU: Activation(
        lambda xp, z: torch.relu(z) if xp is torch else np.maximum(z, 0.0), lambda d_y, y: d_y * (y > 0)
    ),
}

Layer = tuple[nn.Linear, Activation]


@dataclass(frozen=True)
class FastMLP:
    """A supported policy's parts: each tower's (Linear, activation) layers and the heads."""

    actor: list[Layer]
    critic: list[Layer]
    value_head: nn.Linear
    action_head: nn.Linear
    log_std: nn.Parameter | None  # the Gaussian head's; None for a categorical head


def _tower(sequential: nn.Module) -> list[Layer] | None:
    modules = list(sequential.children())
    if len(modules) % 2 or not all(type(m) is nn.Linear for m in modules[::2]):
        return None
    activations = [ACTIVATIONS.get(type(m)) for m in modules[1::2]]
    if any(a is None for a in activations):
        return None
    return list(zip(modules[::2], activations))  # type: ignore[arg-type]


def why_not_fast(policy: nn.Module) -> str | None:
    """Why the fast path cannot compute for ``policy`` (``None``: it can)."""
    base, head = getattr(policy, "base", None), getattr(policy, "dist", None)
    if type(base) is not MLPBase:
        return f"the base is a {type(base).__name__}, not the plain MLPBase"
    if base.is_recurrent:
        return "the policy is recurrent"
    if isinstance(head, StateDependentNoiseHead):  # its noise comes from per-env matrices, not one draw a step
        return "the action head is gSDE's (--use-sde)"
    if type(head) not in (CategoricalHead, DiagGaussianHead):
        return f"the action head is a {type(head).__name__}"
    if _tower(base.actor) is None or _tower(base.critic) is None:
        supported = ", ".join(t.__name__ for t in ACTIVATIONS)
        return f"a tower is not Linear layers with {supported} activations"
    params = list(policy.parameters())
    if any(p.dtype != torch.float32 or p.device != params[0].device for p in params):
        return "the parameters are not all float32 on one device"
    parts = fast_parts(policy)
    covered = {id(p) for layer in (*parts.actor, *parts.critic) for p in layer[0].parameters()}
    covered |= {id(p) for m in (parts.value_head, parts.action_head) for p in m.parameters()}
    if parts.log_std is not None:
        covered.add(id(parts.log_std))
    if covered != {id(p) for p in params}:
        return "the policy has parameters outside the towers and heads"
    return None


def fast_parts(policy: Any) -> FastMLP:
    """The parts of a policy of the supported shape (call ``why_not_fast`` first)."""
    base, head = policy.base, policy.dist
    gaussian = isinstance(head, DiagGaussianHead)
    actor, critic = _tower(base.actor), _tower(base.critic)
    assert actor is not None and critic is not None
    return FastMLP(
        actor=actor,
        critic=critic,
        value_head=base.critic_linear,
        action_head=head.mean if gaussian else head.linear,
        log_std=head.log_std.bias if gaussian else None,
    )


def fast_mlp(policy: nn.Module) -> FastMLP | None:
    """The gate: the policy's parts if the fast path supports it, else ``None``."""
    return None if why_not_fast(policy) is not None else fast_parts(policy)


# ----------------------------------------------------------------------------- acting in numpy


#: Widest tower layer acted on as one block-diagonal product of both towers: up to it the
#: product's zero blocks cost less than the numpy calls it saves (3.1 of 8.8 us for a 64-wide
#: policy and one env; at 256 wide it is 1.4x slower: docs/BENCHMARKS.md).
MAX_FUSED_WIDTH = 64

NumpyLayer = tuple[np.ndarray, np.ndarray, Activation | None]  # (W^T (in, out), b (out,), activation)


def _numpy_layers(layers: list[Layer]) -> list[NumpyLayer]:
    """Numpy views ``(W^T, b, activation)`` of a tower's layers."""
    return [(lin.weight.detach().numpy().T, lin.bias.detach().numpy(), act) for lin, act in layers]


def _numpy_tower(x: np.ndarray, layers: list[NumpyLayer]) -> np.ndarray:
    for weight, bias, activation in layers:
        x = x @ weight + bias
        if activation is not None:
            x = activation.forward(np, x)
    return x


#: A fused layer's block and the parameter it copies: ``np.copyto(block, parameter)``.
Copy = tuple[np.ndarray, np.ndarray]


def _fused(parts: FastMLP) -> tuple[list[NumpyLayer], list[Copy]] | None:
    """Both towers and heads as one stack of layers on the concatenated state, whose output is
    ``[head output (N, A or K) | value (N, 1)]``, and the copies that fill its blocks: each
    weight ``[[actor, 0], [0, critic]]`` (the first layer ``[actor, critic]``, both reading the
    observation), each bias ``[actor | critic]``. ``None`` where the towers differ in depth or
    activations, or are wider than ``MAX_FUSED_WIDTH``."""
    actor, critic = _numpy_layers(parts.actor), _numpy_layers(parts.critic)
    if len(actor) != len(critic) or any(a[2] is not c[2] for a, c in zip(actor, critic)):
        return None
    if max(lin.out_features for lin, _ in parts.actor + parts.critic) > MAX_FUSED_WIDTH:
        return None
    action_head, value_head = _numpy_layers([(parts.action_head, None), (parts.value_head, None)])  # type: ignore[list-item]
    layers: list[NumpyLayer] = []
    copies: list[Copy] = []
    for i, (a, c) in enumerate([*zip(actor, critic), (action_head, value_head)]):
        (a_in, a_out), (c_in, c_out) = a[0].shape, c[0].shape
        critic_rows = slice(0, c_in) if i == 0 else slice(a_in, a_in + c_in)
        # Column-major where the blocks share the input, as the transposed weights are: the
        # layout picks the BLAS kernel, and with it the rounding of the actions.
        weight = np.zeros((max(a_in, critic_rows.stop), a_out + c_out), np.float32, order="F" if i == 0 else "C")
        bias = np.empty(a_out + c_out, np.float32)
        copies += [(weight[:a_in, :a_out], a[0]), (weight[critic_rows, a_out:], c[0]), (bias[:a_out], a[1]),
                   (bias[a_out:], c[1])]  # fmt: skip
        layers.append((weight, bias, a[2]))
    return layers, copies


class NumpyActor:
    """``policy.act`` computed in numpy, for the parameters the policy has when it is built or
    last ``refresh``ed (build it again after they move: the unfused layers are views of them);
    ``deterministic`` takes the mean or the most likely class.

    Both towers and heads run as one stack of block-diagonal layers where that is cheaper
    (``_fused``): half the numpy calls, which dominate at these sizes."""

    def __init__(self, parts: FastMLP, deterministic: bool = False) -> None:
        self.deterministic = deterministic
        fused = _fused(parts)
        self.fused: list[NumpyLayer] | None = None if fused is None else fused[0]
        self._copies: list[Copy] = [] if fused is None else fused[1]
        if self.fused is None:  # each tower with its head: views of the parameters
            self.actor = _numpy_layers(parts.actor + [(parts.action_head, None)])  # type: ignore[list-item]
            self.critic = _numpy_layers(parts.critic + [(parts.value_head, None)])  # type: ignore[list-item]
        self.log_std = self.std = None
        if parts.log_std is not None:  # a copy, as the fused blocks are, and its exp
            parameter = parts.log_std.detach().numpy()
            self.log_std, self.std = np.empty_like(parameter), np.empty_like(parameter)
            self._copies.append((self.log_std, parameter))
        self._buffers: dict[tuple[int, ...], torch.Tensor] = {}  # for the random draws, by shape
        self.refresh()

    def refresh(self) -> None:
        """Read the parameters again, after an update changed them in place: the fused blocks
        and the log-std are copies (a rollout refreshes its actor rather than building one: the
        gate and the build cost 5% of an A2C run at 5-step rollouts)."""
        for block, parameter in self._copies:
            np.copyto(block, parameter)
        if self.log_std is not None:
            np.exp(self.log_std, out=self.std)

    def __call__(
        self, obs: Obs, rnn_hxs: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``obs (N, D)`` -> ``value (N, 1)``, ``action (N, A)``, ``log_prob (N, 1)``, ``rnn_hxs``."""
        assert isinstance(obs, torch.Tensor)  # the gate admits vector observations only
        x = obs.numpy().astype(np.float32, copy=False)
        if self.fused is not None:
            both = _numpy_tower(x, self.fused)
            out, value = both[:, :-1], both[:, -1:]
        else:
            out, value = _numpy_tower(x, self.actor), _numpy_tower(x, self.critic)
        action, log_prob = self._categorical(out) if self.log_std is None else self._gaussian(out)
        return torch.from_numpy(value), torch.from_numpy(action), torch.from_numpy(log_prob), rnn_hxs

    def _gaussian(self, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.log_std is not None and self.std is not None
        if self.deterministic:
            noise = np.zeros_like(mean)
        else:
            noise = normal_draws(mean.shape, self._buffer(mean.shape)).numpy()
        return mean + self.std * noise, gaussian_log_prob(np, noise, self.log_std)

    def _buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A tensor of ``shape`` kept for the random draws of every call (at one env's handful of
        numbers, filling it takes a fifth of ``torch.randn``'s time). A normal tensor, not an
        inference one, so that the actor also works outside inference mode."""
        buffer = self._buffers.get(shape)
        if buffer is None:
            with torch.inference_mode(False):
                buffer = self._buffers[shape] = torch.empty(shape)
        return buffer

    def _categorical(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_p = log_softmax(np, logits)
        if self.deterministic:
            action = log_p.argmax(-1)[:, None]
        else:
            draws = uniform_draws((len(log_p), 1), self._buffer((len(log_p), 1))).numpy()
            action = categorical_sample(np, log_p, draws)
        action = action.astype(np.int64, copy=False)
        return action, log_p[np.arange(len(log_p)), action[:, 0], None]  # (N, 1): a third of take_along_axis'


def acting_function(policy: Policy, deterministic: bool = False, fast: bool = True) -> ActFunction:
    """The fastest correct ``act`` for ``policy``: a ``NumpyActor`` where the gate lets it
    (and ``fast``) on the CPU up to ``MAX_NUMPY_WIDTH`` wide, else ``policy.act``."""
    parts = fast_mlp(policy) if fast else None
    if (
        parts is not None
        and parts.value_head.weight.device.type == "cpu"
        and max(lin.out_features for lin, _ in parts.actor + parts.critic) <= MAX_NUMPY_WIDTH
    ):
        return NumpyActor(parts, deterministic)
    return lambda obs, rnn_hxs, masks: policy.act(obs, rnn_hxs, masks, deterministic)
