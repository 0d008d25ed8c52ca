"""Observation encoders: one per part of an observation, their features concatenated.

* image (rank-3 ``Box``, channels-first): the Nature CNN where both sides are at least
  ``NATURE_MIN_SIZE``, else a small CNN of 2x2 convolutions (as SB3's MiniGrid example) where
  they are at least 4, else a flatten; integer images are scaled to [0, 1] by their high;
* ``Discrete``: one-hot; ``MultiDiscrete``: concatenated one-hots;
* ``MultiBinary`` and any other ``Box``: flattened, as floats.

``ObservationEncoder`` maps an observation (a tensor, or a ``TensorDict`` of parts) to
``features (B, F)``; the action mask part (``spaces.ACTION_MASK``) is no input: the action
head takes it.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from a2c_ppo.init import init_orthogonal
from a2c_ppo.observations import Obs
from a2c_ppo.spaces import ACTION_MASK, is_image

NATURE_MIN_SIZE = 36  # smallest height/width the Nature CNN's three convolutions accept
SMALL_MIN_SIZE = 4  # the small CNN's three 2x2 convolutions need 4 pixels a side
IMAGE_FEATURES = 256  # a Nature-CNN part's features in a multi-part observation (SB3's CombinedExtractor)
SMALL_IMAGE_FEATURES = 128


def nature_convolutions(channels: int) -> nn.Sequential:
    """conv 32x8 stride 4, conv 64x4 stride 2, conv 64x3 stride 1 (ReLU each), flatten."""
    gain = math.sqrt(2)
    return nn.Sequential(
        init_orthogonal(nn.Conv2d(channels, 32, 8, stride=4), gain),
        nn.ReLU(),
        init_orthogonal(nn.Conv2d(32, 64, 4, stride=2), gain),
        nn.ReLU(),
        init_orthogonal(nn.Conv2d(64, 64, 3, stride=1), gain),
        nn.ReLU(),
        nn.Flatten(),
    )


def small_convolutions(channels: int) -> nn.Sequential:
    """conv 16, 32, 64 of 2x2, stride 1 (ReLU each), flatten: for 4x4 to 35x35 images."""
    gain = math.sqrt(2)
    layers: list[nn.Module] = []
    for inputs, outputs in ((channels, 16), (16, 32), (32, 64)):
        layers += [init_orthogonal(nn.Conv2d(inputs, outputs, 2), gain), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten())


def image_scale(space: gym.spaces.Box) -> float:
    """1 / the highest value of an integer image (uint8 frames: 1/255); 1 for floats, and for an
    integer image declared unbounded above (gymnasium keeps its ``high`` of ``np.inf`` as the
    dtype's maximum, whose inverse, 1e-19 for int64, would leave every pixel near 0)."""
    if not np.issubdtype(space.dtype, np.integer) or not space.bounded_above.all():
        return 1.0
    high = float(np.max(space.high))
    return 1.0 / high if high > 0 else 1.0


#: frame types whose every value bf16 (and fp16) hold exactly
_EIGHT_BIT = (torch.uint8, torch.int8, torch.bool)


def scaled_frames(frames: torch.Tensor, scale: float) -> torch.Tensor:
    """``frames (B, C, H, W)`` as floats times ``scale``, for the first convolution.

    Under bf16 autocast, 8-bit frames go straight to bf16 (exact) and are scaled in place: the
    product is computed in float32 and rounded once, the same values autocast would give the
    convolution from a float32 copy, without making that copy (Pong x8 trains 1.07x faster in
    bf16, docs/BENCHMARKS.md). Never scales ``frames`` itself in place."""
    device = frames.device.type
    dtype = torch.float32
    if frames.dtype in _EIGHT_BIT and torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
    if frames.dtype == dtype:
        return frames * scale
    return frames.to(dtype).mul_(scale)


class ImageEncoder(nn.Module):
    """A channels-first image -> ``features`` (ReLU): the Nature or the small CNN."""

    def __init__(self, space: gym.spaces.Box, features: int) -> None:
        super().__init__()
        shape = tuple(space.shape)
        self.scale = image_scale(space)
        convs = (nature_convolutions if min(shape[1:]) >= NATURE_MIN_SIZE else small_convolutions)(shape[0])
        with torch.no_grad():
            flat = convs(torch.zeros(1, *shape)).shape[1]
        self.net = nn.Sequential(*convs, init_orthogonal(nn.Linear(flat, features), math.sqrt(2)), nn.ReLU())
        self.output_size = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(scaled_frames(x, self.scale))


class OneHot(nn.Module):
    """Class indices ``(B, *shape)``, counted from each part's ``start``, -> concatenated
    one-hots ``(B, sum(nvec))``."""

    def __init__(self, nvec: list[int], start: list[int] | None = None) -> None:
        super().__init__()
        self.nvec = nvec
        self.output_size = sum(nvec)
        self.shifted = start is not None and any(start)
        # not persistent: a checkpoint's parameters stay those of every earlier version
        self.start: torch.Tensor
        self.register_buffer("start", torch.tensor(start or [0] * len(nvec)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long().reshape(x.shape[0], -1)
        if self.shifted:
            x = x - self.start
        if len(self.nvec) == 1:
            return F.one_hot(x[:, 0], self.nvec[0]).float()
        return torch.cat([F.one_hot(x[:, i], n) for i, n in enumerate(self.nvec)], dim=-1).float()


class Flatten(nn.Module):
    """Any array ``(B, *shape)`` -> floats ``(B, prod(shape))``."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.output_size = int(np.prod(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1).float()


def part_encoder(space: gym.Space, image_features: int = IMAGE_FEATURES) -> nn.Module:
    """The encoder for one observation part (see the module docstring)."""
    if isinstance(space, gym.spaces.Discrete):
        return OneHot([int(space.n)], [int(space.start)])
    if isinstance(space, gym.spaces.MultiDiscrete):
        return OneHot([int(n) for n in space.nvec.reshape(-1)], [int(k) for k in space.start.reshape(-1)])
    if is_image(space) and min(space.shape[1:]) >= SMALL_MIN_SIZE:
        large = min(space.shape[1:]) >= NATURE_MIN_SIZE
        return ImageEncoder(space, image_features if large else SMALL_IMAGE_FEATURES)
    return Flatten(tuple(space.shape or ()))


class ObservationEncoder(nn.Module):
    """An observation (one part, or a ``TensorDict`` of parts) -> features ``(B, F)``."""

    def __init__(self, space: gym.Space) -> None:
        super().__init__()
        parts: dict[str | None, gym.Space] = {None: space}
        if isinstance(space, gym.spaces.Dict):
            parts = {key: part for key, part in space.spaces.items()}
        self.keys = [key for key in parts if key != ACTION_MASK]
        encoders = [part_encoder(parts[key]) for key in self.keys]
        self.parts = nn.ModuleList(encoders)
        self.output_size: int = sum(encoder.output_size for encoder in encoders)  # type: ignore[misc]

    def forward(self, obs: Obs) -> torch.Tensor:
        if not isinstance(obs, dict):
            return self.parts[0](obs)
        features = [encoder(obs[key]) for key, encoder in zip(self.keys, self.parts)]
        return features[0] if len(features) == 1 else torch.cat(features, dim=-1)
