"""What the exported ONNX graph computes (``onnx_export`` traces it): raw observation parts
(and the recurrent state) -> the deterministic action, as ``Agent.act`` computes it.

Input names: a single observation is ``obs``; a Dict or Tuple observation gives one input per
leaf, in the flat layout of ``spaces.py``, named by its path joined with dots (``"image"``,
``"state.velocity"``, ``"t.1"``); a name that starts with a digit, which every element of a
Tuple observation has, is prefixed with ``obs.`` (``"obs.0"``, ``"obs.1.goal"``), as torch's
exporter drops names that are numbers and gives such an input one of its own.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from a2c_ppo.envs.normalize import VecNormalize
from a2c_ppo.errors import ConfigError
from a2c_ppo.model import Policy
from a2c_ppo.observations import TensorDict, part_dtype

RECURRENT_NAMES = ("rnn_hxs", "masks")


class Normalizer(nn.Module):
    """``VecNormalize.normalize_obs`` of one part with frozen statistics: standardised in
    float64 as numpy computes it, then float32 and clipped. Clipping after the cast gives the
    same numbers (rounding is monotonic) and a float32 ``Clip``, which onnxruntime implements at
    every opset (its float64 ``Clip`` needs opset 12)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: np.ndarray, var: np.ndarray, epsilon: float, clip: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64))
        self.register_buffer("std", torch.sqrt(torch.as_tensor(var, dtype=torch.float64) + epsilon))
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.double() - self.mean) / self.std).float().clamp(-self.clip, self.clip)


class DeterministicPolicy(nn.Module):
    """Raw observation parts (and the recurrent state) -> the deterministic action, in the
    action space's dtype as ``Agent.act`` gives it; ``keys``: the parts' names (flat layout),
    ``None`` for a single observation."""

    def __init__(self, policy: Policy, space: gym.Space, normalizer: VecNormalize | None) -> None:
        super().__init__()
        self.policy = policy
        parts = space.spaces if isinstance(space, gym.spaces.Dict) else {None: space}
        self.keys: list[str | None] = list(parts)
        self.dtypes = [part_dtype(part, key) for key, part in parts.items()]
        self.action_dtype = torch.from_numpy(np.zeros(0, policy.action_space.dtype)).dtype
        # keyed by the part's position: a module's name cannot hold the dots of a nested part's key
        self.normalizers = nn.ModuleDict()
        if normalizer is not None and normalizer.norm_obs:
            for key in normalizer.parts:
                rms = normalizer.obs_rms[key] if isinstance(normalizer.obs_rms, dict) else normalizer.obs_rms
                normalize = Normalizer(rms.mean, rms.var, normalizer.epsilon, normalizer.clip)
                self.normalizers[str(self.keys.index(key))] = normalize

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        parts = {}
        for i, (key, dtype, x) in enumerate(zip(self.keys, self.dtypes, inputs)):
            parts[key] = self.normalizers[str(i)](x) if str(i) in self.normalizers else x.to(dtype)
        obs = parts[None] if self.keys == [None] else TensorDict(parts)
        batch = inputs[0].shape[0]
        if self.policy.is_recurrent:
            rnn_hxs, masks = inputs[len(self.keys) :]
        else:  # a feed-forward base passes its dummy state through untouched
            rnn_hxs, masks = torch.zeros(batch, 1), torch.ones(batch, 1)
        _, action, _, rnn_hxs = self.policy.act(obs, rnn_hxs, masks, deterministic=True)
        action = action.to(self.action_dtype)
        return (action, rnn_hxs) if self.policy.is_recurrent else action


def input_name(key: str | None) -> str:
    """The ONNX input of observation part ``key`` (see the module docstring)."""
    if key is None:
        return "obs"
    return f"obs.{key}" if key[:1].isdigit() else key


def input_names(module: DeterministicPolicy) -> list[str]:
    """The graph's inputs: one per observation part, then the recurrent state's; ConfigError
    where two would share a name."""
    names = [input_name(key) for key in module.keys]
    taken = dict.fromkeys(RECURRENT_NAMES, "the recurrent state's input") if module.policy.is_recurrent else {}
    for key, name in zip(module.keys, names):
        if name in taken:
            raise ConfigError(
                f"the observation part {key!r} has the name of {taken[name]} ({name!r}); ONNX inputs need "
                "distinct names. Rename that part of the env's observations."
            )
        taken[name] = f"the observation part {key!r}"
    return names + (list(RECURRENT_NAMES) if module.policy.is_recurrent else [])
