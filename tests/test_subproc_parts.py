"""The parts of the subprocess vector env on their own: the info codec (against gymnasium's
own info merging, no processes), split-phase stepping, and what a worker imports."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from gymnasium.error import AlreadyPendingCallError, NoAsyncCallError
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from a2c_ppo.envs.subproc import SubprocVecEnv
from a2c_ppo.envs.subproc.infos import decode_columns, encode_columns, merge_infos, step_payload
from tests.envs_for_tests import CounterEnv, ModulesEnv
from tests.vec_env_checks import assert_same

# ----------------------------------------------------------------------------- info codec


def gymnasium_merge(entries, num_envs):
    """What SyncVectorEnv builds: ``_add_info`` env by env (final obs / info first)."""
    sync = SyncVectorEnv([CounterEnv] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    try:
        infos: dict = {}
        for i, info, final in entries:
            if final is not None:
                infos = sync._add_info(infos, {"final_obs": final[0], "final_info": final[1]}, i)
            infos = sync._add_info(infos, info, i)
        return infos
    finally:
        sync.close()


def payloads_of(blocks):
    """Each block's step payload, as EnvBlock.step builds it."""
    out = []
    for entries in blocks:
        plain = [(i, info) for i, info, final in entries if final is None and info] or None
        done = [(i, info, final[0], final[1]) for i, info, final in entries if final is not None] or None
        out.append(step_payload(plain, done))
    return out


INFO_CASES = {
    "ints-everyone": [[(0, {"t": 1}, None), (1, {"t": 2}, None)], [(2, {"t": 3}, None)]],
    "numpy-some": [
        [(0, {"x": np.float64(0.5), "n": np.int32(3)}, None), (1, {}, None)],
        [(2, {"x": np.float64(2)}, None)],
    ],
    "types-change": [[(0, {"v": 1.0}, None)], [(1, {"v": np.float32(2)}, None), (2, {"v": 3.0}, None)]],
    "nested": [[(0, {"sub": {"a": 1}, "s": "x"}, None)], [(2, {"b": np.array([1, 2])}, None)]],
    "finished": [
        [(0, {"noise": 0.3}, (np.array([3.0, 0.1, 2.0]), {"episode": {"r": 4.0, "l": 3}})), (1, {"t": 5}, None)],
        [(2, {}, None)],
    ],
}


@pytest.mark.parametrize("case", INFO_CASES)
def test_merge_infos_equals_gymnasium(case):
    blocks = INFO_CASES[case]
    expected = gymnasium_merge([e for block in blocks for e in block], 3)
    assert_same(merge_infos(payloads_of(blocks), 0, 3), expected, case)


def test_merge_infos_of_a_range_is_indexed_from_its_start():
    # Envs 4..6 of a larger vector env: rows 0..2 of the result, as gymnasium would give for 3 envs.
    blocks = [[(4, {"t": 1}, None)], [(6, {"t": 3}, None), (5, {"x": np.float32(1)}, None)]]
    expected = gymnasium_merge([(i - 4, info, final) for block in blocks for i, info, final in block], 3)
    got = merge_infos(payloads_of(blocks), 4, 3)
    assert_same(got, expected)
    np.testing.assert_array_equal(got["_t"], [True, False, True])


def test_columns_round_trip_and_refusals():
    pairs = [(0, {"a": 1, "b": np.float32(0.5)}), (3, {"a": 2})]
    columns = encode_columns(pairs)
    assert columns is not None and columns["b"][0] is np.float32
    assert_same(tuple(decode_columns(columns)), tuple(pairs))
    assert encode_columns([(0, {"a": 1}), (1, {"a": 1.5})]) is None  # the type changes
    assert encode_columns([(0, {"a": "text"})]) is None  # not a scalar
    assert step_payload(None, None) is None


# ----------------------------------------------------------------------------- split-phase stepping


@pytest.mark.parametrize(
    "workers,in_main,halves",
    [(2, 0, (3, 6)), (1, 3, (3, 6)), (2, 2, (2, 6)), (1, 2, (1, 6))],
    ids=["aligned", "main-block-is-a-half", "cuts-a-worker-block", "cuts-both"],
)
def test_step_async_over_two_halves_equals_step(workers, in_main, halves):
    fns = [partial(CounterEnv, random_length=True, info_every=2) for _ in range(6)]
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, 3, size=6) for _ in range(40)]
    sync = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    envs = SubprocVecEnv(fns, num_workers=workers, in_main=in_main)
    a, b = slice(0, halves[0]), slice(halves[0], halves[1])
    try:
        assert_same(envs.reset(seed=1), sync.reset(seed=1))
        for t, act in enumerate(actions):
            expected = sync.step(act)
            envs.step_async(act[a], a)
            envs.step_async(act[b], b)
            # Alternate the order of the waits: replies must reach the right range either way.
            first, second = (a, b) if t % 2 else (b, a)
            got = {first.start: envs.step_wait(first), second.start: envs.step_wait(second)}
            for rows in (a, b):
                n = rows.stop - rows.start
                restricted = tuple(x[rows] for x in expected[:4]) + (merge_infos_of_sync(expected[4], rows.start, n),)
                assert_same(got[rows.start], restricted, f"t={t} rows={rows}")
    finally:
        envs.close()
        sync.close()


def merge_infos_of_sync(infos: dict, start: int, n: int) -> dict:
    """SyncVectorEnv's infos cut to rows ``start .. start + n - 1`` (keys no row has dropped)."""
    out = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        mask = infos[f"_{key}"][start : start + n]
        if not mask.any():
            continue
        out[key] = merge_infos_of_sync(value, start, n) if isinstance(value, dict) else value[start : start + n]
        out[f"_{key}"] = mask
    return out


def test_step_async_misuse_is_refused():
    envs = SubprocVecEnv([CounterEnv] * 4, num_workers=1, in_main=0)
    try:
        envs.reset(seed=0)
        with pytest.raises(NoAsyncCallError):
            envs.step_wait(slice(0, 2))
        envs.step_async(np.zeros(2, np.int64), slice(0, 2))
        with pytest.raises(AlreadyPendingCallError):
            envs.step_async(np.zeros(3, np.int64), slice(1, 4))  # overlaps the range in flight
        with pytest.raises(AlreadyPendingCallError):
            envs.reset()
        with pytest.raises(ValueError, match="contiguous"):
            envs.step_async(np.zeros(2, np.int64), slice(0, 4, 2))
        obs, *_ = envs.step_wait(slice(0, 2))
        np.testing.assert_array_equal(obs[:, 0], [1, 1])
        obs, *_ = envs.step(np.zeros(4, np.int64))
        np.testing.assert_array_equal(obs[:, 0], [2, 2, 1, 1])
    finally:
        envs.close()


# ----------------------------------------------------------------------------- worker imports


def test_workers_do_not_import_torch():
    import torch  # noqa: F401  (the main process has it; the workers must not)

    envs = SubprocVecEnv([ModulesEnv] * 2, num_workers=2, in_main=0)
    try:
        assert envs.call("has_module", "torch") == (False, False)
        assert envs.call("has_module", "gymnasium") == (True, True)  # the probe itself works
    finally:
        envs.close()
