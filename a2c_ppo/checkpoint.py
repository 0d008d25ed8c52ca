"""Checkpoints as data: state_dicts, the flags as JSON, normalisation stats, counters, RNG.

Loaded with ``torch.load(weights_only=True)``, so a checkpoint cannot run code. Written to
a temporary file in the same folder and renamed over the target, so a crash mid-write
never leaves a broken checkpoint behind.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a2c_ppo import __version__
from a2c_ppo.errors import ConfigError

FORMAT_VERSION = 1


def checkpoint_path(save_dir: str, algo: str, env_name: str) -> str:
    """The classic layout: SAVE_DIR/ALGO/ENV.pt (``/`` and ``:`` in ids become ``_``)."""
    safe_env = env_name.replace("/", "_").replace(":", "_")
    return os.path.join(save_dir, algo, safe_env + ".pt")


def describe_space(space: gym.Space) -> dict[str, Any]:
    """Plain-data description of a space, enough to tell whether two spaces match."""
    desc: dict[str, Any] = {"type": type(space).__name__, "shape": list(space.shape or ())}
    if isinstance(space, gym.spaces.Discrete):
        desc["n"] = int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        desc["nvec"] = space.nvec.reshape(-1).tolist()
    return desc


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "python": json.dumps(random.getstate()),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    keys = state["numpy"]["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy"]["pos"], 0, 0.0))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    path: str,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    config: dict[str, Any],
    normalization: dict[str, Any] | None,
    counters: dict[str, int],
    observation_space: gym.Space,
    action_space: gym.Space,
) -> None:
    """Atomically write a checkpoint to ``path``."""
    payload = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "config": json.dumps(config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "normalization": json.dumps(normalization),
        "counters": dict(counters),
        "rng": rng_state(),
        "spaces": json.dumps(
            {"observation": describe_space(observation_space), "action": describe_space(action_space)}
        ),
    }
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint; JSON fields come back decoded. Raises ConfigError if unusable."""
    if not os.path.isfile(path):
        raise ConfigError(f"checkpoint {path!r} does not exist; train first or pass the right path.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"checkpoint {path!r} cannot be read ({exc}); it is not an a2c_ppo checkpoint or is damaged."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"checkpoint {path!r} is not an a2c_ppo checkpoint of format {FORMAT_VERSION}.")
    for key in ("config", "normalization", "spaces"):
        payload[key] = json.loads(payload[key])
    return payload


def check_spaces(
    checkpoint: dict[str, Any], observation_space: gym.Space, action_space: gym.Space, env_name: str
) -> None:
    """Raise ConfigError if the env's spaces differ from those the checkpoint was trained on."""
    saved = checkpoint["spaces"]
    for kind, space in (("observation", observation_space), ("action", action_space)):
        if saved[kind] != describe_space(space):
            raise ConfigError(
                f"the checkpoint was trained on an env with {kind} space {saved[kind]}, but "
                f"{env_name!r} has {describe_space(space)}; use the env it was trained on "
                f"({checkpoint['config'].get('env_name')!r})."
            )
