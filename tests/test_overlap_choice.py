"""The overlap choice: the cost model by hand, the flag's errors, auto on fixed timings."""

from __future__ import annotations

import pytest

from a2c_ppo.envs import overlap
from a2c_ppo.envs.auto import StepTimes
from a2c_ppo.envs.overlap import choose_overlap, predicted_overlap_period, predicted_plain_period
from a2c_ppo.errors import ConfigError

ATARI = StepTimes(env=400e-6, vec=420e-6)  # the main process's work per env k = 20 us
MUJOCO = StepTimes(env=50e-6, vec=85e-6)  # k = 35 us: normalisation and infos
CLASSIC = StepTimes(env=7e-6, vec=18e-6)


def choose(mode: str, policy_step_s, vec_env: str = "auto", num_envs: int = 8, times=ATARI) -> bool:
    return choose_overlap(
        mode,
        num_envs=num_envs,
        vec_env=vec_env,
        num_workers=1,
        env_fn=lambda: None,
        policy_step_s=policy_step_s,
        step_times=times,
    )


def test_the_cost_model_by_hand():
    # One worker steps both halves of 4 envs: e = 4 * 400us + 50us = 1.65 ms, busy 3.3 ms;
    # the main process per half: m = p(4) + 4 * 20us + 60us.
    assert predicted_overlap_period(8, ATARI, 3e-3, 1) == pytest.approx(max(2 * 3.14e-3, 3.14e-3 + 1.65e-3, 3.3e-3))
    assert predicted_overlap_period(8, ATARI, 1e-4, 1) == pytest.approx(3.3e-3)  # env-bound
    # Two workers, one per half: each steps one half only, busy = e.
    assert predicted_overlap_period(8, ATARI, 1e-4, 2) == pytest.approx(2.4e-4 + 1.65e-3)
    # Plain: p(8) + 8 * 20us + env, with env on 1 worker + 5 envs in the main process
    # max(5 * 420us, 3 * 400us * 1.3 + 120us) = 2.1 ms, or in-process 8 * 420us = 3.36 ms.
    assert predicted_plain_period(8, ATARI, 6e-3, "subproc", 1) == pytest.approx(6e-3 + 0.16e-3 + 2.1e-3)
    assert predicted_plain_period(8, ATARI, 6e-3, "sync", 1) == pytest.approx(6e-3 + 0.16e-3 + 3.36e-3)
    assert predicted_plain_period(8, ATARI, 6e-3, "auto", 1) == pytest.approx(8.26e-3)  # auto takes subproc


def test_auto_overlaps_where_the_main_process_has_work_to_hide():
    assert choose("auto", lambda n: 0.75e-3 * n)  # CNN-like: plain 8.26 ms, overlapped 6.28 ms
    assert not choose("auto", lambda n: 1e-4)  # env-bound: plain 2.36 ms, overlapped 3.3 ms
    # MuJoCo-like: a cheap policy, but 35 us of normalisation and bookkeeping per env that the
    # workers' stepping hides (plain 725 us, overlapped 500 us; measured 1.29x on 2 cores).
    assert choose("auto", lambda n: 2e-5, times=MUJOCO)
    # Classic control: the extra round trips cost what the overlap hides (measured 0.72x).
    assert not choose("auto", lambda n: 2.5e-5, times=CLASSIC)
    assert not choose("auto", None)  # no policy timing: off
    assert not choose("auto", lambda n: 0.75e-3 * n, vec_env="sync")
    assert not choose("auto", lambda n: 0.75e-3 * n, num_envs=1)


def test_auto_times_the_env_when_given_no_timings(monkeypatch):
    monkeypatch.setattr(overlap, "measure_step_times", lambda env_fn: ATARI)
    assert choose("auto", lambda n: 0.75e-3 * n, times=None)


def test_on_and_off_are_taken_as_said():
    assert choose("on", None) and not choose("off", lambda n: 1.0)


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="overlap must be one of"):
        choose("yes", None)
    with pytest.raises(ConfigError, match="--vec-env subproc or auto"):
        choose("on", None, vec_env="sync")
