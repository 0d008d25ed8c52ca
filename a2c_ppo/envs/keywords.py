"""What a failed env build says about ``--env-kwargs``: the keyword the constructor does not take,
the ones it does (read from its signature) and the closest of them, instead of the TypeError's
text that gymnasium wraps with the id and every keyword argument again."""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from a2c_ppo.envs.make import load_entry_point

#: Keyword arguments a2c_ppo gives the env itself, for which ids: ``render_mode`` (videos,
#: enjoy.py) and, for Atari ids, ``frameskip`` (``wrap_atari`` skips frames with max-pooling).
#: Refused in --env-kwargs (``check.py``), and not offered.
RESERVED_ENV_KWARGS = {"render_mode": "every id", "frameskip": "Atari ids"}


def build_error_text(exc: BaseException) -> str:
    """``exc``'s message without gymnasium's wrapping: ``gym.make`` raises a new error of the same
    type whose text repeats the id and every keyword argument, with the constructor's own as its
    cause."""
    cause = exc.__cause__
    if type(cause) is type(exc) and str(exc).startswith(str(cause)) and "environment creator" in str(exc):
        return str(cause)
    return str(exc)


def keyword_not_taken(env_id: str, env_kwargs: dict[str, Any], exc: BaseException) -> str | None:
    """One sentence for a build that failed on a keyword of ``env_kwargs`` its constructor does
    not take (naming those it takes), or None where ``exc`` is another failure."""
    match = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
    if not isinstance(exc, TypeError) or match is None or match.group(1) not in env_kwargs:
        return None
    given = match.group(1)
    taken, passes_on = _keywords(_constructor(env_id))
    if not taken:
        return f"--env-kwargs gives {given!r}, which {env_id}'s constructor does not take: drop it."
    close = difflib.get_close_matches(given, taken, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    others = " (and passes others on to the code it calls)" if passes_on else ""
    return (
        f"--env-kwargs gives {given!r}, which {env_id}'s constructor does not take; it takes "
        f"{', '.join(taken)}{others}.{hint}"
    )


def _constructor(env_id: str) -> Callable[..., Any] | None:
    """The callable that builds ``env_id``'s env: a ``module:factory`` or a registered id's entry
    point (both imported already by the failed build)."""
    factory = load_entry_point(env_id)
    if factory is not None:
        return factory
    spec = gym.envs.registry.get(env_id)
    if spec is None or spec.entry_point is None:
        return None
    entry = spec.entry_point
    return gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry


def _keywords(constructor: Callable[..., Any] | None) -> tuple[list[str], bool]:
    """The parameters ``constructor`` takes by name, without those a2c_ppo sets ([] where it has
    no signature to read), and whether it takes other keywords as well (``**kwargs``)."""
    try:
        parameters = list(inspect.signature(constructor).parameters.values()) if constructor else []
    except (TypeError, ValueError):
        return [], False
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    taken = [p.name for p in parameters if p.kind in named and p.name not in RESERVED_ENV_KWARGS]
    return taken, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
