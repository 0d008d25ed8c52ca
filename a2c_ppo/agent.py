"""``Agent``: a trained policy acting on numpy observations, as ``load`` returns it."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a2c_ppo.api_values import EnvSpec, env_name, json_text, whole_number
from a2c_ppo.builders import build_envs, replay_config, replay_vec_env
from a2c_ppo.config import RunConfig, check_value
from a2c_ppo.envs.finite import class_range
from a2c_ppo.envs.frames import frame_processing, recipe_of
from a2c_ppo.envs.make import make_env
from a2c_ppo.envs.normalize import VecNormalize, frozen_statistics, normalized
from a2c_ppo.envs.torch_env import EnvActionConverter
from a2c_ppo.errors import ConfigError
from a2c_ppo.evaluation import left_out, run_episodes
from a2c_ppo.model import Policy
from a2c_ppo.observations import Obs, obs_from_numpy
from a2c_ppo.sde import resample_noise
from a2c_ppo.spaces import ACTION_MASK, allows_an_action, mask_splits
from a2c_ppo.trajectory_spaces import describe_space


class Agent:
    """A trained policy that acts on numpy observations (see ``load``).

    ``act`` applies the checkpoint's frozen observation normalisation and carries a recurrent
    policy's state from call to call (``reset`` starts new episodes)."""

    def __init__(self, policy: Policy, config: RunConfig, normalization: dict[str, Any] | None) -> None:
        self.policy, self.config, self.normalization = policy.eval(), config, normalization
        self.observation_space, self.action_space = policy.obs_space, policy.action_space
        self._to_env = EnvActionConverter(self.action_space)
        # VecNormalize's parts only: a Discrete observation or an image passes as it is (even with norm_obs)
        self._statistics = frozen_statistics(normalization, self.observation_space) if normalization else None
        self._state: torch.Tensor | None = None
        self._steps = 0  # sampled acts since the episodes started: gSDE draws its noise on its schedule

    def reset(self) -> None:
        """Forget the recurrent state: the next ``act`` starts new episodes."""
        self._state = None

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        """The env the policy acts in, built as the run built each of its envs (its frame
        processing or Atari pipeline, action clipping, observations as the policy reads them,
        the action mask among them), with the env's own rewards: a loop of one's own feeds
        ``act`` what it gives. An Atari id's episode is a whole game (training's ended at each
        lost life): where a life is lost the env goes on as training's autoreset did and says
        ``info["life_lost"]``, where a recurrent policy's state restarts (``episode_start``).
        ConfigError for an agent whose env is a vector env of one's own."""
        if self.config.vec_env == "native":
            raise ConfigError(
                f"make_env: {self.config.env_name!r} makes a vector env of its own; build it as you built it for "
                "training, and give act() a batch of its observations."
            )
        return make_env(self.config.env_name, render_mode=render_mode, clip_reward=False, episodic_life=False,
                        action_masks=self.config.action_masks == "on", recipe=recipe_of(self.config))  # fmt: skip

    def act(
        self,
        obs: Any,
        deterministic: bool = True,
        action_mask: Any = None,
        episode_start: Any = None,
        episode_end: Any = None,
    ) -> np.ndarray | np.generic:
        """The action for one observation (or a batch: numpy, with a leading batch axis) as the
        env takes it (a numpy scalar for one discrete action). Dict / Tuple observations come as
        the env gives them, after the frame processing the run used (``make_env`` builds an env
        that does it); ``action_mask``: the env's
        mask, if the policy was trained with masks and ``obs`` does not hold it. A recurrent
        policy carries its state from call to call: ``episode_start`` (a bool, or one per row)
        restarts it where an episode begins with ``obs``; ``reset()`` restarts every row, and a
        batch of another size starts afresh. ``episode_end`` (a bool, or one per row): where
        ``obs`` is an ended episode's last observation (``terminated | truncated`` of the step
        that gave it), which a next-step autoreset vector env keeps in its batch and whose
        action it ignores: there, as in training, a mask may allow no action (a game over)."""
        _check_switch(deterministic, "act", "deterministic")
        try:
            batch, single, allowed = self._batch(obs, action_mask)
        except ValueError as exc:
            processing = frame_processing(self.config)
            if processing and "shape" in str(exc):
                raise ValueError(f"{str(exc).rstrip('.')}: the policy reads observations after {processing}.") from None
            raise
        n = len(next(iter(batch.values())) if isinstance(batch, dict) else batch)
        ended = _per_row(False if episode_end is None else episode_end, n, "episode_end")
        if allowed is not None and not (allowed | ended).all():
            row = f" of row {int(np.flatnonzero(~(allowed | ended))[0])}" if not single else ""
            raise ValueError(
                f"act: the action mask{row} allows no action (for MultiDiscrete actions: none in some dimension); "
                "the env must allow one at every step of an episode. Only an ended episode's last observation may "
                "allow none (a game over, which a next-step autoreset vector env keeps in its batch): pass "
                "episode_end=terminated | truncated of the step that gave obs."
            )
        if self._state is None or len(self._state) != n:
            self._state, self._steps = torch.zeros(n, self.policy.recurrent_hidden_state_size), 0
        masks = torch.ones(n, 1)
        if episode_start is not None:
            masks = torch.from_numpy(~_per_row(episode_start, n, "episode_start")).float().view(n, 1)
        if not deterministic:  # gSDE's noise matrices, one per row, drawn on its schedule of sampled acts
            resample_noise(self.policy, n, self._steps)
            self._steps += 1
        with torch.inference_mode():
            _, action, _, self._state = self.policy.act(batch, self._state, masks, deterministic)
        actions = self._to_env(action)
        if isinstance(self.action_space, gym.spaces.Box):  # as the env takes them (envs/wrappers.clip_box_actions)
            actions = np.clip(actions, self.action_space.low, self.action_space.high)
        return actions[0] if single else actions

    def _batch(self, obs: Any, action_mask: Any) -> tuple[Obs, bool, np.ndarray | None]:
        """``obs`` in the policy's layout, normalised, as a batch of tensors; whether it was one;
        for a masked policy, whether each row's mask allows an action (B,)."""
        space = self.observation_space
        if action_mask is not None and not (isinstance(space, gym.spaces.Dict) and ACTION_MASK in space.spaces):
            raise ValueError(
                "act: action_mask= given, and this policy was trained without action masks, so it would be ignored: "
                "drop it, or train with them (--action-masks on, an env that gives masks)."
            )
        if isinstance(space, gym.spaces.Dict):
            if isinstance(obs, (list, tuple)) and obs and all(isinstance(one, dict) for one in obs):
                raise ValueError(
                    "act: a batch of Dict observations is one dict of arrays with a leading batch axis (as a "
                    "vector env gives them), not a list of dicts: pass {key: np.stack([o[key] for o in obs]) ...}."
                )
            listed = isinstance(obs, list) and bool(obs) and all(isinstance(one, (tuple, list)) for one in obs)
            if listed and _of_tuple(space):
                # a list of tuples reads as parts, one per observation: transposed, and silently so
                raise ValueError(
                    "act: a batch of Tuple observations is one tuple of arrays with a leading batch axis (as a "
                    "vector env gives them), not a list of observations: pass tuple(np.stack(part) for part in "
                    "zip(*obs)), or act on each observation alone."
                )
            if set(space.spaces) == {"obs", ACTION_MASK} and not isinstance(obs, dict):  # the env's own observation
                obs = {"obs": obs}  # as the mask wrapper holds it beside the mask (envs/wrappers.py)
            parts = {key: _part(obs, key) for key in space.spaces if key != ACTION_MASK}
            if ACTION_MASK in space.spaces:
                parts[ACTION_MASK] = np.asarray(action_mask if action_mask is not None else _part(obs, ACTION_MASK))
            single = _is_single(parts, space)
            arrays = {
                key: _layout(np.asarray(value), space[key], single, f"part {key!r}") for key, value in parts.items()
            }
            allowed = None
            if ACTION_MASK in arrays:
                allowed = allows_an_action(arrays[ACTION_MASK] != 0, mask_splits(self.action_space))
            return obs_from_numpy(self._normalized(arrays), space), single, allowed
        array = np.asarray(obs)
        single = array.ndim == len(space.shape or ())  # one observation, either way round for an image
        laid_out = _layout(array, space, single, "the observation")
        return obs_from_numpy(self._normalized(laid_out), space), single, None

    def _normalized(self, obs: Any) -> Any:
        return obs if self._statistics is None else normalized(obs, self._statistics)

    def evaluate(
        self,
        env: EnvSpec | None = None,
        episodes: int = 10,
        seed: int | None = 0,
        env_kwargs: dict[str, Any] | None = None,
        deterministic: bool = True,
    ) -> list[float]:
        """The true returns of ``episodes`` episodes on ``env`` built with ``env_kwargs`` (defaults:
        the agent's env and env_kwargs, ``load``'s, else the checkpoint's), the episodes' envs
        seeded from ``seed`` (``None``: 0), acting on the policy's mode, or sampling with
        ``deterministic=False`` (its samples seeded from ``seed`` too). An episode still going
        after ``EVAL_MAX_EPISODE_STEPS`` steps (an env without a time limit) is left out, with a
        RuntimeWarning: fewer returns than ``episodes``."""
        episodes = whole_number(episodes, "episodes", 1)
        seed = whole_number(0 if seed is None else seed, "seed", 0)
        check_value("seed", seed)
        _check_switch(deterministic, "evaluate", "deterministic")
        config = self.config.replace(env_name=env_name(env)) if env is not None else self.config
        if env_kwargs is not None:
            config = config.replace(env_kwargs=json_text(env_kwargs, "env_kwargs"))
        config, spaces = replay_config(config)  # ConfigError
        for kind, space, own in zip(("observation", "action"), spaces, (self.observation_space, self.action_space)):
            if _structure(space) != _structure(own):
                raise ConfigError(
                    f"evaluate: {config.env_name!r} has {kind} space {_brief(space)}, and the policy was trained on "
                    f"{_brief(own)}; evaluate it on an env with the spaces it was trained on."
                )
        envs = build_envs(config, 1, torch.device("cpu"), vec_env=replay_vec_env(config))
        try:
            if isinstance(envs.envs, VecNormalize):
                if self.normalization:
                    envs.envs.load_state_dict(self.normalization)
                envs.envs.eval()
            played = run_episodes(self.policy, envs, episodes, deterministic=deterministic, seed=seed)
            if len(played) < episodes:
                warnings.warn(f"evaluate: {left_out(len(played), episodes)}.", RuntimeWarning, stacklevel=2)
            return [ret for ret, _ in played]
        finally:
            envs.close()


