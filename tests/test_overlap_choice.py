"""The overlap choice: the cost model by hand, the flag's errors, auto on a fixed timing."""

from __future__ import annotations

import pytest

from a2c_ppo.envs import overlap
from a2c_ppo.envs.overlap import choose_overlap, predicted_overlap_period, predicted_plain_period
from a2c_ppo.errors import ConfigError

T_ENV = 400e-6  # one env step, as Atari on the development VM


def choose(mode: str, policy_step_s, vec_env: str = "auto", num_envs: int = 8) -> bool:
    return choose_overlap(
        mode, num_envs=num_envs, vec_env=vec_env, num_workers=1, env_fn=lambda: None, policy_step_s=policy_step_s
    )


@pytest.fixture(autouse=True)
def fixed_env_step(monkeypatch):
    monkeypatch.setattr(overlap, "measure_step_time", lambda env_fn: T_ENV)


def test_the_cost_model_by_hand():
    # One worker steps both halves of 4 envs: e = 4 * 400us * 1.3 + 120us = 2.2 ms, busy 4.4 ms.
    assert predicted_overlap_period(8, T_ENV, 3e-3, 1) == pytest.approx(max(6e-3, 3e-3 + 2.2e-3, 4.4e-3))
    assert predicted_overlap_period(8, T_ENV, 1e-4, 1) == pytest.approx(4.4e-3)  # env-bound
    # Two workers, one per half: e = 2.2 ms, and each worker steps one half only.
    assert predicted_overlap_period(8, T_ENV, 1e-4, 2) == pytest.approx(1e-4 + 2.2e-3)
    # Plain on 1 worker + 5 envs in the main process: max(5 * 400us, 3 * 400us * 1.3 + 120us) = 2 ms.
    assert predicted_plain_period(8, T_ENV, 6e-3, "subproc", 1) == pytest.approx(8e-3)
    assert predicted_plain_period(8, T_ENV, 6e-3, "sync", 1) == pytest.approx(6e-3 + 3.2e-3)
    assert predicted_plain_period(8, T_ENV, 6e-3, "auto", 1) == pytest.approx(8e-3)  # auto takes subproc


def test_auto_overlaps_where_the_policy_is_slow_and_not_where_it_is_cheap():
    assert choose("auto", lambda n: 0.75e-3 * n)  # CNN-like: plain 8 ms, overlapped 6 ms
    assert not choose("auto", lambda n: 1e-4)  # MLP-like: plain 2.1 ms, overlapped 4.4 ms
    assert not choose("auto", None)  # no policy timing: off
    assert not choose("auto", lambda n: 0.75e-3 * n, vec_env="sync")
    assert not choose("auto", lambda n: 0.75e-3 * n, num_envs=1)


def test_on_and_off_are_taken_as_said():
    assert choose("on", None) and not choose("off", lambda n: 1.0)


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="overlap must be one of"):
        choose("yes", None)
    with pytest.raises(ConfigError, match="--vec-env subproc or auto"):
        choose("on", None, vec_env="sync")
