"""The NaN / infinity guard for what envs return (numpy only, so env-side code can use it too)."""

from __future__ import annotations

import numpy as np

from a2c_ppo.errors import NonFiniteError


def check_finite(array: np.ndarray, name: str, *, env_offset: int = 0) -> None:
    """Raise NonFiniteError naming ``name`` and the env when the float ``array`` ``(n, ...)``
    (rows are envs ``env_offset ..``) holds a NaN or an infinity."""
    if np.isfinite(array).all():  # the common case: one pass, no per-row work
        return
    row = int(np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))[0])
    raise NonFiniteError(
        f"env {env_offset + row} returned a non-finite {name} ({array[row]!r}); "
        "check the environment (or its wrappers) for a division by zero or an overflow"
    )
