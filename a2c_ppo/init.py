"""Weight initialisation shared by the bases and the heads."""

from __future__ import annotations

import torch.nn as nn


def init_orthogonal(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """Orthogonal weights scaled by ``gain`` and zero bias; returns ``module``."""
    nn.init.orthogonal_(module.weight, gain=gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module
