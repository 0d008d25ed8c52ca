"""Expert trajectories on disk: plain arrays and a JSON description of the spaces, never code.

A file holds E episodes of total length M, concatenated in order:

    obs      (M, *obs_shape)  observations as the env returned them (BEFORE any normalisation),
                              in the observation space's dtype
    actions  (M, A)           Box: the space's dtype, A = prod(shape); Discrete: int64, A = 1;
                              MultiDiscrete: int64, A = len(nvec); MultiBinary: int64, A = n
    rewards  (M,)  float64    the env's rewards
    lengths  (E,)  int64      episode lengths (each >= 1 and within the env's time limit, summing to M)
    returns  (E,)  float64    undiscounted episode returns (each the sum of its episode's rewards)
    terminated (E,) bool      optional (files from before it lack it): whether the episode ended by
                              termination rather than truncation (a time limit); GAIL's absorbing
                              states need it
    env_id, spaces            the env (its id, and the run's env kwargs and frame processing where
                              it has any: ``frames.env_identity``) and ``{"observation": desc,
                              "action": desc}`` (``describe_space``)

A path ending in ``.npz`` is a numpy archive (strings as 0-d unicode arrays, the spaces as JSON
text) read with ``np.load(allow_pickle=False)``; any other path is a ``torch.save`` file read
with ``torch.load(weights_only=True)``. Neither reader can run code from the file.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a2c_ppo.errors import ConfigError
from a2c_ppo.files import check_archive, larger_than_its_data, write_atomically
from a2c_ppo.trajectory_spaces import (
    DTYPE_NAMES,
    Malformed,
    action_dim,
    action_range,
    check_space_desc,
    describe_space,
    matches_recorded,
    space_text,
)

FORMAT_NAME = "a2c_ppo.trajectories"
FORMAT_VERSION = 1
ARRAY_FIELDS = ("obs", "actions", "rewards", "lengths", "returns")
OPTIONAL_FIELDS = ("terminated",)


@dataclass(frozen=True)
class Trajectories:
    """Expert data as tensors; rows are time steps of the episodes laid end to end.

    obs (M, *obs_shape), actions (M, A), rewards (M,) float64, lengths (E,) int64,
    returns (E,) float64 (of the whole recorded episodes, also after ``subsample``),
    terminated (E,) bool or None where the file does not say.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    lengths: torch.Tensor
    returns: torch.Tensor
    env_id: str
    spaces: dict[str, dict[str, Any]]
    terminated: torch.Tensor | None = None


