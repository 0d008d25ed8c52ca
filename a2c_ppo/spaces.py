"""Spaces: the action and observation spaces that can be trained on, and the observations' layout.

Every part ("leaf") of an observation space must be a ``Box``, ``Discrete``, ``MultiDiscrete``
or ``MultiBinary``; ``Dict`` and ``Tuple`` may nest them. A composite space is trained on as a
flat ``Dict`` of its leaves, keyed by their path (``"image"``, ``"state.velocity"``, ``"0"``,
``"1.goal"``), so that storage, shared memory and the policy see one level of named parts.
Images (rank-3 ``Box``) are trained on channels-first: a channels-last image (``H, W, C`` with
``C <= 4``) is transposed once, at the env. ``ObservationPlan`` says what changes, and
``envs/wrappers.ObservationLayout`` applies it.

Action masks ride along as one more leaf, ``ACTION_MASK`` (``MultiBinary``, 1 = allowed):
where an env gives a mask (``info["action_mask"]``, an ``action_masks()`` method, or an
``"action_mask"`` part of its observation), ``envs/wrappers.ActionMaskObservation`` puts it
into the observation, and the policy takes it out again for its action head.

This module uses numpy and gymnasium only: env worker processes import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeGuard

import gymnasium as gym
import numpy as np

from a2c_ppo.errors import ConfigError

LEAVES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
ACTION_MASK = "action_mask"
#: Channels of an image are at most this many (gray, RGB, RGBA, a 4-frame stack).
MAX_CHANNELS = 4

Path = tuple[Any, ...]  # keys and indices from the observation down to a leaf


def is_image(space: gym.Space) -> TypeGuard[gym.spaces.Box]:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3


def is_channels_last(shape: tuple[int, ...]) -> bool:
    """``(H, W, C)``: few channels and a first axis that cannot be channels, or a last axis
    shorter than both others (a stack of RGB frames, ``(84, 84, 12)``; Stable-Baselines3 reads
    the shortest axis as the channels too)."""
    return len(shape) == 3 and (shape[-1] <= MAX_CHANNELS < shape[0] or shape[-1] < min(shape[:2]))


def is_empty(space: gym.Space) -> bool:
    """Whether a leaf space holds no entries (a ``Box`` or ``MultiDiscrete`` with a 0 in its
    shape): nothing to observe, or to choose."""
    return isinstance(space, LEAVES) and 0 in tuple(space.shape or ())


def _refuse_empty(space: gym.Space, path: Path, where: str) -> None:
    """ConfigError for an observation leaf of no entries: the policy would learn nothing from it
    (and an empty MultiDiscrete would make a one-hot of nothing)."""
    if not is_empty(space):
        return
    if not path:
        raise ConfigError(
            f"{where} has observation space {space}, which holds no entries: the policy would see nothing. Give the "
            "env an observation of at least one entry."
        )
    key = key_of(path)
    raise ConfigError(
        f"{where}: observation part {key!r} is {space}, which holds no entries: the policy would learn nothing from "
        f"it. Wrap the env to drop part {key!r} (a gymnasium.ObservationWrapper that removes it)."
    )


def _leaves(space: gym.Space, path: Path, where: str) -> list[tuple[Path, gym.Space]]:
    if isinstance(space, LEAVES):
        _refuse_empty(space, path, where)
        return [(path, space)]
    if isinstance(space, gym.spaces.Dict):
        return [leaf for key, sub in space.spaces.items() for leaf in _leaves(sub, (*path, key), where)]
    if isinstance(space, gym.spaces.Tuple):
        return [leaf for i, sub in enumerate(space.spaces) for leaf in _leaves(sub, (*path, i), where)]
    supported = "supported: Box, Discrete, MultiDiscrete, MultiBinary, and Dict / Tuple of these"
    if not path:
        raise ConfigError(
            f"{where} has observation space {space}, a {type(space).__name__}, which no encoder takes ({supported}). "
            "Wrap the env to encode it (a gymnasium.ObservationWrapper that turns it into a Discrete or a Box)."
        )
    key = key_of(path)
    raise ConfigError(
        f"{where}: observation part {key!r} is {space}, which no encoder takes ({supported}). Wrap the env to "
        f"drop or encode part {key!r} (a gymnasium.ObservationWrapper that removes it, or turns it into a "
        "Discrete or a Box)."
    )


def key_of(path: Path) -> str:
    """A leaf's key in the flat layout: its path joined with dots (``("state", 0)`` -> ``"state.0"``)."""
    return ".".join(str(part) for part in path)


