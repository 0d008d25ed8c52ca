"""The library face: ``train(env, **settings)`` and ``load(path) -> Agent``.

``main.py`` is a thin layer over the same pieces: a keyword of ``train`` is a flag of
``main.py`` with underscores (``num_env_steps=50_000`` is ``--num-env-steps 50000``), with the
same presets and defaults, and bad settings raise ``ConfigError`` (a ``ValueError``) with the
message ``main.py`` prints. ``env`` is a registered id, a ``"module:factory"`` string, or a
callable returning a ``gymnasium.Env`` or a ``gymnasium.vector.VectorEnv`` (its own batch of
envs); a callable defined in a script or notebook reaches the worker processes by value.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a2c_ppo.builders import build_envs, policy_for, replay_config, replay_vec_env
from a2c_ppo.callbacks import Callback
from a2c_ppo.checkpoint import check_trusted, handed_over, load_checkpoint
from a2c_ppo.config import RunConfig, check_value
from a2c_ppo.envs.finite import class_range
from a2c_ppo.envs.make import register_factory
from a2c_ppo.envs.normalize import VecNormalize, frozen_statistics, normalized
from a2c_ppo.envs.torch_env import env_action_converter
from a2c_ppo.errors import ConfigError
from a2c_ppo.evaluation import run_episodes
from a2c_ppo.model import Policy
from a2c_ppo.observations import Obs, obs_from_numpy
from a2c_ppo.resolve import resolve_request
from a2c_ppo.restore_check import check_finite, check_normalization, load_model
from a2c_ppo.sde import resample_noise
from a2c_ppo.session import TrainResult, run
from a2c_ppo.signals import StopSignals
from a2c_ppo.spaces import ACTION_MASK, allows_an_action, mask_splits
from a2c_ppo.trajectory_spaces import describe_space

EnvSpec = str | Callable[..., Any]


def _env_name(env: EnvSpec) -> str:
    if isinstance(env, str):
        return env
    if callable(env):
        return register_factory(env)
    made = isinstance(env, (gym.Env, gym.vector.VectorEnv))
    hint = " (an env made already: pass what makes it, e.g. lambda: gym.make(...) or gym.make_vec(...))" if made else ""
    raise ConfigError(
        f"env must be an id, a 'module:factory' string or a callable returning an env, not {env!r}{hint}."
    )


def _reference(base: type | str) -> str:
    """A network class as the ``module:Class`` a checkpoint records (classes of a script or
    notebook are found again in the same process)."""
    if isinstance(base, str):
        return base
    if isinstance(base, type):
        return register_factory(base)
    raise ConfigError(f"policy_base must be a torch.nn.Module subclass or 'module:Class', not {base!r}.")


@contextlib.contextmanager
def _signals() -> Iterator[StopSignals]:
    """Ctrl-C as the CLI handles it (a checkpoint of the last finished update), in the main
    thread; elsewhere (another thread) no handler can be installed and KeyboardInterrupt does."""
    signals = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield signals
        return
    with signals:
        yield signals


def train(
    env: EnvSpec | None = None,
    *,
    callbacks: Callback | Iterable[Callback] = (),
    resume: str | None = None,
    trust_checkpoint: bool = False,
    **settings: Any,
) -> TrainResult:
    """Train on ``env`` with ``settings`` (the flags' names, see ``python main.py --help``; a
    setting given as ``None`` takes its default), calling ``callbacks`` (one callable or several)
    after every update: one returning ``False`` (or ``np.False_``) stops the run, its
    checkpoint saved. ``resume``: a checkpoint to continue, as ``--resume`` (``env`` left out:
    the checkpoint's). ``env`` left out of a new run: ``CartPole-v1``, as ``main.py``'s default.

    ``policy_base`` may be a ``torch.nn.Module`` subclass, ``policy_kwargs`` and ``env_kwargs`` dicts. Returns
    the run's checkpoint path, env steps and learning curve; raises ``ConfigError`` for bad
    settings, before anything starts. Like ``main.py`` it seeds Python's, numpy's and torch's
    global generators with ``seed``; torch's thread count is restored on return.
    """
    typed = {name: _plain(value) for name, value in settings.items() if value is not None}
    if env is not None:
        if "env_name" in typed and typed["env_name"] != env:
            raise ConfigError(f"train() got the env twice ({env!r} and env_name={typed['env_name']!r}); give one.")
        typed["env_name"] = env
    if "env_name" in typed:
        typed["env_name"] = _env_name(typed["env_name"])
    if "policy_base" in typed:
        typed["policy_base"] = _reference(typed["policy_base"])
    for name in ("policy_kwargs", "env_kwargs"):
        if name in typed:
            typed[name] = _json_text(typed[name], name)
    hooks = _callbacks(callbacks)
    request = resolve_request(typed, resume, trust_checkpoint)
    threads = torch.get_num_threads()
    try:
        with _signals() as signals:
            return run(request.config, checkpoint=request.checkpoint, notes=request.notes, signals=signals,
                       callbacks=hooks, best_model=request.best_model)  # fmt: skip
    finally:
        torch.set_num_threads(threads)  # the run set its own (--num-threads); the caller's comes back


def _plain(value: Any) -> Any:
    """numpy scalars as the Python numbers the checkpoint's JSON holds (``np.int64(5)`` -> 5)."""
    return value.item() if isinstance(value, np.generic) else value


def _callbacks(callbacks: Callback | Iterable[Callback]) -> list[Callback]:
    """``callbacks`` as a list of callables; ConfigError for anything else, before the run starts."""
    hooks: list[Any]
    if callable(callbacks):
        hooks = [callbacks]
    else:
        try:
            hooks = list(callbacks)
        except TypeError:
            hooks = [callbacks]
    for hook in hooks:
        if not callable(hook):
            raise ConfigError(
                f"callbacks must be a callable or a list of callables taking an UpdateInfo, and {hook!r} is not "
                "callable."
            )
    return hooks


class Agent:
    """A trained policy that acts on numpy observations (see ``load``).

    ``act`` applies the checkpoint's frozen observation normalisation and carries a recurrent
    policy's state from call to call (``reset`` starts new episodes)."""

    def __init__(self, policy: Policy, config: RunConfig, normalization: dict[str, Any] | None) -> None:
        self.policy, self.config, self.normalization = policy.eval(), config, normalization
        self.observation_space, self.action_space = policy.obs_space, policy.action_space
        self._to_env = env_action_converter(self.action_space)
        self._statistics = frozen_statistics(normalization) if normalization else None
        self._state: torch.Tensor | None = None
        self._steps = 0  # sampled acts since the episodes started: gSDE draws its noise on its schedule

    def reset(self) -> None:
        """Forget the recurrent state: the next ``act`` starts new episodes."""
        self._state = None

    def act(self, obs: Any, deterministic: bool = True, action_mask: Any = None) -> np.ndarray:
        """The action for one observation (or a batch: numpy, with a leading batch axis) as the
        env takes it. Dict / Tuple observations come as the env gives them; ``action_mask``: the
        env's mask, if the policy was trained with masks and ``obs`` does not hold it."""
        batch, single = self._batch(obs, action_mask)
        n = len(next(iter(batch.values())) if isinstance(batch, dict) else batch)
        if self._state is None or len(self._state) != n:
            self._state, self._steps = torch.zeros(n, self.policy.recurrent_hidden_state_size), 0
        masks = torch.ones(n, 1)
        if not deterministic:  # gSDE's noise matrices, one per row, drawn on its schedule of sampled acts
            resample_noise(self.policy, n, self._steps)
            self._steps += 1
        with torch.inference_mode():
            _, action, _, self._state = self.policy.act(batch, self._state, masks, deterministic)
        actions = self._to_env(action)
        if isinstance(self.action_space, gym.spaces.Box):  # as the env takes them (envs/wrappers.clip_box_actions)
            actions = np.clip(actions, self.action_space.low, self.action_space.high)
        return actions[0] if single else actions

    def _batch(self, obs: Any, action_mask: Any) -> tuple[Obs, bool]:
        """``obs`` in the policy's layout, normalised, as a batch of tensors; whether it was one."""
        space = self.observation_space
        if isinstance(space, gym.spaces.Dict):
            if isinstance(obs, (list, tuple)) and obs and all(isinstance(one, dict) for one in obs):
                raise ValueError(
                    "act: a batch of Dict observations is one dict of arrays with a leading batch axis (as a "
                    "vector env gives them), not a list of dicts: pass {key: np.stack([o[key] for o in obs]) ...}."
                )
            if set(space.spaces) == {"obs", ACTION_MASK} and not isinstance(obs, dict):  # the env's own observation
                obs = {"obs": obs}  # as the mask wrapper holds it beside the mask (envs/wrappers.py)
            parts = {key: _part(obs, key) for key in space.spaces if key != ACTION_MASK}
            if ACTION_MASK in space.spaces:
                parts[ACTION_MASK] = np.asarray(action_mask if action_mask is not None else _part(obs, ACTION_MASK))
                mask = parts[ACTION_MASK].astype(np.bool_, copy=False)
                if not np.all(allows_an_action(mask, mask_splits(self.action_space))):
                    raise ValueError("act: an action mask allows no action; the env must allow one at every step.")
            single = _is_single(parts, space)
            arrays = {
                key: _layout(np.asarray(value), space[key], single, f"part {key!r}") for key, value in parts.items()
            }
            arrays = self._normalized(arrays)
            return obs_from_numpy(arrays, space), single
        array = np.asarray(obs)
        single = array.ndim == len(space.shape or ())  # one observation, either way round for an image
        return obs_from_numpy(self._normalized(_layout(array, space, single, "the observation")), space), single

    def _normalized(self, obs: Any) -> Any:
        return obs if self._statistics is None else normalized(obs, self._statistics)

    def evaluate(
        self, env: EnvSpec | None = None, episodes: int = 10, seed: int = 0, env_kwargs: dict[str, Any] | None = None
    ) -> list[float]:
        """The true returns of ``episodes`` episodes on ``env`` built with ``env_kwargs`` (defaults:
        the env trained on, with the keyword arguments it was trained with)."""
        episodes = _whole_number(episodes, "episodes", 1)
        check_value("seed", _whole_number(seed, "seed", 0))
        config = self.config.replace(env_name=_env_name(env)) if env is not None else self.config
        if env_kwargs is not None:
            config = config.replace(env_kwargs=_json_text(env_kwargs, "env_kwargs"))
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
            return [ret for ret, _ in run_episodes(self.policy, envs, episodes, seed=seed)]
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
    if not single and array.shape == shape:
        raise ValueError(
            f"act: {what} has shape {array.shape}, one observation's, and the observation's first part is a batch: "
            f"give every part (and the action mask) with the same leading batch axis, "
            f"({', '.join(['B', *map(str, shape)])})."
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


def load(
    path: str,
    *,
    env: EnvSpec | None = None,
    trust_checkpoint: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    policy_base: type | str | None = None,
) -> Agent:
    """The agent a checkpoint holds. Loading follows ``--resume``'s rules: the file is data
    (``torch.load(weights_only=True)``), and code it names (an env or a network given as
    ``module:attribute``) is imported, or text env arguments it gives are passed, only with
    ``trust_checkpoint=True``, or when this process was handed that object (``train(env=...)``
    above) or the call gives ``env_kwargs`` (which replace the checkpoint's).

    ``env``: the env to build the policy for, and ``evaluate``'s default, in place of the one the
    checkpoint names (which another process may not have: an env made by a lambda in a script
    or notebook); its spaces must be the checkpoint's. ``policy_base``: the network class (or
    ``module:Class``) in place of the one the checkpoint names; its weights must fit."""
    checkpoint = load_checkpoint(path)
    notes: list[str] = []
    config = RunConfig.from_dict(checkpoint["config"], notes)
    if env is not None:
        config = config.replace(env_name=_env_name(env))
    elif "<" in config.env_name and not handed_over(config.env_name):  # a lambda's, or a nested function's
        raise ConfigError(
            f"load({path!r}): the checkpoint was trained on an env made by {config.env_name!r}, which only the "
            "process that trained it knows; give the env: load(path, env=...) with an id or a callable that makes it."
        )
    if env_kwargs is not None:
        config = config.replace(env_kwargs=_json_text(env_kwargs, "env_kwargs"))
    known: dict[str, Any] = {}
    if env is not None:
        known["env_name"] = config.env_name
    if policy_base is not None:
        config = config.replace(policy_base=_reference(policy_base))
        known["policy_base"] = config.policy_base
    if env_kwargs is not None:
        known["env_kwargs"] = config.env_kwargs
    check_trusted(config, known, trust_checkpoint, what=f"load({path!r})")
    check_finite(checkpoint, f"checkpoint {path!r}")
    from a2c_ppo.checkpoint import check_spaces

    config, spaces = replay_config(config)
    check_spaces(checkpoint, *spaces, config.env_name)
    policy = policy_for(config, *spaces)  # on the CPU: an agent acts on one observation at a time
    load_model(policy, checkpoint, f"checkpoint {path!r}", named_base=known.get("policy_base"))
    check_normalization(checkpoint, spaces[0], f"checkpoint {path!r}")
    return Agent(policy, config, checkpoint["normalization"])


def _whole_number(value: Any, name: str, low: int) -> int:
    """``value`` as an int of at least ``low`` (numpy integers too); ConfigError otherwise."""
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be a whole number, {low} or more; got {value!r}.")
    return value


__all__ = ["Agent", "ConfigError", "TrainResult", "load", "train"]


def _json_text(kwargs: Any, name: str) -> str:
    """A dict of keyword arguments as the JSON a setting holds (JSON text as it is); ConfigError
    for anything else, or what JSON cannot hold."""
    if isinstance(kwargs, str):
        return kwargs
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{name} must be a dict of keyword arguments (or its JSON text), not {kwargs!r}.")
    try:
        return json.dumps(kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}; give plain values (numbers, text, true/false, lists, dicts).") from None
