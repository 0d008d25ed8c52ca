"""Weight initialisation shared by the bases and the heads."""

from __future__ import annotations

from typing import TypeVar

import torch.nn as nn

Layer = TypeVar("Layer", nn.Linear, nn.Conv2d)


def default_init(module: nn.Module) -> None:
    """PyTorch's own initialisation for every layer of ``module`` (SB3's ``ortho_init=False``);
    parameters outside layers (a Gaussian's log-std) keep their values."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.GRU, nn.LSTM)):
            layer.reset_parameters()


def init_orthogonal(module: Layer, gain: float = 1.0) -> Layer:
    """Orthogonal weights scaled by ``gain`` and zero bias; returns ``module``."""
    nn.init.orthogonal_(module.weight, gain=gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module