@dataclass(frozen=True)
class ObservationPlan:
    """How an env's observations become the layout the framework trains on.

    ``paths``: for a composite space, each leaf's path, in order (keys of the flat Dict are
    ``key_of(path)``); ``None`` for a single space. ``transpose``: the keys (``""`` for a single
    space) of channels-last images. ``space``: the resulting observation space.
    """

    space: gym.Space
    paths: list[Path] | None = None
    transpose: frozenset[str] = frozenset()
    notes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return self.paths is not None or bool(self.transpose)


def _channels_first(space: gym.spaces.Box) -> gym.spaces.Box:
    return gym.spaces.Box(
        np.transpose(space.low, (2, 0, 1)), np.transpose(space.high, (2, 0, 1)), dtype=space.dtype.type
    )


def plan_observations(space: gym.Space, where: str = "the env", without_mask: bool = False) -> ObservationPlan:
    """The layout for observation ``space``; ConfigError naming the part that cannot be encoded.
    ``without_mask``: leave out a Dict's ``ACTION_MASK`` part (a run without action masks)."""
    dropped = []
    if without_mask and isinstance(space, gym.spaces.Dict) and ACTION_MASK in space.spaces:
        space = gym.spaces.Dict({key: part for key, part in space.spaces.items() if key != ACTION_MASK})
        dropped = [f"The env's {ACTION_MASK!r} observation part is left out: this run uses no action masks."]
    if isinstance(space, LEAVES):
        _refuse_empty(space, (), where)
        if is_image(space) and is_channels_last(space.shape):
            new = _channels_first(space)
            note = f"Observations are channels-last images {space.shape}: transposed to {new.shape}."
            return ObservationPlan(new, transpose=frozenset({""}), notes=[note])
        return ObservationPlan(space)
    leaves = _leaves(space, (), where)
    if not leaves and dropped:
        raise ConfigError(
            f"{where}'s observations hold nothing but their {ACTION_MASK!r} part, which a run without action masks "
            "leaves out: drop --action-masks off, or give the env an observation."
        )
    if not leaves:
        raise ConfigError(
            f"{where} has observation space {space}, which has no parts: the policy would see nothing. Give the env "
            "an observation (a Box, Discrete, MultiDiscrete or MultiBinary, or a Dict / Tuple of them)."
        )
    parts: dict[str, gym.Space] = {}
    transpose = set()
    for path, leaf in leaves:
        key = key_of(path)
        if key in parts:  # e.g. {"a.b": ..., "a": {"b": ...}}, or the keys 0 and "0"
            raise ConfigError(
                f"{where} has observation space {space}, whose parts are trained on as one flat Dict keyed by their "
                f"paths joined with dots, and two of them become {key!r}. Rename a key of the env's observation "
                "space (for example without dots)."
            )
        if is_image(leaf) and is_channels_last(leaf.shape):
            leaf = _channels_first(leaf)
            transpose.add(key)
        parts[key] = leaf
    notes = dropped + [f"Observation parts {', '.join(parts)}" + (f"; images {', '.join(sorted(transpose))} transposed "
                       "to channels-first." if transpose else ".")]  # fmt: skip
    return ObservationPlan(gym.spaces.Dict(parts), [path for path, _ in leaves], frozenset(transpose), notes)


