"""GAIL's Adam (and K-FAC's torch pieces) without ``torch._dynamo``, and A2C's RMSprop, which
like PPO's Adam is a flat optimizer (``flat_params.FlatRMSprop``, ``FlatAdam``) that uses no
``torch.optim`` machinery at all.

``torch.optim`` wraps ``Optimizer.add_param_group`` / ``zero_grad`` / ``state_dict`` /
``load_state_dict`` and each algorithm's functional step in ``torch._disable_dynamo``, whose
first call imports ``torch._dynamo`` (about a second) to exclude them from ``torch.compile``,
and every ``step`` in a grad-mode wrapper that imports it on each call. Nothing here is
compiled, so neither is needed:

* the disable wrappers cache the disabled function on the original as ``__dynamo_disable``;
  setting that cache to the original itself makes the wrapper call it directly, which is
  what the disabled function does outside compilation;
* ``Adam`` below calls the undecorated ``step`` (``__wrapped__``) under
  ``torch.no_grad()``, which is what the grad-mode wrapper does for a non-differentiable
  optimizer, minus its graph breaks for the compiler.

The updates are bit-identical to torch's (tested). Should a torch version rename these
internals, the import happens as before and nothing else changes.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable

import torch
import torch.nn as nn

from a2c_ppo.algo.flat_params import FlatParameters, FlatRMSprop


@functools.cache
def skip_dynamo_wrappers() -> None:
    """Mark ``torch.optim``'s dynamo-disabled wrappers as resolved (idempotent)."""
    optimizer_methods = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
    wrappers = [getattr(torch.optim.Optimizer, name) for name in optimizer_methods]
    # Adam's functional step (its module is loaded by ``import torch``, then shadowed by the class)
    wrappers.append(sys.modules["torch.optim.adam"].adam)
    for wrapper in wrappers:
        original = getattr(wrapper, "__wrapped__", None)
        if original is not None and not hasattr(original, "__dynamo_disable"):
            setattr(original, "__dynamo_disable", original)


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` whose ``step`` skips the grad-mode wrapper (see the module docstring)."""

    def step(self, closure=None):
        with torch.no_grad():
            return getattr(torch.optim.Adam.step, "__wrapped__", torch.optim.Adam.step)(self, closure)


def make_adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam (GAIL's discriminator), without torch._dynamo."""
    skip_dynamo_wrappers()
    return Adam(params, lr=lr)


def make_rmsprop(params: Iterable[nn.Parameter], lr: float, eps: float, alpha: float) -> FlatRMSprop:
    """A2C's RMSprop: ``FlatRMSprop`` over the parameters, which become views of one buffer."""
    return FlatRMSprop(FlatParameters(params), lr=lr, eps=eps, alpha=alpha)
