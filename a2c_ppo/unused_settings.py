"""Settings that would do nothing in a run: a typed one is refused (ConfigError saying what to
drop), even at its default; an env entry's or preset's one goes back to its default and
``--show-settings`` marks it unused.

What each setting declares (its algorithms, the setting it needs) is checked by
``declaration.check_applies``; here are also the rules that depend on the env's spaces, the
vector env and one's own network.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from a2c_ppo.config import SETTINGS, RunConfig
from a2c_ppo.declaration import BY_PRESET, check_applies, flag_name, needs_met, needs_state
from a2c_ppo.envs.layout import check_vector_env_flags
from a2c_ppo.envs.normalize import normalized_parts
from a2c_ppo.errors import ConfigError

#: The built-in network's settings: a --policy-base network builds its own.
BUILT_IN_NETWORK = ("hidden_size", "activation", "recurrent_policy", "recurrent_type")


def check_typed_settings_apply(config: RunConfig, typed: dict[str, Any], spaces: tuple[gym.Space, gym.Space]) -> None:
    """ConfigError for a setting in ``typed`` (name -> value) that ``config``'s run, on an env
    of these (observation, action) ``spaces``, would not use."""
    if config.policy_base:  # before check_applies, whose advice (give --recurrent-policy) it would refuse
        _check_built_in_network(typed)
    # a --policy-base network may be recurrent itself (is_recurrent: resolve checks it once built)
    check_applies(SETTINGS, config.replace(recurrent_policy=True) if config.policy_base else config, set(typed))
    check_vector_env_flags(config.vec_env, config.overlap, set(typed))
    if typed.get("norm_obs") and not normalized_parts(spaces[0]):
        raise ConfigError(
            f"--norm-obs normalises float vector observations, and {config.env_name!r} has none (its observations: "
            f"{spaces[0]}): drop --norm-obs."
        )
    if "log_std_init" in typed and not config.use_sde and not isinstance(spaces[1], gym.spaces.Box):
        raise ConfigError(
            f"--log-std-init sets a Gaussian policy's spread, and {config.env_name!r} has {type(spaces[1]).__name__} "
            "actions (a categorical policy): drop --log-std-init."
        )


def drop_unused(values: dict[str, Any], origins: dict[str, str]) -> None:
    """In place: an entry's or preset's value of a setting whose ``needs`` is off (``--no-use-sde``
    typed over an entry's ``--sde-sample-freq``) goes back to its default (a preset's by-preset
    value, which has none, stays), and ``origins`` says it is unused."""
    for name, declared in SETTINGS.items():
        needs = declared.spec.needs
        if needs and origins.get(name) in ("env entry", "preset") and not needs_met(needs, values):
            unused = f"unused ({needs_state(needs, values)})"
            if declared.default is BY_PRESET:
                origins[name] = f"{origins[name]}, {unused}"
            else:
                values[name], origins[name] = declared.default, f"default, {unused}"


def _check_built_in_network(typed: dict[str, Any]) -> None:
    """ConfigError for a typed setting of the built-in network next to ``--policy-base``."""
    given = [name for name in BUILT_IN_NETWORK if name in typed]
    if given:
        flags = ", ".join(map(flag_name, given))
        raise ConfigError(
            f"{flags} {'shapes' if len(given) == 1 else 'shape'} the built-in network, and the --policy-base "
            f"network builds its own (a recurrent one says so with is_recurrent); drop {flags} and give your "
            "network its sizes with --policy-kwargs."
        )
