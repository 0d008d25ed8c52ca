"""The spaces an expert trajectory file records: a plain-data description of each
(``describe_space``), its check when read back, and the range of valid stored actions."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

#: Box bounds with more elements than this are left out of a space's description (images).
MAX_BOUNDS_SIZE = 64
DISCRETE_TYPES = ("Discrete", "MultiDiscrete", "MultiBinary")
DTYPE_NAMES = {
    torch.float16: "float16",
    torch.float32: "float32",
    torch.float64: "float64",
    torch.uint8: "uint8",
    torch.int8: "int8",
    torch.int16: "int16",
    torch.int32: "int32",
    torch.int64: "int64",
    torch.bool: "bool",
}


class Malformed(Exception):
    """A field is missing or has the wrong type, shape, dtype or values (the message says which)."""


def _bound(value: float) -> float | str:
    # Strict JSON has no infinities: they are written as the strings "inf" / "-inf".
    return float(value) if np.isfinite(value) else ("inf" if value > 0 else "-inf")


def describe_space(space: gym.Space) -> dict[str, Any]:
    """JSON-able plain data describing ``space``: type, shape, dtype and what defines its values
    (Discrete ``n``/``start``, MultiDiscrete ``nvec``/``start``, MultiBinary ``n``, Box bounds
    when they have at most ``MAX_BOUNDS_SIZE`` elements). Equal descriptions: matching spaces."""
    name = type(space).__name__
    if not isinstance(space, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        raise ValueError(f"expert trajectories support Box, Discrete, MultiDiscrete and MultiBinary spaces, not {name}")
    desc: dict[str, Any] = {
        "type": name,
        "shape": [int(s) for s in space.shape or ()],
        "dtype": np.dtype(space.dtype).name,
    }
    if isinstance(space, gym.spaces.Box) and space.low.size <= MAX_BOUNDS_SIZE:
        desc["low"] = [_bound(v) for v in space.low.reshape(-1)]
        desc["high"] = [_bound(v) for v in space.high.reshape(-1)]
    elif isinstance(space, gym.spaces.Discrete):
        desc.update(n=int(space.n), start=int(space.start))
    elif isinstance(space, gym.spaces.MultiDiscrete):
        desc.update(nvec=space.nvec.reshape(-1).tolist(), start=space.start.reshape(-1).tolist())
    elif isinstance(space, gym.spaces.MultiBinary):
        desc["n"] = int(np.prod(space.shape))
    return desc


def matches_recorded(desc: dict[str, Any], space: gym.Space) -> bool:
    """Whether the action space ``space`` is the one ``desc`` recorded. A Box recorded with
    infinite bounds also matches a bounded Box of its shape and dtype: before 2026-12-07 expert
    files recorded Box actions as gymnasium's ClipAction widened them (the env took them clipped)."""
    expected = describe_space(space)
    if desc == expected:
        return True
    widened = set(desc.get("low", [0])) == {"-inf"} and set(desc.get("high", [0])) == {"inf"}
    return desc.get("type") == "Box" and widened and "low" in expected and _unbounded(desc) == _unbounded(expected)


def _unbounded(desc: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in desc.items() if key not in ("low", "high")}


def action_dim(desc: dict[str, Any]) -> int:
    """A, the width of a stored action row for the action space described by ``desc``."""
    if desc["type"] == "Discrete":
        return 1
    if desc["type"] == "MultiDiscrete":
        return len(desc["nvec"])
    return int(np.prod(desc["shape"], dtype=np.int64))


def space_text(desc: dict[str, Any]) -> str:
    def text(key: str, value: Any) -> str:  # bounds: one value when all are equal (e.g. -inf)
        if key in ("low", "high") and isinstance(value, list) and value and value.count(value[0]) == len(value):
            return str(value[0])
        return str(value)

    return f"{desc['type']}({', '.join(f'{key}={text(key, value)}' for key, value in desc.items() if key != 'type')})"


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) for v in value)


def check_space_desc(desc: Any, role: str) -> None:
    if not isinstance(desc, dict) or desc.get("type") not in ("Box", *DISCRETE_TYPES):
        raise Malformed(f"its {role} space description has no supported 'type'")
    if not _int_list(desc.get("shape")) or min(desc["shape"], default=0) < 0:
        raise Malformed(f"its {role} space has no valid 'shape'")
    if desc.get("dtype") not in DTYPE_NAMES.values():
        raise Malformed(f"its {role} space has an unsupported dtype {desc.get('dtype')!r}")
    kind = desc["type"]
    if kind in ("Discrete", "MultiBinary") and not (isinstance(desc.get("n"), int) and desc["n"] > 0):
        raise Malformed(f"its {role} space has no valid 'n'")
    if kind == "Discrete" and not isinstance(desc.get("start"), int):
        raise Malformed(f"its {role} space has no valid 'start'")
    if kind == "MultiDiscrete" and not (
        _int_list(desc.get("nvec")) and _int_list(desc.get("start")) and len(desc["nvec"]) == len(desc["start"])
    ):
        raise Malformed(f"its {role} space has no valid 'nvec' / 'start'")


def action_range(desc: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The smallest and largest valid stored action per column (A,), or None for Box."""
    if desc["type"] == "Discrete":
        low = torch.tensor([desc["start"]])
        return low, low + desc["n"] - 1
    if desc["type"] == "MultiDiscrete":
        low = torch.tensor(desc["start"], dtype=torch.int64)
        return low, low + torch.tensor(desc["nvec"], dtype=torch.int64) - 1
    if desc["type"] == "MultiBinary":
        return torch.zeros(desc["n"], dtype=torch.int64), torch.ones(desc["n"], dtype=torch.int64)
    return None
