"""The NaN / infinity guard for what envs return (numpy only, so env-side code can use it too)."""

from __future__ import annotations

import numpy as np

from a2c_ppo.errors import NonFiniteError


def first_non_finite(array: np.ndarray) -> int | None:
    """Index (along axis 0) of the first row of ``array`` with a NaN or infinity, else ``None``.

    Fast path: one sum over the whole array; a NaN or infinity anywhere makes it non-finite.
    Only when it is (which includes finite values that overflow the sum) are rows inspected.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = array.sum()
    if np.isfinite(total):
        return None
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    rows = np.flatnonzero(bad)
    return int(rows[0]) if len(rows) else None


def check_finite(obs: np.ndarray, reward: np.ndarray | None = None, *, env_offset: int = 0) -> None:
    """Raise NonFiniteError naming the quantity and the env when ``obs`` (float observations
    only) or ``reward`` (both ``(N, ...)``, rows are envs ``env_offset ..``) hold a NaN or inf."""
    for name, array in (("observation", obs), ("reward", reward)):
        if array is None or not np.issubdtype(array.dtype, np.floating):
            continue
        row = first_non_finite(array)
        if row is not None:
            raise NonFiniteError(
                f"env {env_offset + row} returned a non-finite {name} ({array[row]!r}); "
                "check the environment (or its wrappers) for a division by zero or an overflow"
            )
