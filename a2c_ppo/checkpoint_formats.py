"""Checkpoints of older formats, read as the current one (``checkpoint.FORMAT_VERSION``).

2 -> 3: PPO's ``torch.optim.Adam`` state becomes ``FlatAdam``'s vectors (algo/flat_params.py);
3 -> 4: A2C's ``torch.optim.RMSprop`` state ``FlatRMSprop``'s; 4 -> 5: nothing moves, but the
spaces of formats 2 to 4 lack the ``start`` of a Discrete or MultiDiscrete space, which
``checkpoint.check_spaces`` then leaves out of its comparison.

Format 2 also spans a change in what a policy's discrete action means to its env: until
2026-11-21 (f72998d, 0982ac5) the policy's action i reached the env as i, since then as
``start + i``. Format 2 was written on both sides of that change (formats 3 and later only
after it), so ``check_action_start`` refuses one where the two readings differ.
"""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a2c_ppo.errors import ConfigError


def upgrade(payload: dict[str, Any], name: str) -> None:
    """In place: a checkpoint of format 2, 3 or 4 as format 5 holds it (another format is left
    as it is). ``payload["written_format"]`` keeps the format it was written in, whatever the
    file says there. ``name`` names the file for a ConfigError."""
    payload["written_format"] = payload["format_version"]
    if payload["format_version"] == 2:
        _flatten_torch_optimizer(payload, "ppo", ("exp_avg", "exp_avg_sq"), ("lr", "eps", "betas"), name)
        payload["format_version"] = 3
    if payload["format_version"] == 3:
        _flatten_torch_optimizer(payload, "a2c", ("square_avg",), ("lr", "eps", "alpha"), name)
        payload["format_version"] = 4
    if payload["format_version"] == 4:
        payload["format_version"] = 5


def check_action_start(checkpoint: dict[str, Any], action_space: gym.Space, env_name: str) -> None:
    """ConfigError for a format-2 checkpoint replayed or resumed on an env whose discrete actions
    count from a start other than 0: it may come from before actions were shifted by their start
    (the module docstring), and nothing in it says which. Converting it is no answer: besides
    that, an old policy's actions below the start have no counterpart among the shifted ones."""
    if checkpoint.get("written_format") != 2 or not isinstance(
        action_space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)
    ):
        return
    start = np.asarray(action_space.start)
    if not start.any():  # either side of the change gave the env the policy's action as it is
        return
    shown = start.tolist()
    raise ConfigError(
        f"the checkpoint was written in checkpoint format 2 (a2c_ppo {checkpoint.get('package_version')}), and the "
        f"actions of {env_name!r}, {action_space}, count from {shown}. Until 2026-11-21 a2c_ppo gave such an env the "
        f"policy's action i as i, since then as start + i, and format-2 checkpoints were written on both sides of "
        f"that change: this one could act shifted by {shown}, and it does not say which side it comes from (nor do "
        "its actions below the start have a counterpart), so it cannot be converted. Train the policy again with "
        "this a2c_ppo, or replay it on an env whose actions count from 0."
    )


def _flatten_torch_optimizer(payload: dict[str, Any], algo: str, keys: tuple[str, ...], hyper: tuple[str, ...],
                              name: str) -> None:  # fmt: skip
    """In place, for a checkpoint of ``algo``: its per-parameter ``torch.optim`` state becomes a
    flat optimizer's (``flat_params``): the ``keys`` vectors concatenated in module order (the
    order both use), the step count, and the ``hyper`` parameters of its one group."""
    optimizer = payload.get("optimizer")
    if json.loads(payload["config"]).get("algo") != algo or optimizer is None:
        return
    group = optimizer["param_groups"][0]
    states = [optimizer["state"].get(index, {}) for index in group["params"]]
    params = list(payload["model"].values())
    if len(states) != len(params):
        raise ConfigError(
            f"{name}: its optimizer state does not match its model; use a checkpoint of a finished update."
        )

    def flat(key: str) -> torch.Tensor:  # a parameter never stepped has no state: zeros
        return torch.cat(
            [st[key].reshape(-1) if key in st else torch.zeros(p.numel()) for st, p in zip(states, params)]
        )

    payload["optimizer"] = {
        "num_steps": max((int(st["step"]) for st in states if "step" in st), default=0),
        **{key: flat(key) for key in keys},
        "param_groups": [{key: group[key] for key in hyper}],
    }