def apply_plan(plan: ObservationPlan, obs: Any, batched: bool = False) -> Any:
    """One observation in the plan's layout, or a vector env's batch of them (``batched``: each
    part with a leading env axis, as gymnasium batches composite spaces)."""
    axes = (0, 3, 1, 2) if batched else (2, 0, 1)  # channels-last to channels-first
    if plan.paths is None:
        return np.ascontiguousarray(np.transpose(obs, axes)) if plan.transpose else obs
    flat = {}
    for path in plan.paths:
        value = obs
        for part in path:
            value = value[part]
        key = key_of(path)
        flat[key] = np.ascontiguousarray(np.transpose(value, axes)) if key in plan.transpose else value
    return flat


def mask_size(action_space: gym.Space) -> int | None:
    """Entries of an action mask for ``action_space`` (one per action, or per class of each
    MultiDiscrete dimension, as sb3-contrib lays them out); ``None`` where masks do not apply."""
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return int(action_space.nvec.sum())
    return None


def mask_splits(action_space: gym.Space) -> list[int]:
    """Where a mask of ``action_space`` splits (``np.split``) into one part per MultiDiscrete
    dimension; none for Discrete."""
    nvec = getattr(action_space, "nvec", None)
    return np.cumsum(nvec)[:-1].tolist() if nvec is not None else []


def sample_mask(mask: np.ndarray, action_space: gym.Space) -> Any:
    """A mask ``(size,)`` int8 as ``action_space.sample(mask=...)`` takes it: as it is for
    Discrete; for MultiDiscrete one part per dimension (``mask_splits``), in tuples nested as
    its ``nvec`` (a rank-2 ``nvec`` takes a tuple of tuples)."""
    if not isinstance(action_space, gym.spaces.MultiDiscrete):
        return mask
    parts = np.split(mask, mask_splits(action_space))

    def nest(parts: list[np.ndarray], shape: tuple[int, ...]) -> tuple:
        if len(shape) == 1:
            return tuple(parts)
        size = len(parts) // shape[0]
        return tuple(nest(parts[i * size : (i + 1) * size], shape[1:]) for i in range(shape[0]))

    return nest(parts, action_space.nvec.shape)


def mask_part_splits(observation_space: gym.Space, action_space: gym.Space) -> list[int] | None:
    """``mask_splits`` of the actions where the observations carry an ``action_mask`` part that
    masks them (a Dict part, Discrete or MultiDiscrete actions), else ``None``."""
    if not (isinstance(observation_space, gym.spaces.Dict) and ACTION_MASK in observation_space.spaces):
        return None
    return mask_splits(action_space) if mask_size(action_space) is not None else None


def allows_an_action(masks: np.ndarray, splits: list[int]) -> Any:
    """Whether bool masks ``(..., size)`` allow an action: one in each part (``mask_splits``), as
    a MultiDiscrete action needs a class in every dimension. ``(...)`` bool (a scalar for one)."""
    if not splits:
        return masks.any(axis=-1)
    return np.logical_or.reduceat(masks, [0, *splits], axis=-1).all(axis=-1)


def check_action_space(action_space: gym.Space, env_id: str) -> None:
    """ConfigError unless the policy supports ``action_space``: Discrete, 1-D Box, MultiBinary or
    MultiDiscrete, of at least one entry (every observation space ``plan_observations`` accepts
    is supported)."""
    ok = isinstance(action_space, (gym.spaces.Discrete, gym.spaces.MultiBinary, gym.spaces.MultiDiscrete)) or (
        isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1
    )
    if not ok:
        raise ConfigError(
            f"--env-name {env_id!r} has action space {action_space}, which no policy takes: supported are Discrete, "
            "a 1-D Box, MultiBinary and MultiDiscrete. Wrap the env in a gymnasium.ActionWrapper whose action space "
            "is one of them (a Box of shape (2, 2) as one of shape (4,), a Tuple of Discrete parts as a MultiDiscrete)."
        )
    if is_empty(action_space):
        raise ConfigError(
            f"--env-name {env_id!r} has action space {action_space}, which holds no entries: the policy would have "
            "nothing to choose. Give the env an action of at least one entry."
        )
