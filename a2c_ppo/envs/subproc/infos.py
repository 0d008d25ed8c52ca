"""The info codec: env infos across the pipe, merged exactly as gymnasium merges them.

The vectorised infos must be exactly what ``VectorEnv._add_info`` builds when fed env by env
(SyncVectorEnv). Most steps' infos are flat dicts of scalars (MuJoCo's positions, ALE's lives
and frame numbers); pickling numpy scalars and calling ``_add_info`` per env and key is slow,
so blocks send those as columns of plain Python values with their type, and the main process
builds one array per key. Anything else (a finished episode, nested dicts, arrays, mixed types)
takes ``_add_info`` itself.

A block's step payload is ``None`` (no env had an info) or ``(plain, done)``: ``plain`` is
either columns (:func:`encode_columns`) or ``(env index, info)`` pairs of envs that did not
finish, ``done`` a list of ``(env index, reset info, final obs, final info)``. Pure functions.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv

Columns = dict[str, tuple[type, list[int], list]]
Payload = tuple[Any, list[tuple[int, dict, Any, dict]]]

_PLAIN = (int, float, bool)


class _Merger:
    """Just enough of a VectorEnv for gymnasium's own ``_add_info`` (it reads ``num_envs``)."""

    _add_info = VectorEnv._add_info

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs


def encode_columns(plain: list[tuple[int, dict]]) -> Columns | None:
    """``{key: (type, env indices, values)}`` for flat scalar infos, keys in order of first
    appearance, values as Python scalars (exact: ``type(value)`` restores them). ``None``
    if some info is not of that kind."""
    columns: Columns = {}
    for env_index, info in plain:
        for key, value in info.items():
            kind = type(value)
            column = columns.get(key)
            if column is None:
                if kind not in _PLAIN and not issubclass(kind, np.number):
                    return None
                column = columns[key] = (kind, [], [])
            elif column[0] is not kind:
                return None
            column[1].append(env_index)
            column[2].append(value if kind in _PLAIN else value.item())
    return columns


def decode_columns(columns: Columns) -> list[tuple[int, dict]]:
    """Back to ``(env index, info)`` pairs, values of their original types."""
    infos: dict[int, dict] = {}
    for key, (kind, index, values) in columns.items():
        for env_index, value in zip(index, values):
            infos.setdefault(env_index, {})[key] = kind(value)
    return sorted(infos.items(), key=lambda item: item[0])


def step_payload(plain: list[tuple[int, dict]] | None, done: list | None) -> Payload | None:
    """What a block sends after a step: ``None`` when no env produced an info."""
    if plain is None and done is None:
        return None
    columns = encode_columns(plain) if plain else {}
    return (columns if columns is not None else plain), done or []


@functools.cache
def _true_mask(num_envs: int) -> np.ndarray:
    mask = np.ones(num_envs, dtype=np.bool_)
    mask.flags.writeable = False
    return mask


def _all_true(num_envs: int) -> np.ndarray:
    """A fresh all-True mask of ``num_envs`` (a copy: a fifth of ``np.ones``' time)."""
    return _true_mask(num_envs).copy()


def _columns_to_infos(blocks: list[Columns], lo: int, num_envs: int) -> dict[str, Any] | None:
    """The vectorised infos of envs ``lo .. lo + num_envs - 1`` from column blocks (in env
    order), or ``None`` if a key has different types in different blocks."""
    merged: Columns = {}
    for columns in blocks:
        for key, (kind, index, values) in columns.items():
            column = merged.get(key)
            if column is None:
                merged[key] = (kind, list(index), list(values))
            elif column[0] is not kind:
                return None
            else:
                column[1].extend(index)
                column[2].extend(values)
    infos: dict[str, Any] = {}
    for key, (kind, index, values) in merged.items():
        # As _add_info: an array of the first value's type, zeros where an env had no value.
        if len(index) == num_envs:  # every env has this key (indices are lo.. in order)
            infos[key], infos[f"_{key}"] = np.array(values, dtype=kind), _all_true(num_envs)
        else:
            rows = np.asarray(index) - lo
            array: np.ndarray = np.zeros(num_envs, dtype=kind)
            array[rows] = values
            mask = np.zeros(num_envs, dtype=np.bool_)
            mask[rows] = True
            infos[key], infos[f"_{key}"] = array, mask
    return infos


def merge_infos(payloads: list[Payload], lo: int, num_envs: int) -> dict[str, Any]:
    """One vectorised info dict for envs ``lo .. lo + num_envs - 1`` from the blocks'
    payloads (``None`` entries dropped), exactly as SyncVectorEnv builds it."""
    payloads = [p for p in payloads if p is not None]
    if not payloads:
        return {}
    if all(isinstance(plain, dict) and not done for plain, done in payloads):
        infos = _columns_to_infos([plain for plain, _ in payloads], lo, num_envs)
        if infos is not None:
            return infos
    entries: list[tuple] = []  # (env index, info, final obs, final info, finished)
    for plain, done in payloads:
        pairs = decode_columns(plain) if isinstance(plain, dict) else plain
        entries.extend((i, info, None, None, False) for i, info in pairs)
        entries.extend((i, info, final_obs, final_info, True) for i, info, final_obs, final_info in done)
    entries.sort(key=lambda entry: entry[0])
    merger: Any = _Merger(num_envs)
    merged: dict[str, Any] = {}
    for env_index, info, final_obs, final_info, finished in entries:
        if finished:
            merged = merger._add_info(merged, {"final_obs": final_obs, "final_info": final_info}, env_index - lo)
        merged = merger._add_info(merged, info, env_index - lo)
    return merged
