"""The actor-critic Policy and its bases (feature extractors with a value head).

A base maps ``(obs (B, *obs_shape), rnn_hxs (N, H), masks (B, 1))`` to
``(value (B, 1), actor_features (B, F), rnn_hxs (N, H))``; the Policy puts an
action-distribution head on the actor features. Non-recurrent bases carry a dummy
hidden state of size 1 (and ``B == N``) so storage and loops need no special case.
Recurrent bases (``recurrent.NNBase``) also accept T steps of N sequences.

The base follows the observation space: ``MLPBase`` for a vector (1-D Box), ``CNNBase`` (the
Nature CNN) for an image of at least 36x36, and ``MultiInputBase`` for everything else
(Discrete, MultiDiscrete, MultiBinary, small images, other Box shapes, and Dict observations
of any of these: an encoder per part, ``encoders.py``). An observation with an action mask
part (``spaces.ACTION_MASK``) gives the mask to the action head.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, Protocol

import gymnasium as gym
import torch
import torch.nn as nn

from a2c_ppo.distributions import make_head
from a2c_ppo.encoders import (
    NATURE_MIN_SIZE,
    Encoded,
    ObservationEncoder,
    image_scale,
    nature_convolutions,
    scaled_frames,
)
from a2c_ppo.init import init_orthogonal
from a2c_ppo.observations import Obs
from a2c_ppo.recurrent import NNBase
from a2c_ppo.spaces import ACTION_MASK, is_channels_last, is_image

#: The hidden activations of the MLP towers and the CNN's head layers, by name.
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}


def mlp_tower(num_inputs: int, hidden_size: int, activation: str, layers: int = 2) -> nn.Sequential:
    """``layers`` x (Linear ``hidden_size``, activation), orthogonal init with gain sqrt(2)."""
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [init_orthogonal(nn.Linear(num_inputs if i == 0 else hidden_size, hidden_size), math.sqrt(2)),
                    ACTIVATIONS[activation]()]  # fmt: skip
    return nn.Sequential(*modules)


class MLPBase(NNBase):
    """Separate actor and critic towers of ``hidden_size`` x 2 ``activation`` layers (tanh by default).

    Recurrent layout: the GRU/LSTM (width ``hidden_size``) reads the raw observation and
    both towers read its output, so the value and the policy share the memory but not the
    layers after it.
    """

    def __init__(
        self,
        num_inputs: int,
        hidden_size: int = 64,
        recurrent: bool = False,
        rnn_type: str = "gru",
        activation: str = "tanh",
    ) -> None:
        super().__init__(recurrent, num_inputs, hidden_size, rnn_type)
        if recurrent:
            num_inputs = hidden_size
        self.actor = mlp_tower(num_inputs, hidden_size, activation)
        self.critic = mlp_tower(num_inputs, hidden_size, activation)
        self.critic_linear = init_orthogonal(nn.Linear(hidden_size, 1), gain=1.0)

    def features(self, inputs: Obs) -> torch.Tensor:
        """The towers' input ``(B, F)``."""
        assert isinstance(inputs, torch.Tensor)
        return inputs.float()

    def forward(
        self, inputs: Obs, rnn_hxs: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.features(inputs)
        if self.is_recurrent:
            x, rnn_hxs = self._forward_rnn(x, rnn_hxs, masks)
        return self.critic_linear(self.critic(x)), self.actor(x), rnn_hxs


class MultiInputBase(MLPBase):
    """Any observation space: an encoder per part (``encoders.ObservationEncoder``), their
    features concatenated into the MLP towers (or first into the GRU/LSTM).

    Feed-forward, each tower's first layer reads discrete parts of ``encoders.LOOKUP_MIN_WIDTH``
    classes or more for each class a row sets (``ObservationEncoder.lookup_pays``) by taking its
    weight's columns (``ObservationEncoder.linear``), not by multiplying one-hots; the GRU/LSTM,
    whose input weights ``nn.GRU`` applies itself, and a first layer something hooks (K-FAC
    records each Linear's input) read the one-hots."""

    def __init__(
        self,
        obs_space: gym.Space,
        hidden_size: int = 64,
        recurrent: bool = False,
        rnn_type: str = "gru",
        activation: str = "tanh",
    ) -> None:
        encoder = ObservationEncoder(obs_space)
        super().__init__(encoder.output_size, hidden_size, recurrent, rnn_type, activation)
        self.encoder = encoder

    def features(self, inputs: Obs) -> torch.Tensor:
        return self.encoder(inputs)

    def forward(
        self, inputs: Obs, rnn_hxs: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        first = (self.actor[0], self.critic[0])
        if (
            self.is_recurrent
            or not self.encoder.lookup_pays
            or any(m._forward_hooks or m._forward_pre_hooks for m in first)
        ):
            return super().forward(inputs, rnn_hxs, masks)
        encoded = self.encoder.encode(inputs)
        return self.critic_linear(self._tower(self.critic, encoded)), self._tower(self.actor, encoded), rnn_hxs

    def _tower(self, tower: nn.Sequential, encoded: Encoded) -> torch.Tensor:
        """``tower`` on the encoded observation ``(B, hidden)``, its first layer by lookup."""
        layers = iter(tower)
        x = self.encoder.linear(encoded, next(layers))  # type: ignore[arg-type]
        for layer in layers:
            x = layer(x)
        return x


class CNNBase(NNBase):
    """The Nature-DQN trunk shared by actor and critic, optionally followed by a GRU/LSTM.

    conv 32x8 stride 4, conv 64x4 stride 2, conv 64x3 stride 1, flatten, Linear
    ``hidden_size`` (512 in the paper), ReLU. Channels-first input of at least 36x36;
    ``scale`` (``encoders.image_scale``: 1/255 for uint8 frames) is applied inside the model,
    so storage and the env keep uint8. The critic is one linear layer on the (recurrent) features; with ``head_size``
    the actor and the critic each first take a layer of that many ``activation`` units (SB3's
    ``net_arch=dict(pi=[head_size], vf=[head_size])``), and the action head reads the actor's.
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        hidden_size: int = 512,
        recurrent: bool = False,
        rnn_type: str = "gru",
        scale: float = 1.0 / 255.0,
        head_size: int = 0,
        activation: str = "relu",
    ) -> None:
        super().__init__(recurrent, hidden_size, hidden_size, rnn_type)
        if len(obs_shape) != 3 or min(obs_shape[1:]) < NATURE_MIN_SIZE:
            raise ValueError(
                f"the Nature CNN needs channels-first image observations of at least "
                f"{NATURE_MIN_SIZE}x{NATURE_MIN_SIZE} (C, H, W), got shape {tuple(obs_shape)}"
            )
        self.scale = scale
        convs = nature_convolutions(obs_shape[0])
        with torch.no_grad():
            flat = convs(torch.zeros(1, *obs_shape)).shape[1]
        self.main = nn.Sequential(*convs, init_orthogonal(nn.Linear(flat, hidden_size), math.sqrt(2)), nn.ReLU())
        self.head_size = head_size
        if head_size:
            self.actor_head = mlp_tower(hidden_size, head_size, activation, layers=1)
            self.critic_head = mlp_tower(hidden_size, head_size, activation, layers=1)
        self.critic_linear = init_orthogonal(nn.Linear(head_size or hidden_size, 1), gain=1.0)

    @property
    def output_size(self) -> int:
        return self.head_size or super().output_size

    def forward(
        self, inputs: Obs, rnn_hxs: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        assert isinstance(inputs, torch.Tensor)
        x = self.main(scaled_frames(inputs, self.scale))
        if self.is_recurrent:
            x, rnn_hxs = self._forward_rnn(x, rnn_hxs, masks)
        if self.head_size:
            return self.critic_linear(self.critic_head(x)), self.actor_head(x), rnn_hxs
        return self.critic_linear(x), x, rnn_hxs


def uses_nature_cnn(obs_space: gym.Space) -> bool:
    """Whether ``default_base`` gives ``obs_space`` the Nature CNN: images of at least 36x36."""
    return is_image(obs_space) and min(obs_space.shape[1:]) >= NATURE_MIN_SIZE


def default_hidden_size(obs_space: gym.Space) -> int:
    """The width ``--hidden-size`` left unset (``None``) gives: 512 for the CNN's head, 64 otherwise."""
    return 512 if uses_nature_cnn(obs_space) else 64


def default_base(obs_space: gym.Space, base_kwargs: dict[str, Any]) -> MLPBase | CNNBase:
    """The base the observation space calls for (see the module docstring).

    ``base_kwargs``: ``hidden_size`` (``None``: 64 for the MLP towers, 512 for the CNN),
    ``recurrent``, ``rnn_type``, ``activation`` (of the MLP towers and the CNN's head layers)
    and ``cnn_head_size`` (the CNN's head layers; refused for other bases).
    """
    kwargs = dict(base_kwargs)
    hidden_size = kwargs.pop("hidden_size", None) or default_hidden_size(obs_space)
    head_size = kwargs.pop("cnn_head_size", 0)
    uses_cnn = uses_nature_cnn(obs_space)
    if head_size and not uses_cnn:
        raise ValueError(
            f"--cnn-head-size adds layers after the Nature CNN, which observations {obs_space} do not use; drop "
            f"--cnn-head-size (it needs image observations of at least {NATURE_MIN_SIZE}x{NATURE_MIN_SIZE})"
        )
    if isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1:
        return MLPBase(obs_space.shape[0], hidden_size=hidden_size, **kwargs)
    if is_image(obs_space) and is_channels_last(obs_space.shape):
        raise ValueError(
            f"image observations must be channels-first (C, H, W), got shape {obs_space.shape}: it looks "
            "channels-last; make the env with a2c_ppo.envs.make_env, which transposes it"
        )
    if uses_cnn and is_image(obs_space):
        shape = tuple(obs_space.shape)
        # integer frames of 0..high as 0..1 (1/255 for uint8 frames), as an image part of a Dict
        return CNNBase(shape, hidden_size=hidden_size, scale=image_scale(obs_space), head_size=head_size, **kwargs)
    return MultiInputBase(obs_space, hidden_size=hidden_size, **kwargs)


class Base(Protocol):
    """What the Policy needs of a base module (see the module docstring)."""

    @property
    def is_recurrent(self) -> bool: ...

    @property
    def recurrent_hidden_state_size(self) -> int: ...

    @property
    def output_size(self) -> int: ...

    def __call__(
        self, inputs: Obs, rnn_hxs: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


class Policy(nn.Module):
    """Actor-critic: a base plus an action-distribution head for ``action_space``."""

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.Space,
        base: Base | None = None,
        base_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.obs_space, self.action_space = obs_space, action_space
        self.base: Base = base if base is not None else default_base(obs_space, base_kwargs or {})
        self.dist = make_head(action_space, self.base.output_size)
        self.masked = isinstance(obs_space, gym.spaces.Dict) and ACTION_MASK in obs_space.spaces

    @property
    def is_recurrent(self) -> bool:
        return self.base.is_recurrent

    @property
    def recurrent_hidden_state_size(self) -> int:
        return self.base.recurrent_hidden_state_size

    def action_mask(self, obs: Obs) -> torch.Tensor | None:
        """The observation's action mask ``(B, K)`` bool (1 = allowed), if it has one (a vector
        env of one's own may give it as integers)."""
        if not self.masked:
            return None
        mask = obs[ACTION_MASK]  # type: ignore[index]
        return mask if mask.dtype == torch.bool else mask != 0

    @torch.no_grad()
    def act(
        self, obs: Obs, rnn_hxs: torch.Tensor, masks: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> value (B, 1), action (B, A), log_prob (B, 1), rnn_hxs (N, H).

        The per-step acting path: no autograd graph (``evaluate_actions`` is the
        differentiable path) and no distribution objects (the head samples directly).
        """
        value, features, rnn_hxs = self.base(obs, rnn_hxs, masks)
        action, log_prob = self.dist.act(features, deterministic, self.action_mask(obs))
        # float32 whatever precision computed them (bf16 under autocast): storage keeps float32
        action = action.float() if action.is_floating_point() else action
        return value.float(), action, log_prob.float(), rnn_hxs.float()

    def get_value(self, obs: Obs, rnn_hxs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """-> value (B, 1), float32."""
        value, _, _ = self.base(obs, rnn_hxs, masks)
        return value.float()

    def evaluate(self, obs: Obs, rnn_hxs: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """-> value (B, 1), the action distribution (under the action mask), rnn_hxs (N, H)."""
        value, features, rnn_hxs = self.base(obs, rnn_hxs, masks)
        return value, self.dist(features, self.action_mask(obs)), rnn_hxs

    def evaluate_actions(
        self, obs: Obs, rnn_hxs: torch.Tensor, masks: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> value (B, 1), log_prob (B, 1), entropy (B,), rnn_hxs (N, H) (under the action mask)."""
        value, dist, rnn_hxs = self.evaluate(obs, rnn_hxs, masks)
        return value, dist.log_probs(action), dist.entropy(), rnn_hxs


def make_policy(
    obs_space: gym.Space,
    action_space: gym.Space,
    *,
    hidden_size: int | None = None,
    recurrent: bool = False,
    rnn_type: str = "gru",
    activation: str = "tanh",
    cnn_head_size: int = 0,
) -> Policy:
    """The Policy for these spaces (see ``default_base``; ``hidden_size`` None: the base's
    default width), optionally recurrent (``rnn_type`` gru or lstm), and the action head."""
    base_kwargs = {"hidden_size": hidden_size, "recurrent": recurrent, "rnn_type": rnn_type, "activation": activation,
                   "cnn_head_size": cnn_head_size}  # fmt: skip
    return Policy(obs_space, action_space, base_kwargs=base_kwargs)


@contextlib.contextmanager
def eval_mode(policy: torch.nn.Module) -> Iterator[None]:
    """``policy`` in eval mode in the block, each module's own mode restored after: a network of
    one's own with dropout or batch norm acts in rollouts, evaluations and videos as ``enjoy.py``
    and ``load`` play it (deterministic episodes stay deterministic; a batch norm takes batches of
    one env), and acting changes none of its running statistics; updates train it in train mode
    (Stable-Baselines3's rule)."""
    modes = [(module, module.training) for module in policy.modules()]
    policy.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
