"""The first-order optimizers the algorithms use, built without importing ``torch._dynamo``.

``torch.optim`` wraps ``Optimizer.add_param_group`` / ``zero_grad`` / ``state_dict`` /
``load_state_dict`` and each algorithm's functional step in ``torch._disable_dynamo``, whose
first call imports ``torch._dynamo`` (about a second of start-up) to exclude them from
``torch.compile``. Nothing here is compiled, so that import buys nothing. The wrapper caches
the disabled function on the original as ``__dynamo_disable``; setting that cache to the
original itself makes the wrapper call it directly, which is what the disabled function
does outside compilation. Should a torch version rename the cache, the import happens as
before and nothing else changes.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable

import torch
import torch.nn as nn


@functools.cache
def skip_dynamo_wrappers() -> None:
    """Mark ``torch.optim``'s dynamo-disabled wrappers as resolved (idempotent)."""
    optimizer_methods = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
    wrappers = [getattr(torch.optim.Optimizer, name) for name in optimizer_methods]
    # the functional steps (their modules are loaded by ``import torch``, then shadowed by the classes)
    wrappers += [sys.modules["torch.optim.adam"].adam, sys.modules["torch.optim.rmsprop"].rmsprop]
    for wrapper in wrappers:
        original = getattr(wrapper, "__wrapped__", None)
        if original is not None and not hasattr(original, "__dynamo_disable"):
            setattr(original, "__dynamo_disable", original)


def make_adam(params: Iterable[nn.Parameter], lr: float, eps: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one op for all parameters; about 3x the default's speed on
    CPU for a 64x64 MLP)."""
    skip_dynamo_wrappers()
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)


def make_rmsprop(params: Iterable[nn.Parameter], lr: float, eps: float, alpha: float) -> torch.optim.RMSprop:
    """RMSprop with the multi-tensor (foreach) implementation (it has no fused kernel)."""
    skip_dynamo_wrappers()
    return torch.optim.RMSprop(params, lr=lr, eps=eps, alpha=alpha, foreach=True)
