"""What a Python caller passes to ``train``, ``load`` and ``Agent.evaluate``, as the
settings ``main.py``'s flags give: env ids or callables as names, classes as references,
dicts as JSON text, numpy scalars as Python numbers, True / False as on / off."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from a2c_ppo.config import SETTINGS
from a2c_ppo.envs.make import register_factory
from a2c_ppo.errors import ConfigError

EnvSpec = str | Callable[..., Any]


def env_name(env: EnvSpec) -> str:
    """The setting an env gives: an id or ``module:factory`` as it is, a callable registered
    under its own name (``envs.make.register_factory``)."""
    if isinstance(env, str):
        return env
    if callable(env):
        return register_factory(env)
    made = isinstance(env, (gym.Env, gym.vector.VectorEnv))
    hint = " (an env made already: pass what makes it, e.g. lambda: gym.make(...) or gym.make_vec(...))" if made else ""
    raise ConfigError(
        f"env must be an id, a 'module:factory' string or a callable returning an env, not {env!r}{hint}."
    )


def reference(base: type | str) -> str:
    """A network class as the ``module:Class`` a checkpoint records (classes of a script or
    notebook are found again in the same process)."""
    if isinstance(base, str):
        return base
    if isinstance(base, type):
        return register_factory(base)
    raise ConfigError(f"policy_base must be a torch.nn.Module subclass or 'module:Class', not {base!r}.")


def plain(value: Any) -> Any:
    """numpy scalars as the Python numbers the checkpoint's JSON holds (``np.int64(5)`` -> 5),
    paths (``pathlib.Path``) as the text the folder settings hold."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value.item() if isinstance(value, np.generic) else value


def switch_word(name: str, value: Any) -> Any:
    """True / False as "on" / "off" for a setting chosen among words that hold both (auto / on /
    off: ``action_masks``, ``overlap``), as a Python caller writes a switch; else ``value``."""
    choices = SETTINGS[name].spec.choices if name in SETTINGS else None
    word = ("on" if value else "off") if isinstance(value, bool) else None
    return word if choices is not None and word in choices else value


def whole_number(value: Any, name: str, low: int) -> int:
    """``value`` as an int of at least ``low`` (numpy integers too); ConfigError otherwise."""
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be a whole number, {low} or more; got {value!r}.")
    return value


def json_text(kwargs: Any, name: str) -> str:
    """A dict of keyword arguments as the JSON a setting holds (JSON text as it is); ConfigError
    for anything else, or what JSON cannot hold."""
    if isinstance(kwargs, str):
        return kwargs
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{name} must be a dict of keyword arguments (or its JSON text), not {kwargs!r}.")
    _check_keys(kwargs, name)
    try:
        return json.dumps(kwargs, default=_numpy_value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}; give plain values (numbers, text, true/false, lists, dicts).") from None


def _check_keys(value: Any, where: str) -> None:
    """ConfigError for a dict key that is not text, at any depth: JSON would turn ``{1: 16}``
    into ``{"1": 16}``, and the code given it would find another key than it was given."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, part in items:
        if isinstance(value, dict) and not isinstance(key, str):
            raise ConfigError(
                f"{where} has the key {key!r} ({type(key).__name__}); the settings hold JSON, whose keys are text, "
                f"so it would reach your code as {str(key)!r}: give text keys."
            )
        _check_keys(part, f"{where}[{key!r}]")


def _numpy_value(value: Any) -> Any:
    """A numpy scalar or array as the Python numbers (or lists) JSON holds; TypeError otherwise."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: Names other libraries (Stable-Baselines3's mostly) give the settings, with ours: a caller
#: used to them is told the name here, which spelling alone would not find.
OTHER_NAMES = {
    "learning_rate": "lr",
    "n_envs": "num_processes",
    "num_envs": "num_processes",
    "total_timesteps": "num_env_steps",
    "n_timesteps": "num_env_steps",
    "n_steps": "num_steps",
    "n_epochs": "ppo_epoch",
    "batch_size": "num_mini_batch (minibatches per epoch: num_steps x num_processes / batch_size)",
    "clip_range": "clip_param",
    "vf_coef": "value_loss_coef (twice vf_coef: ours weighs half the squared error)",
    "ent_coef": "entropy_coef",
    "recurrent": "recurrent_policy",
    "normalize": "norm_obs and norm_reward",
}


def unknown_setting(name: str) -> ConfigError:
    """The ConfigError for a setting ``name`` that does not exist, with ours where ``name`` is
    another library's, else the closest spellings."""
    known = [known for known, declared in SETTINGS.items() if declared.spec.flag is not None]
    close = [OTHER_NAMES[name]] if name in OTHER_NAMES else difflib.get_close_matches(name, known, n=3, cutoff=0.75)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return ConfigError(f"{name!r} is not a setting{hint}; see main.py --help for every setting.")