def _check_tensor(fields: dict[str, Any], name: str, dtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    tensor = fields[name]
    if not isinstance(tensor, torch.Tensor):
        raise Malformed(f"its {name!r} is of type {type(tensor).__name__}, not an array")
    if DTYPE_NAMES.get(tensor.dtype) != dtype:
        raise Malformed(f"its {name!r} has dtype {DTYPE_NAMES.get(tensor.dtype, tensor.dtype)}, expected {dtype}")
    if tuple(tensor.shape) != shape:
        raise Malformed(f"its {name!r} has shape {tuple(tensor.shape)}, expected {shape}")
    if larger_than_its_data(tensor):
        raise Malformed(f"its {name!r} is larger than its data")
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise Malformed(f"its {name!r} holds a NaN or infinity")
    return tensor


def _validate(fields: dict[str, Any]) -> Trajectories:
    """Trajectories from the decoded fields (strings and tensors); Malformed names the first fault."""
    missing = [key for key in ("format", "version", "env_id", "spaces", *ARRAY_FIELDS) if key not in fields]
    if missing:
        raise Malformed(f"it lacks the field(s) {', '.join(missing)}")
    stamp = (fields["format"], fields["version"])
    if not (isinstance(stamp[0], str) and isinstance(stamp[1], int)) or stamp != (FORMAT_NAME, FORMAT_VERSION):
        raise Malformed(f"its format is {stamp[0]!r} version {stamp[1]!r}, not {FORMAT_NAME!r} {FORMAT_VERSION}")
    if not isinstance(fields["env_id"], str) or not fields["env_id"]:
        raise Malformed("its env id is not a non-empty string")
    try:
        spaces = json.loads(fields["spaces"])
    except (TypeError, ValueError):
        raise Malformed("its space description is not JSON text") from None
    if not isinstance(spaces, dict):
        raise Malformed("its space description is not a dict")
    for role in ("observation", "action"):
        check_space_desc(spaces.get(role), role)
    obs_desc, act_desc = spaces["observation"], spaces["action"]
    lengths = fields["lengths"]
    if not isinstance(lengths, torch.Tensor) or lengths.dim() != 1 or len(lengths) == 0:
        raise Malformed("its 'lengths' is not a non-empty 1-D array")
    _check_tensor(fields, "lengths", "int64", (len(lengths),))
    if bool((lengths < 1).any()):
        raise Malformed("an episode length is below 1")
    rows = sum(map(int, lengths.tolist()))  # Python's integers: an int64 sum of crafted lengths could wrap
    obs = fields["obs"]
    if isinstance(obs, torch.Tensor) and obs.dim() > 0 and len(obs) != rows:
        raise Malformed(f"its episode lengths sum to {rows} but it holds {len(obs)} observation rows")
    act_dtype = act_desc["dtype"] if act_desc["type"] == "Box" else "int64"
    actions = _check_tensor(fields, "actions", act_dtype, (rows, action_dim(act_desc)))
    valid_range = action_range(act_desc)
    if valid_range is not None and bool(((actions < valid_range[0]) | (actions > valid_range[1])).any()):
        raise Malformed("an action lies outside the action space")
    obs = _check_tensor(fields, "obs", obs_desc["dtype"], (rows, *obs_desc["shape"]))
    rewards = _check_tensor(fields, "rewards", "float64", (rows,))
    returns = _check_tensor(fields, "returns", "float64", (len(lengths),))
    _check_returns(rewards, lengths, returns)
    return Trajectories(
        obs=obs,
        actions=actions,
        rewards=rewards,
        lengths=lengths,
        returns=returns,
        env_id=fields["env_id"],
        spaces=spaces,
        terminated=_check_tensor(fields, "terminated", "bool", (len(lengths),)) if "terminated" in fields else None,
    )


def _check_returns(rewards: torch.Tensor, lengths: torch.Tensor, returns: torch.Tensor) -> None:
    """Malformed where an episode's return is not the sum of its rewards, as the recorder writes
    it; the tolerance allows for another order of summation, nothing more."""
    episode = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    sums = torch.zeros_like(returns).index_add_(0, episode, rewards)
    scale = torch.zeros_like(returns).index_add_(0, episode, rewards.abs())
    wrong = ((returns - sums).abs() > 1e-6 * (scale + 1.0)).nonzero()
    if len(wrong):
        k = int(wrong[0])
        raise Malformed(
            f"its 'returns' of episode {k} is {float(returns[k]):g}, but its rewards sum to {float(sums[k]):g}"
        )


def _fields_from_episodes(
    env_id: str, observation_space: gym.Space, action_space: gym.Space, episodes: list[dict[str, Any]]
) -> dict[str, Any]:
    spaces = {"observation": describe_space(observation_space), "action": describe_space(action_space)}
    if not episodes:
        raise ValueError("no episodes to save")
    obs_dtype = np.dtype(observation_space.dtype)
    act_desc = spaces["action"]
    act_dtype = np.dtype(act_desc["dtype"]) if act_desc["type"] == "Box" else np.dtype(np.int64)
    obs, actions, rewards, lengths, terminated = [], [], [], [], []
    for i, episode in enumerate(episodes):
        if not {"obs", "actions", "rewards"} <= set(episode):
            raise ValueError(f"episode {i} lacks one of 'obs', 'actions', 'rewards'")
        ep_obs, ep_actions = np.asarray(episode["obs"]), np.asarray(episode["actions"])
        ep_rewards = np.asarray(episode["rewards"], dtype=np.float64)
        length = len(ep_rewards)
        if ep_rewards.ndim != 1 or length == 0 or ep_obs.ndim == 0 or ep_actions.ndim == 0:
            raise ValueError(f"episode {i}: rewards must be a non-empty 1-D array and obs/actions arrays of rows")
        if ep_obs.shape[1:] != tuple(observation_space.shape or ()):
            raise ValueError(
                f"episode {i} has observations of shape {ep_obs.shape[1:]}, but the observation space's shape is "
                f"{observation_space.shape}"
            )
        if len(ep_obs) != length or len(ep_actions) != length:
            raise ValueError(
                f"episode {i} has {len(ep_obs)} observations, {len(ep_actions)} actions and {length} rewards; "
                "each step needs one of each"
            )
        obs.append(ep_obs.astype(obs_dtype, copy=False))
        # Box actions of shape (L, *shape) become rows of prod(shape); wrong sizes fail validation.
        actions.append(ep_actions.reshape(length, -1).astype(act_dtype, copy=False))
        rewards.append(ep_rewards)
        lengths.append(length)
        flag = episode.get("terminated")
        if flag is not None and not (isinstance(flag, (bool, np.bool_)) or _is_bool_scalar(flag)):
            raise ValueError(f"episode {i}: 'terminated' must be a bool (did the episode end by termination?), "
                             f"not {flag!r}")  # fmt: skip
        terminated.append(None if flag is None else bool(flag))
    said = [flag for flag in terminated if flag is not None]
    if said and len(said) != len(terminated):
        raise ValueError("some episodes say whether they terminated and others not; give 'terminated' for all or none")
    ended = {"terminated": np.asarray(said, dtype=np.bool_)} if said else {}
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "env_id": env_id,
        "spaces": json.dumps(spaces),
        "obs": np.concatenate(obs),
        "actions": np.concatenate(actions),
        "rewards": np.concatenate(rewards),
        "lengths": np.asarray(lengths, dtype=np.int64),
        "returns": np.asarray([r.sum() for r in rewards], dtype=np.float64),
        **ended,
    }


