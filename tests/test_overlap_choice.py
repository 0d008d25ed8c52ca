"""The env layout choice: the cost model by hand, the flags' errors, auto on fixed timings."""

from __future__ import annotations

import pytest

from a2c_ppo.envs.layout import Layout, StepTimes, choose_layout, overlap_period, plain_period
from a2c_ppo.errors import ConfigError

ATARI = StepTimes(env=400e-6, vec=420e-6)  # the main process's work per env k = 20 us
MUJOCO = StepTimes(env=50e-6, vec=85e-6)  # k = 35 us: normalisation and infos
CLASSIC = StepTimes(env=7e-6, vec=18e-6)


def layout(mode: str, policy_step_s, vec_env: str = "auto", num_envs: int = 8, times=ATARI, workers=1) -> Layout:
    def step_times() -> StepTimes:
        assert times is not None, "auto timed the env although it had no choice to make"
        return times

    return choose_layout(
        num_envs, vec_env=vec_env, num_workers=workers, overlap=mode, step_times=step_times, policy_step_s=policy_step_s
    )


def choose(mode: str, policy_step_s, vec_env: str = "auto", num_envs: int = 8, times=ATARI) -> bool:
    return layout(mode, policy_step_s, vec_env, num_envs, times).overlap


def test_the_cost_model_by_hand():
    # One worker steps both halves of 4 envs: e = 4 * 400us + 50us = 1.65 ms, busy 3.3 ms;
    # the main process per half: m = p(4) + 4 * 20us + 60us.
    assert overlap_period(8, ATARI, 3e-3, 1) == pytest.approx(max(2 * 3.14e-3, 3.14e-3 + 1.65e-3, 3.3e-3))
    assert overlap_period(8, ATARI, 1e-4, 1) == pytest.approx(3.3e-3)  # env-bound
    # Two workers, one per half: each steps one half only, busy = e.
    assert overlap_period(8, ATARI, 1e-4, 2) == pytest.approx(2.4e-4 + 1.65e-3)
    # Plain: p(8) + 8 * 20us + env, with env on 1 worker + 5 envs in the main process
    # max(5 * 420us, 3 * 400us * 1.3 + 120us) = 2.1 ms, or in-process 8 * 420us = 3.36 ms.
    assert plain_period(8, ATARI, 6e-3, "subproc", 1) == pytest.approx(6e-3 + 0.16e-3 + 2.1e-3)
    assert plain_period(8, ATARI, 6e-3, "sync", 1) == pytest.approx(6e-3 + 0.16e-3 + 3.36e-3)
    assert plain_period(8, ATARI, 6e-3, "auto", 1) == pytest.approx(8.26e-3)  # auto takes subproc


def test_auto_overlaps_where_the_main_process_has_work_to_hide():
    assert choose("auto", lambda n: 0.75e-3 * n)  # CNN-like: plain 8.26 ms, overlapped 6.28 ms
    assert not choose("auto", lambda n: 1e-4)  # env-bound: plain 2.36 ms, overlapped 3.3 ms
    # MuJoCo-like: a cheap policy, but 35 us of normalisation and bookkeeping per env that the
    # workers' stepping hides (plain 725 us, overlapped 500 us; measured 1.29x on 2 cores).
    assert choose("auto", lambda n: 2e-5, times=MUJOCO)
    # Classic control: the extra round trips cost what the overlap hides (measured 0.72x).
    assert not choose("auto", lambda n: 2.5e-5, times=CLASSIC)
    assert not choose("auto", None)  # no policy timing: off
    assert not choose("auto", lambda n: 0.75e-3 * n, vec_env="sync", times=None)
    assert not choose("auto", lambda n: 0.75e-3 * n, num_envs=1, times=None)


def test_one_choice_gives_the_whole_layout():
    assert layout("auto", lambda n: 0.75e-3 * n) == Layout("subproc", 1, 0, True)  # every env in a worker
    assert layout("off", None, times=ATARI) == Layout("subproc", 1, None, False)  # Atari: processes pay
    assert layout("off", None, times=CLASSIC) == Layout("sync", None, 8, False)  # CartPole: in-process
    assert layout("off", None, vec_env="subproc", times=None) == Layout("subproc", 1, None, False)
    assert layout("off", None, num_envs=1, times=None) == Layout("sync", None, 1, False)


def test_on_and_off_are_taken_as_said():
    assert choose("on", None, times=None) and not choose("off", lambda n: 1.0, times=CLASSIC)


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="--overlap must be one of"):
        choose("yes", None)
    with pytest.raises(ConfigError, match="--vec-env subproc or auto"):
        choose("on", None, vec_env="sync")


def test_auto_takes_envpool_where_it_is_a_candidate_and_measured_faster_by_the_margin():
    def with_envpool(envpool_s: float | None, policy=lambda n: 1e-4, vec_env: str = "auto") -> Layout:
        return choose_layout(8, vec_env=vec_env, num_workers=1, overlap="auto", step_times=lambda: ATARI,
                             policy_step_s=policy,
                             envpool_step_s=None if envpool_s is None else lambda: envpool_s)  # fmt: skip

    # Env-bound (a cheap policy): ours is plain at 2.36 ms per vector step (above); EnvPool
    # takes p + s = 0.1 + 0.5 ms, faster by more than the margin; at s = 2.0 ms it is not.
    assert with_envpool(0.5e-3).kind == "envpool"
    assert with_envpool(2.0e-3) == Layout("subproc", 1, None, False)
    # A CNN-bound policy: ours overlaps the env with the policy (6.28 ms); EnvPool cannot hide
    # it (6 ms + s), so even a free EnvPool step does not win by the margin.
    assert with_envpool(0.0, policy=lambda n: 0.75e-3 * n).overlap
    assert with_envpool(None) == Layout("subproc", 1, None, False)  # not a candidate: ours
    assert with_envpool(0.5e-3, vec_env="subproc").kind == "subproc"  # typed: as said


@pytest.mark.parametrize(
    ("layout", "said"), [(Layout("sync", 1, 2, False), True), (Layout("subproc", 1, 0, False), False)]
)
def test_a_num_workers_auto_leaves_unused_is_said(tmp_path, monkeypatch, layout, said):
    """--vec-env auto may keep the envs in this process: a --num-workers given then does nothing."""
    from a2c_ppo.arguments import resolve
    from a2c_ppo.distributed import DistContext
    from a2c_ppo.envs import make
    from a2c_ppo.trainer import Trainer

    monkeypatch.setattr(make, "choose_layout", lambda *args, **kwargs: layout)
    config = resolve(["--num-workers", "1", "--num-processes", "2", "--log-dir", str(tmp_path)]).config
    trainer = Trainer(config, DistContext())
    try:
        unused = [note for note in trainer.notes if note.startswith("--num-workers 1: unused, --vec-env auto chose")]
        assert bool(unused) == said
    finally:
        trainer.close()
