"""Weight initialisation shared by the bases and the heads."""

from __future__ import annotations

from typing import TypeVar

import torch.nn as nn

Layer = TypeVar("Layer", nn.Linear, nn.Conv2d)


def init_orthogonal(module: Layer, gain: float = 1.0) -> Layer:
    """Orthogonal weights scaled by ``gain`` and zero bias; returns ``module``."""
    nn.init.orthogonal_(module.weight, gain=gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module
