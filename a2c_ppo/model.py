"""The actor-critic Policy and its bases (feature extractors with a value head).

A base maps ``(obs (B, *obs_shape), rnn_hxs (N, H), masks (B, 1))`` to
``(value (B, 1), actor_features (B, F), rnn_hxs (N, H))``; the Policy puts an
action-distribution head on the actor features. Non-recurrent bases carry a dummy
hidden state of size 1 (and ``B == N``) so storage and loops need no special case.

Recurrent bases accept two input layouts:

* step mode, ``B == N``: one step of N envs; ``masks`` (0 at an episode start) zero the
  incoming state first;
* sequence mode, ``B == T * N``: T steps of N sequences, flattened time-major (row
  ``t * N + n``), with ``rnn_hxs`` the state *before* step 0. The net runs one RNN call
  per span between time steps where any mask is 0, not one call per step, and returns
  the state after step T-1.

An LSTM's ``(h, c)`` are packed side by side into one vector of size ``2 * hidden`` so
storage keeps a single hidden-state tensor.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from a2c_ppo.distributions import make_head
from a2c_ppo.init import init_orthogonal

RNN_TYPES = ("gru", "lstm")
NATURE_MIN_SIZE = 36  # smallest height/width the Nature CNN's three convolutions accept


class NNBase(nn.Module):
    """Shared recurrent machinery: an optional GRU/LSTM layer with mask handling."""

    def __init__(self, recurrent: bool, recurrent_input_size: int, hidden_size: int, rnn_type: str = "gru") -> None:
        super().__init__()
        self._hidden_size = hidden_size
        self._recurrent = recurrent
        self.rnn_type = rnn_type
        if not recurrent:
            return
        if rnn_type not in RNN_TYPES:
            raise ValueError(f"unknown recurrent type {rnn_type!r}: use one of {', '.join(RNN_TYPES)}")
        rnn_cls = nn.GRU if rnn_type == "gru" else nn.LSTM
        self.rnn = rnn_cls(recurrent_input_size, hidden_size)
        for name, param in self.rnn.named_parameters():
            if name.startswith("weight"):
                nn.init.orthogonal_(param)
            else:
                nn.init.zeros_(param)
        if rnn_type == "lstm":
            # Forget-gate bias 1 (gate order i, f, g, o): remember by default.
            with torch.no_grad():
                self.rnn.bias_ih_l0[hidden_size : 2 * hidden_size].fill_(1.0)

    @property
    def is_recurrent(self) -> bool:
        return self._recurrent

    @property
    def recurrent_hidden_state_size(self) -> int:
        if not self._recurrent:
            return 1
        return 2 * self._hidden_size if self.rnn_type == "lstm" else self._hidden_size

    @property
    def output_size(self) -> int:
        return self._hidden_size

    # (N, H') packed vector <-> the state nn.GRU / nn.LSTM take, with a layer dim of 1.
    def _unpack(self, hxs: torch.Tensor):
        if self.rnn_type == "lstm":
            h, c = hxs.chunk(2, dim=-1)
            return h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()
        return hxs.unsqueeze(0).contiguous()

    def _pack(self, state) -> torch.Tensor:
        if self.rnn_type == "lstm":
            return torch.cat([state[0].squeeze(0), state[1].squeeze(0)], dim=-1)
        return state.squeeze(0)

    def _forward_rnn(
        self, x: torch.Tensor, hxs: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, in)``, ``hxs (N, H')``, ``masks (B, 1)`` -> ``(out (B, hidden), hxs (N, H'))``."""
        N = hxs.size(0)
        masks = masks.to(x.dtype).reshape(-1, 1)
        if x.size(0) == N:  # step mode
            out, state = self.rnn(x.unsqueeze(0), self._unpack(hxs * masks))
            return out.squeeze(0), self._pack(state)
        if x.size(0) % N != 0:
            raise ValueError(f"recurrent input of {x.size(0)} rows is not T x {N} sequences")
        T = x.size(0) // N
        x = x.view(T, N, x.size(1))
        masks = masks.view(T, N)
        # Time steps (after the first) where some sequence starts a new episode: the RNN
        # runs uninterrupted over each span between them.
        starts = ((masks[1:] == 0).any(dim=-1).nonzero().squeeze(-1) + 1).cpu().tolist()
        bounds = [0] + starts + [T]
        outputs = []
        for begin, end in zip(bounds[:-1], bounds[1:]):
            hxs = hxs * masks[begin].view(N, 1)
            out, state = self.rnn(x[begin:end], self._unpack(hxs))
            hxs = self._pack(state)
            outputs.append(out)
        return torch.cat(outputs, dim=0).view(T * N, -1), hxs