def _part(obs: Any, key: str) -> Any:
    """The part ``key`` (``spaces.key_of`` path) of an observation as the env gives it."""
    if isinstance(obs, dict) and key in obs:
        return obs[key]
    value = obs
    try:
        for step in key.split("."):
            value = value[int(step)] if isinstance(value, (tuple, list)) else value[step]
    except (KeyError, IndexError, TypeError, ValueError):
        hint = " (a batch of Dict or Tuple observations: each part batched, e.g. a tuple of (B, ...) arrays)"
        if key == ACTION_MASK:
            hint = " (an env that gives its mask in info: act(obs, action_mask=info['action_mask']))"
        raise ValueError(f"act: the observation has no part {key!r}, which the policy reads{hint}.") from None
    return value


def _check_switch(value: Any, method: str, name: str) -> None:
    """ValueError unless ``value`` is a bool: ``deterministic="no"`` must not act as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{method}: {name} must be True or False, got {value!r}.")


def _per_row(value: Any, n: int, name: str) -> np.ndarray:
    """``value`` (a bool, or one per row) as (n,) bools; ValueError for another shape."""
    rows = np.asarray(value, dtype=np.bool_)
    if rows.shape not in ((), (n,), (n, 1)):
        raise ValueError(f"act: {name} has shape {rows.shape}; give one bool, or one per row ({n},).")
    return np.broadcast_to(rows.reshape(-1), (n,))


def _of_tuple(space: gym.spaces.Dict) -> bool:
    """Whether the policy's Dict holds a Tuple observation's parts (keys ``0``, ``1.0``, ``obs.1``...)."""
    return any(part.isdigit() for key in space.spaces for part in key.split(".")[:2])


def _is_single(parts: dict[str, Any], space: gym.spaces.Dict) -> bool:
    key, value = next(iter(parts.items()))
    return np.ndim(value) <= len(space[key].shape or ()) and np.shape(value) != (1, *(space[key].shape or ()))


def _layout(array: np.ndarray, space: gym.Space, single: bool, what: str) -> np.ndarray:
    """A batch in the policy's layout: a leading axis, images channels-first. ValueError where
    ``array`` is neither one observation of ``space`` nor a batch of them, holds a class outside
    a discrete space, or a NaN or infinity."""
    batch = array[None] if single else array
    shape = tuple(space.shape or ())
    channels_last = (shape[1], shape[2], shape[0]) if len(shape) == 3 else None
    if batch.shape[1:] != shape and batch.shape[1:] == channels_last:  # (a cube is taken as it comes)
        batch = np.transpose(batch, (0, 3, 1, 2))
    batched = array.ndim == len(shape) + 1 and array.shape[1:] == shape
    if array.shape == shape and not single or batched and single:
        this, first = ("a batch", "one observation") if single else ("one observation", "a batch")
        raise ValueError(
            f"act: {what} has shape {array.shape}, {this}, and the observation's first part is {first}: give every "
            f"part (and the action mask) with the same leading batch axis, ({', '.join(['B', *map(str, shape)])}), "
            "or none."
        )
    if batch.ndim != len(shape) + 1 or batch.shape[1:] != shape:
        raise ValueError(
            f"act: {what} has shape {array.shape}, and the policy takes {shape} (one observation of {_brief(space)}) "
            f"or (B, {', '.join(map(str, shape))}) (a batch)."
        )
    bounds = _class_bounds(space)
    if bounds is not None and batch.size and (np.any(batch < bounds[0]) or np.any(batch > bounds[1])):
        raise ValueError(f"act: {what} holds values outside {_brief(space)}.")
    if batch.dtype.kind == "f" and not np.isfinite(batch).all():  # the policy's output would be NaN
        raise ValueError(f"act: {what} holds a NaN or an infinity.")
    if bounds is not None and batch.dtype.kind == "f" and not np.array_equal(batch, np.round(batch)):
        raise ValueError(f"act: {what} holds values that are not whole numbers, and {_brief(space)} holds classes.")
    return np.ascontiguousarray(batch)


def _structure(space: gym.Space) -> Any:
    """What a policy's inputs or outputs depend on in ``space``: its parts, their types, shapes,
    dtypes and classes, not a Box's bounds (an env argument may move them)."""
    if isinstance(space, gym.spaces.Dict):  # a mask is read as != 0 whatever its space: only its size counts
        return {
            key: ("mask", part.shape) if key == ACTION_MASK else _structure(part) for key, part in space.spaces.items()
        }
    if isinstance(space, gym.spaces.Tuple):
        return [_structure(part) for part in space.spaces]
    try:
        description = describe_space(space)
    except ValueError:  # a space no policy takes: its words
        return str(space)
    return {key: value for key, value in description.items() if key not in ("low", "high")}


def _brief(space: gym.Space) -> str:
    """A space in a few words (a Box's repr lists every bound)."""
    if isinstance(space, gym.spaces.Box):
        return f"Box{tuple(space.shape)} {space.dtype}"
    if isinstance(space, gym.spaces.Dict):
        return f"Dict({', '.join(f'{key!r}: {_brief(part)}' for key, part in space.spaces.items())})"
    return str(space)


def _class_bounds(space: gym.Space) -> tuple[Any, Any] | None:
    """The lowest and highest class a discrete space holds (per dimension); None for a Box."""
    return (0, 1) if isinstance(space, gym.spaces.MultiBinary) else class_range(space)
