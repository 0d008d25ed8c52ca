"""Naming what an env's step returned that cannot be used: a reward that is no number, a flag
that is no single bool. Called on the failure path only, so that the per-step path pays nothing.

``make_env`` puts gymnasium's ``RecordEpisodeStatistics`` right above the env (above
``RecordVideo``, which passes the values on), and it is the first to use them: it adds the
reward to the episode's return and asks ``terminated or truncated``. What it raises there
(``unsupported operand type(s) for +=: 'float' and 'NoneType'``) names neither the env nor the
value; :func:`wrapper_values_error` reads the values from its frame and says what the env did,
for the error report (``protocol.error_report``).
"""

from __future__ import annotations

from types import FrameType
from typing import Any

import numpy as np
from gymnasium.wrappers import RecordEpisodeStatistics


def reward_error(env_index: int, reward: Any) -> ValueError:
    """The error for env ``env_index``'s step returning ``reward``, which is no number."""
    return ValueError(f"env {env_index} returned the reward {reward!r}; a step's reward is one number")


def is_one_number(value: Any) -> bool:
    """Whether ``value`` is one real number (a Python or numpy scalar, a 0-d array): not text,
    ``None``, a sequence, a complex number, or an int too large for a float."""
    if isinstance(value, (str, bytes, complex, np.complexfloating)) or np.ndim(value) != 0:
        return False
    try:
        float(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def step_values_error(env_index: int, reward: Any, terminated: Any, truncated: Any) -> ValueError | None:
    """A ValueError naming env ``env_index`` and the first of its step's values that is unusable
    (a reward that is no number, a flag that is not one value); ``None`` where all look usable."""
    if not is_one_number(reward):
        return reward_error(env_index, reward)
    for name, flag in (("terminated", terminated), ("truncated", truncated)):
        if np.ndim(flag) != 0:
            return ValueError(f"env {env_index} returned {name} {flag!r}; a step's {name} is one bool")
    return None


def wrapper_values_error(env_index: int, exc: BaseException) -> ValueError | None:
    """``step_values_error`` for the values env ``env_index`` returned where ``exc`` (raised by
    ``env.step``) comes from ``RecordEpisodeStatistics`` using them; else ``None``."""
    frame = _innermost_frame(exc)
    if frame is None or frame.f_code is not RecordEpisodeStatistics.step.__code__:
        return None
    values = frame.f_locals
    return step_values_error(env_index, values.get("reward"), values.get("terminated"), values.get("truncated"))


def _innermost_frame(exc: BaseException) -> FrameType | None:
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame
