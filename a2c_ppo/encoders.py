"""Observation encoders: one per part of an observation, their features concatenated.

* image (rank-3 ``Box``, channels-first): the Nature CNN where both sides are at least
  ``NATURE_MIN_SIZE``, else a small CNN of 2x2 convolutions (as SB3's MiniGrid example) where
  they are at least 4, else a flatten; integer images are scaled to [0, 1] by their high;
* ``Discrete``: one-hot; ``MultiDiscrete``: concatenated one-hots;
* ``MultiBinary`` and any other ``Box``: flattened, as floats.

``ObservationEncoder`` maps an observation (a tensor, or a ``TensorDict`` of parts) to
``features (B, F)``; the action mask part (``spaces.ACTION_MASK``) is no input: the action
head takes it. A Linear layer on those features (the MLP towers' first) is ``linear``: it
takes the discrete parts' columns of the layer's weight rather than multiplying the weight by
their one-hots, the same numbers without a ``(B, n)`` one-hot (with which a
``Discrete(200000)`` observation trained at 6 steps a second in 3.2 GB).
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
#: Discrete parts enter the first layer by lookup (``ObservationEncoder.linear``) where their
#: one-hots have at least this many columns for each 1 they set: narrower (FrozenLake's 16
#: classes), the product costs no more, which acting one FrozenLake env took 4% longer by
#: lookup; and gathering one column for each of many narrow parts costs more than the product
#: of their one-hots (a PPO update on MultiDiscrete([2] * 64), 512 rows: 6x slower by lookup)
LOOKUP_MIN_WIDTH = 64


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
    one-hots ``(B, sum(nvec))``; ``columns`` gives where each part's 1 is instead."""

    def __init__(self, nvec: list[int], start: list[int] | None = None) -> None:
        super().__init__()
        self.nvec = nvec
        self.output_size = sum(nvec)
        # each part's first column less its start: a class's column is its index plus the shift
        shift = np.cumsum([0, *nvec[:-1]]) - np.asarray(start or [0] * len(nvec))
        self.shifted = bool(shift.any())
        # not persistent: a checkpoint's parameters stay those of every earlier version
        self.shift: torch.Tensor
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.long), persistent=False)

    def columns(self, x: torch.Tensor) -> torch.Tensor:
        """Class indices ``(B, *shape)`` -> the columns ``(B, len(nvec))`` the one-hots set."""
        x = x.long().reshape(x.shape[0], -1)
        return x + self.shift if self.shifted else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        columns = self.columns(x)
        # shape[0], not len(): a traced export keeps the batch size a variable
        return torch.zeros(columns.shape[0], self.output_size, device=columns.device).scatter_(1, columns, 1.0)


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


#: ``ObservationEncoder.encode``'s output: the features of the parts that are not discrete
#: ``(B, D)``, and the feature columns the discrete parts' one-hots set ``(B, K)``
Encoded = tuple[torch.Tensor | None, torch.Tensor | None]


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
        sizes: list[int] = [encoder.output_size for encoder in encoders]  # type: ignore[misc]
        self.output_size = sum(sizes)
        self.offsets = [int(offset) for offset in np.cumsum([0, *sizes[:-1]])]  # each part's first feature
        dense = [i for i, encoder in enumerate(encoders) if not isinstance(encoder, OneHot)]
        one_hot_width = self.output_size - sum(sizes[i] for i in dense)  # the discrete parts' features
        ones = sum(len(encoder.nvec) for encoder in encoders if isinstance(encoder, OneHot))  # 1s a row sets
        # whether ``linear`` is cheaper than the one-hots' product (``LOOKUP_MIN_WIDTH``)
        self.lookup_pays = ones > 0 and one_hot_width >= LOOKUP_MIN_WIDTH * ones
        # the weight's columns that read the dense parts (not persistent, as OneHot's shift)
        self.dense_columns: torch.Tensor
        columns = [torch.arange(sizes[i]) + self.offsets[i] for i in dense]
        self.register_buffer(
            "dense_columns", torch.cat(columns or [torch.zeros(0, dtype=torch.long)]), persistent=False
        )

    def _encoded_parts(self, obs: Obs) -> list[tuple[int, nn.Module, torch.Tensor]]:
        if not isinstance(obs, dict):
            return [(0, self.parts[0], obs)]
        return [(i, encoder, obs[key]) for i, (key, encoder) in enumerate(zip(self.keys, self.parts))]

    def forward(self, obs: Obs) -> torch.Tensor:
        features = [encoder(x) for _, encoder, x in self._encoded_parts(obs)]
        return features[0] if len(features) == 1 else torch.cat(features, dim=-1)

    def encode(self, obs: Obs) -> Encoded:
        """The observation as ``linear`` reads it (``Encoded``), for one or several layers."""
        dense, columns = [], []
        for i, encoder, x in self._encoded_parts(obs):
            if isinstance(encoder, OneHot):
                part = encoder.columns(x)
                columns.append(part + self.offsets[i] if self.offsets[i] else part)
            else:
                dense.append(encoder(x))
        joined = [None if not t else t[0] if len(t) == 1 else torch.cat(t, dim=-1) for t in (dense, columns)]
        return joined[0], joined[1]

    def linear(self, encoded: Encoded, layer: nn.Linear) -> torch.Tensor:
        """``layer(features) (B, out)`` of the observation ``encode`` gave: a one-hot times the
        weight is the weight's column at its 1, so each discrete part adds the columns of its
        classes (``index_select``: the layer's own weight, as checkpoints and the ONNX export hold
        it; the gradient reaches those columns only, as the one-hot's would)."""
        dense, columns = encoded
        if columns is None:
            return layer(dense)
        picked = layer.weight.index_select(1, columns.reshape(-1))  # (out, B * K)
        if columns.shape[1] > 1:
            picked = picked.view(len(picked), -1, columns.shape[1]).sum(-1)  # -1: an export takes any batch
        out = picked.t() + layer.bias
        if dense is not None:
            out = out + F.linear(dense, layer.weight.index_select(1, self.dense_columns))
        return out