def _is_bool_scalar(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.shape == () and value.dtype == np.bool_


def save_trajectories(
    path: str, *, env_id: str, observation_space: gym.Space, action_space: gym.Space, episodes: list[dict[str, Any]]
) -> None:
    """Write ``episodes`` (dicts of ``obs`` (L, *obs_shape), ``actions`` (L, A) and ``rewards``
    (L,) numpy arrays, observations un-normalised, and optionally ``terminated``: whether the
    episode ended by termination, not a time limit) atomically to ``path``: ``.npz`` or torch file.

    ValueError if the episodes do not fit the spaces; what is written always loads back.
    """
    fields = _fields_from_episodes(env_id, observation_space, action_space, episodes)
    arrays = {key: torch.from_numpy(fields[key]) for key in (*ARRAY_FIELDS, *OPTIONAL_FIELDS) if key in fields}
    try:
        _validate({**fields, **arrays})
    except Malformed as err:
        raise ValueError(f"cannot save expert trajectories for {env_id}: {err}") from None
    npz = path.endswith(".npz")
    payload: dict[str, Any] = {key: fields[key] for key in ("format", "version", "env_id", "spaces")}
    if npz:
        # Only plain arrays: strings as 0-d unicode arrays, so allow_pickle=False reads them.
        payload = {
            key: np.array(value, dtype=np.int64 if key == "version" else np.str_) for key, value in payload.items()
        }
        payload.update({key: fields[key] for key in arrays})
    else:
        payload.update(arrays)
    if npz:
        write_atomically(path, lambda f: np.savez(f, allow_pickle=False, **payload))
    else:
        write_atomically(path, lambda f: torch.save(payload, f))


def _read_npz(path: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            array = archive[key]
            if array.ndim == 0 and array.dtype.kind == "U":
                fields[key] = str(array[()])
            elif array.ndim == 0 and key == "version" and array.dtype.kind == "i":
                fields[key] = int(array)
            else:
                fields[key] = torch.from_numpy(array)
    return fields


def load_trajectories(
    path: str,
    *,
    env_id: str | None = None,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    max_episode_steps: int | None = None,
) -> Trajectories:
    """Read and validate an expert trajectory file; with ``env_id`` / the spaces given, also
    check that the file was recorded on them, and with ``max_episode_steps`` (the env's time
    limit) that no episode is longer than that env lets one be. ConfigError (saying what to
    change) otherwise."""
    name = f"expert trajectories {path!r}"
    remedy = "record expert trajectories (enjoy.py --record-trajectories) or pass the right path."
    check_archive(path, name, "file", remedy)
    try:
        fields = _read_npz(path) if path.endswith(".npz") else torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, ValueError) as err:
        # np.load refuses pickled data with a ValueError that names allow_pickle; torch's
        # weights-only unpickler raises UnpicklingError.
        if isinstance(err, pickle.UnpicklingError) or "pickle" in str(err):
            raise ConfigError(
                f"{name} is refused: it contains code or Python objects besides arrays and plain data, and "
                "loading it could run that code. Record the trajectories with a2c_ppo.trajectories.save_trajectories."
            ) from None
        raise ConfigError(f"{name} cannot be read ({err}); it is truncated or damaged. Record it again.") from None
    except Exception as err:
        raise ConfigError(
            f"{name} cannot be read ({type(err).__name__}): it is not a trajectory file, or it is truncated or "
            "damaged (e.g. copied while being written). Record it again or pass another file."
        ) from None
    try:
        if not isinstance(fields, dict):
            raise Malformed(f"it holds a {type(fields).__name__}, not a dict of fields")
        trajectories = _validate(fields)
    except Malformed as err:
        raise ConfigError(
            f"{name} is not a valid a2c_ppo trajectory file: {err}. Record it again with "
            "a2c_ppo.trajectories.save_trajectories."
        ) from None
    if env_id is not None and trajectories.env_id != env_id:
        raise ConfigError(
            f"{name} was recorded on {trajectories.env_id!r}, but the env is {env_id!r}; pass trajectories "
            f"recorded on {env_id!r}, or train on {trajectories.env_id!r}."
        )
    for role, space in (("observation", observation_space), ("action", action_space)):
        if space is None:
            continue
        expected, stored = describe_space(space), trajectories.spaces[role]
        if not (matches_recorded(stored, space) if role == "action" else stored == expected):
            raise ConfigError(
                f"{name} has the {role} space {space_text(stored)}, but the env's {role} space is "
                f"{space_text(expected)}; pass trajectories recorded on this env with the same wrappers."
            )
    if max_episode_steps is not None:
        _check_time_limit(trajectories, max_episode_steps, name)
    return trajectories


def _check_time_limit(trajectories: Trajectories, limit: int, name: str) -> None:
    """ConfigError for an episode longer than ``limit``: gymnasium's TimeLimit truncates every
    episode by its ``limit``-th step (frame skipping only shortens what is recorded), so the file
    holds episodes of another env than the one it names. An episode of exactly ``limit`` steps
    that says it terminated is not refused: an env may terminate on that very step, gymnasium
    then reports both flags, and the recorder writes terminated, as absorbing states need."""
    longest = int(trajectories.lengths.max())
    if longest <= limit:
        return
    k = int(trajectories.lengths.argmax())
    raise ConfigError(
        f"{name} cannot have been recorded on {trajectories.env_id!r}: its episode {k} has {longest} steps, more "
        f"than the time limit of {limit} steps (max_episode_steps) by which that env ends every episode. Record "
        "the expert again on this env (enjoy.py --record-trajectories), or pass another file."
    )


def _take_episodes(trajectories: Trajectories, rows: list[torch.Tensor], episodes: list[int]) -> Trajectories:
    """The given episodes (indices into ``trajectories.lengths``) keeping ``rows[k]`` of episode ``k``."""
    index = torch.cat([rows[k] for k in episodes])
    return replace(
        trajectories,
        obs=trajectories.obs[index],
        actions=trajectories.actions[index],
        rewards=trajectories.rewards[index],
        lengths=torch.tensor([len(rows[k]) for k in episodes], dtype=torch.int64),
        returns=trajectories.returns[episodes],
        terminated=None if trajectories.terminated is None else trajectories.terminated[episodes],
    )


def _episode_rows(lengths: torch.Tensor) -> list[torch.Tensor]:
    ends = lengths.cumsum(0).tolist()
    return [torch.arange(end - length, end) for end, length in zip(ends, lengths.tolist())]


def _as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    return torch.Generator().manual_seed(generator) if isinstance(generator, int) else generator


def select_episodes(
    trajectories: Trajectories, count: int, generator: torch.Generator | int | None = None
) -> Trajectories:
    """``count`` episodes drawn at random without replacement (the reference keeps 4 of its
    files' episodes); ``generator`` a torch.Generator or a seed (None: torch's global RNG)."""
    total = len(trajectories.lengths)
    if not 1 <= count <= total:
        raise ConfigError(f"cannot keep {count} expert episodes: the file holds {total}; ask for 1 to {total}.")
    chosen = torch.randperm(total, generator=_as_generator(generator))[:count].tolist()
    return _take_episodes(trajectories, _episode_rows(trajectories.lengths), chosen)


def subsample(
    trajectories: Trajectories,
    every: int,
    start: int | None = None,
    generator: torch.Generator | int | None = None,
) -> Trajectories:
    """Keep steps ``start, start + every, ...`` of each episode (the reference: every 20 steps).

    ``start`` None: each episode draws its own start in ``[0, every)`` from ``generator`` (a
    torch.Generator or a seed; None: torch's global RNG). Episodes left with no step are dropped.
    """
    if every < 1 or (start is not None and not 0 <= start < every):
        raise ConfigError(
            f"cannot subsample every {every} steps from step {start}; use every >= 1 and 0 <= start < every."
        )
    episodes = len(trajectories.lengths)
    if start is None:
        starts = torch.randint(0, every, (episodes,), generator=_as_generator(generator)).tolist()
    else:
        starts = [start] * episodes
    rows = [r[s::every] for r, s in zip(_episode_rows(trajectories.lengths), starts)]
    kept = [k for k in range(episodes) if len(rows[k]) > 0]
    if not kept:
        raise ConfigError(f"subsampling every {every} steps leaves no step of any expert episode; subsample less.")
    return _take_episodes(trajectories, rows, kept)
