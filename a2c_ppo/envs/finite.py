"""The NaN / infinity guard for what envs return (numpy only, so env-side code can use it too)."""

from __future__ import annotations

import math

import numpy as np

from a2c_ppo.errors import NonFiniteError


def check_finite(array: np.ndarray, name: str, *, env_offset: int = 0) -> None:
    """Raise NonFiniteError naming ``name`` and the env when the float ``array`` ``(n, ...)``
    (rows are envs ``env_offset ..``) holds a NaN or an infinity."""
    # The common case in one numpy call: a sum is finite only if every term is (or it overflowed:
    # the rows below then find no culprit).
    if math.isfinite(np.add.reduce(array, axis=None)):
        return
    bad = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))
    if not len(bad):
        return
    row = int(bad[0])
    raise NonFiniteError(
        f"env {env_offset + row} returned a non-finite {name} ({array[row]!r}); "
        "check the environment (or its wrappers) for a division by zero or an overflow"
    )
