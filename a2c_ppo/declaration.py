"""How one setting is declared (``Setting``, ``Declared``) and how a value is checked against
its declaration; ``config.py`` declares every setting with these.

A setting's type, range, choices and form are written once, at its declaration: the command
line, ``--help``, a checkpoint's config and the Python API are all checked here alike.
"""

from __future__ import annotations

import json
import math
import numbers
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin

from a2c_ppo.errors import ConfigError

ALGOS = ("ppo", "a2c", "acktr")


class _ByPreset:
    """The default of a setting that every preset decides (shown as "by preset")."""

    def __repr__(self) -> str:
        return "BY_PRESET"


BY_PRESET: Any = _ByPreset()


@dataclass(frozen=True)
class Setting:
    """How one setting is declared (the field's ``metadata["setting"]``).

    ``low`` / ``high`` bound numbers (``open`` bounds exclude the value); ``choices`` bound
    strings. ``algos``: the algorithms it applies to; typing it for another is refused.
    ``needs``: the setting it only applies with (a switch, or a number where 0 is off), or
    ``"name=value"``: only with that value; typing it otherwise is refused rather than silently
    ignored.
    ``preset``: presets may set it. ``flag``: ``"on-off"`` (``--x`` / ``--no-x``),
    ``"switch"`` (``--x`` only), ``"value"``, or ``None`` for fields no one types.
    ``auto``: what ``None`` means, for settings whose default is chosen at run time.
    ``json_object``: a string holding a JSON object (keyword arguments), read by ``json_object``.
    """

    help: str
    group: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    algos: tuple[str, ...] = ALGOS
    needs: str | None = None
    preset: bool = False
    flag: str | None = "value"
    auto: str | None = None
    json_object: bool = False


def setting(default: Any, help: str, group: str, **kwargs: Any) -> Any:
    """A RunConfig field declared with ``Setting(help, group, **kwargs)``."""
    return field(default=default, metadata={"setting": Setting(help, group, **kwargs)})


@dataclass(frozen=True)
class Declared:
    """One setting as declared: its field's name, type, default and ``Setting``."""

    name: str
    type: Any
    default: Any
    spec: Setting

    @property
    def base_type(self) -> type:
        """``int`` for ``int | None``, and so on."""
        args = [arg for arg in get_args(self.type) if arg is not type(None)]
        is_union = get_origin(self.type) in (Union, types.UnionType)
        return args[0] if is_union else self.type

    @property
    def optional(self) -> bool:
        return type(None) in get_args(self.type)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def show(value: Any) -> str:
    """A value as the console and tables show it (``None`` as ``--help`` shows it: none)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and value >= 100_000:
        return f"{value:,}"
    return str(value)


def check_declared(declared: Declared, value: Any, source: str = "") -> None:
    """ConfigError (saying what to change) unless ``value`` fits the ``declared`` setting.

    ``source`` qualifies the flag in the message (e.g. "the checkpoint's")."""
    spec, flag = declared.spec, (f"{source} " if source else "") + flag_name(declared.name)
    if value is None:
        if declared.optional:
            return
        raise ConfigError(f"{flag} needs a value.")
    kind = declared.base_type
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{flag} must be on or off (True or False in Python), got {value!r}.")
        return
    if spec.choices is not None and (not isinstance(value, str) or value not in spec.choices):
        raise ConfigError(f"{flag} must be one of {', '.join(spec.choices)}, got {value!r}.")
    number = {int: numbers.Integral, float: numbers.Real}.get(kind, kind)
    if not isinstance(value, number) or isinstance(value, bool):
        raise ConfigError(f"{flag} must be {'an integer' if kind is int else 'a ' + kind.__name__}, got {value!r}.")
    if kind is float and not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
        raise ConfigError(
            f"{flag} must be a finite number within float32's range (the policy computes in float32), got {value}."
        )
    if kind in (int, float):
        _check_range(flag, value, spec, kind)
    if spec.json_object:
        json_object(value, flag)


#: The largest float32: a setting beyond it overflows the tensors it reaches.
FLOAT32_MAX = 3.4028234663852886e38


def _check_range(flag: str, value: float, spec: Setting, kind: type) -> None:
    low_ok = spec.low is None or (value > spec.low if spec.low_open else value >= spec.low)
    high_ok = spec.high is None or (value < spec.high if spec.high_open else value <= spec.high)
    if low_ok and high_ok:
        return
    if kind is int and spec.low == 1 and spec.high is None:
        raise ConfigError(f"{flag} must be a positive integer, got {value}.")
    if spec.high is None:
        raise ConfigError(f"{flag} must be {'>' if spec.low_open else '>='} {show(spec.low)}, got {value}.")
    if kind is int:
        raise ConfigError(f"{flag} must be between {show(spec.low)} and {show(spec.high)}, got {value}.")
    lo, hi = "(" if spec.low_open else "[", ")" if spec.high_open else "]"
    raise ConfigError(f"{flag} must be in {lo}{show(spec.low)}, {show(spec.high)}{hi}, got {value}.")


def json_object(text: str, flag: str) -> dict[str, Any]:
    """The keyword arguments a ``json_object`` setting holds; ConfigError unless ``text`` is a
    JSON object (plain values only: JSON has no code to name)."""
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag} {text!r} is not JSON ({exc.msg}); give an object, e.g. '{{\"name\": 1}}'.") from None
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{flag} {text!r} must be a JSON object (name: value), e.g. '{{\"name\": 1}}'.")
    return kwargs


def saved_values(
    settings: Mapping[str, Declared], data: dict[str, Any], version: int, notes: list[str] | None
) -> dict[str, Any]:
    """The settings of a saved config (``RunConfig.to_dict``), each checked as the same flag typed
    by hand. Fields it lacks (it predates them) take their defaults, said in ``notes``.
    ConfigError for another ``version``, an unknown field or a bad value."""
    saved = data.get("config_version")
    if saved != version:
        raise ConfigError(
            f"the checkpoint's run config has version {saved!r}, but this a2c_ppo reads version "
            f"{version}; replay or resume it with the a2c_ppo version that wrote it, or train anew."
        )
    values = {k: v for k, v in data.items() if k != "config_version"}
    unknown = sorted(set(values) - set(settings))
    if unknown:
        raise ConfigError(
            f"the checkpoint's run config has settings this a2c_ppo does not know ({', '.join(unknown)}): it was "
            "written by a newer version; replay or resume it with that version, or train anew."
        )
    missing = [name for name in settings if name not in values]
    no_default = [name for name in missing if settings[name].default is BY_PRESET]
    if no_default:
        raise ConfigError(f"the checkpoint's run config lacks {', '.join(no_default)}; train anew.")
    if missing and notes is not None:
        taken = ", ".join(f"{flag_name(name)} {show(settings[name].default)}" for name in missing)
        notes.append(f"The checkpoint predates some settings; they take their defaults: {taken}.")
    for name, value in values.items():
        check_declared(settings[name], value, source="the checkpoint's")
    return values


def check_applies(settings: Mapping[str, Declared], config: Any, typed: set[str]) -> None:
    """ConfigError for a typed setting that does not apply to ``config.algo`` (declared
    ``algos``) or whose ``needs`` is off: typed, it would do nothing, even at its default."""
    for name in sorted(typed):
        spec, flag = settings[name].spec, flag_name(name)
        if config.algo not in spec.algos:
            raise ConfigError(
                f"{flag} only applies to --algo {' or '.join(spec.algos)}, not --algo {config.algo}. "
                f"Drop {flag} or use --algo {spec.algos[0]}."
            )
        if spec.needs is not None and not needs_met(spec.needs, vars(config)):
            given = needs_phrase(spec.needs)
            raise ConfigError(f"{flag} only applies with {given}, and this run has "
                              f"{needs_state(spec.needs, vars(config))}. Drop {flag} or give {given}.")  # fmt: skip


def _alternatives(needs: str) -> list[tuple[str, str]]:
    """A ``needs``'s alternatives as (setting, wanted value; ``""``: on), e.g. ``"ppo_variant=clip|
    clip_value_loss"`` -> ``[("ppo_variant", "clip"), ("clip_value_loss", "")]``."""
    return [(need, wanted) for need, _, wanted in (alternative.partition("=") for alternative in needs.split("|"))]


def needs_met(needs: str, values: Mapping[str, Any]) -> bool:
    """Whether a setting's ``needs`` holds in ``values``: ``"name"`` (that one on), ``"name=value"``,
    or alternatives of these joined by ``|`` (one of them)."""
    return any(show(values[need]) == wanted if wanted else bool(values[need]) for need, wanted in _alternatives(needs))


def needs_phrase(needs: str) -> str:
    """What ``needs`` asks for, as flags: ``--ppo-variant clip or --clip-value-loss``."""
    return " or ".join(flag_name(need) + (f" {wanted}" if wanted else "") for need, wanted in _alternatives(needs))


def needs_state(needs: str, values: Mapping[str, Any]) -> str:
    """What ``values`` has of the settings ``needs`` names: ``--ppo-variant kl-penalty, --clip-value-loss off``."""
    return ", ".join(f"{flag_name(need)} {show(values[need])}" for need, _ in _alternatives(needs))