class MLPBase(NNBase):
    """Separate actor and critic towers of ``hidden_size`` x 2 tanh layers.

    Recurrent layout: the GRU/LSTM (width ``hidden_size``) reads the raw observation and
    both towers read its output, so the value and the policy share the memory but not the
    layers after it.
    """

    def __init__(self, num_inputs: int, hidden_size: int = 64, recurrent: bool = False, rnn_type: str = "gru") -> None:
        super().__init__(recurrent, num_inputs, hidden_size, rnn_type)
        if recurrent:
            num_inputs = hidden_size
        gain = math.sqrt(2)
        self.actor = nn.Sequential(
            init_orthogonal(nn.Linear(num_inputs, hidden_size), gain),
            nn.Tanh(),
            init_orthogonal(nn.Linear(hidden_size, hidden_size), gain),
            nn.Tanh(),
        )
        self.critic = nn.Sequential(
            init_orthogonal(nn.Linear(num_inputs, hidden_size), gain),
            nn.Tanh(),
            init_orthogonal(nn.Linear(hidden_size, hidden_size), gain),
            nn.Tanh(),
        )
        self.critic_linear = init_orthogonal(nn.Linear(hidden_size, 1), gain=1.0)

    def forward(
        self, inputs: torch.Tensor, rnn_hxs: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = inputs.float()
        if self.is_recurrent:
            x, rnn_hxs = self._forward_rnn(x, rnn_hxs, masks)
        return self.critic_linear(self.critic(x)), self.actor(x), rnn_hxs


class CNNBase(NNBase):
    """The Nature-DQN trunk shared by actor and critic, optionally followed by a GRU/LSTM.

    conv 32x8 stride 4, conv 64x4 stride 2, conv 64x3 stride 1, flatten, Linear
    ``hidden_size`` (512 in the paper), ReLU. Channels-first input of at least 36x36;
    ``scale`` (1/255 for uint8 frames) is applied inside the model, so storage and the env
    keep uint8. The critic is one linear layer on the (recurrent) features.
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        hidden_size: int = 512,
        recurrent: bool = False,
        rnn_type: str = "gru",
        scale: float = 1.0 / 255.0,
    ) -> None:
        super().__init__(recurrent, hidden_size, hidden_size, rnn_type)
        if len(obs_shape) != 3 or min(obs_shape[1:]) < NATURE_MIN_SIZE:
            raise ValueError(
                f"the Nature CNN needs channels-first image observations of at least "
                f"{NATURE_MIN_SIZE}x{NATURE_MIN_SIZE} (C, H, W), got shape {tuple(obs_shape)}"
            )
        self.scale = scale
        gain = math.sqrt(2)
        channels = obs_shape[0]
        convs = nn.Sequential(
            init_orthogonal(nn.Conv2d(channels, 32, 8, stride=4), gain),
            nn.ReLU(),
            init_orthogonal(nn.Conv2d(32, 64, 4, stride=2), gain),
            nn.ReLU(),
            init_orthogonal(nn.Conv2d(64, 64, 3, stride=1), gain),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = convs(torch.zeros(1, *obs_shape)).shape[1]
        self.main = nn.Sequential(*convs, init_orthogonal(nn.Linear(flat, hidden_size), gain), nn.ReLU())
        self.critic_linear = init_orthogonal(nn.Linear(hidden_size, 1), gain=1.0)

    def forward(
        self, inputs: torch.Tensor, rnn_hxs: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.main(inputs.float() * self.scale)
        if self.is_recurrent:
            x, rnn_hxs = self._forward_rnn(x, rnn_hxs, masks)
        return self.critic_linear(x), x, rnn_hxs


def is_image_space(obs_space: gym.Space) -> bool:
    return isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 3


def default_base(obs_space: gym.Space, base_kwargs: dict[str, Any]) -> nn.Module:
    """The base the observation space calls for: MLP for 1-D Box, Nature CNN for images.

    ``base_kwargs``: ``hidden_size`` (``None``: 64 for the MLP, 512 for the CNN),
    ``recurrent`` and ``rnn_type``.
    """
    kwargs = dict(base_kwargs)
    hidden_size = kwargs.pop("hidden_size", None)
    if isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1:
        return MLPBase(obs_space.shape[0], hidden_size=hidden_size or 64, **kwargs)
    if is_image_space(obs_space):
        shape = tuple(obs_space.shape)
        if shape[0] > 4 and shape[-1] <= 4:
            raise ValueError(
                f"image observations must be channels-first (C, H, W), got shape {shape}: it looks "
                "channels-last; transpose it (the Atari pipeline already gives (4, 84, 84))"
            )
        scale = 1.0 / 255.0 if obs_space.dtype == np.uint8 else 1.0
        return CNNBase(shape, hidden_size=hidden_size or 512, scale=scale, **kwargs)
    raise ValueError(f"unsupported observation space {obs_space}: use a 1-D Box or a (C, H, W) image Box")


class Policy(nn.Module):
    """Actor-critic: a base plus an action-distribution head for ``action_space``."""

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.Space,
        base: nn.Module | None = None,
        base_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.base = base if base is not None else default_base(obs_space, base_kwargs or {})
        self.dist = make_head(action_space, self.base.output_size)

    @property
    def is_recurrent(self) -> bool:
        return self.base.is_recurrent

    @property
    def recurrent_hidden_state_size(self) -> int:
        return self.base.recurrent_hidden_state_size

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, rnn_hxs: torch.Tensor, masks: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> value (B, 1), action (B, A), log_prob (B, 1), rnn_hxs (N, H).

        The per-step acting path: no autograd graph (``evaluate_actions`` is the
        differentiable path) and no distribution objects (the head samples directly).
        """
        value, features, rnn_hxs = self.base(obs, rnn_hxs, masks)
        action, log_prob = self.dist.act(features, deterministic)
        return value, action, log_prob, rnn_hxs

    def get_value(self, obs: torch.Tensor, rnn_hxs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """-> value (B, 1)."""
        value, _, _ = self.base(obs, rnn_hxs, masks)
        return value

    def evaluate_actions(
        self, obs: torch.Tensor, rnn_hxs: torch.Tensor, masks: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> value (B, 1), log_prob (B, 1), entropy (B,), rnn_hxs (N, H)."""
        value, features, rnn_hxs = self.base(obs, rnn_hxs, masks)
        dist = self.dist(features)
        return value, dist.log_probs(action), dist.entropy(), rnn_hxs


def make_policy(
    obs_space: gym.Space,
    action_space: gym.Space,
    *,
    hidden_size: int | None = None,
    recurrent: bool = False,
    rnn_type: str = "gru",
) -> Policy:
    """The Policy for these spaces: an MLP or Nature-CNN base (``hidden_size`` None: its
    default width), optionally recurrent (``rnn_type`` gru or lstm), and the action head."""
    base_kwargs = {"hidden_size": hidden_size, "recurrent": recurrent, "rnn_type": rnn_type}
    return Policy(obs_space, action_space, base_kwargs=base_kwargs)
