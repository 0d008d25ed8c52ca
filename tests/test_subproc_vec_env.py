"""SubprocVecEnv: same answers as gymnasium's SyncVectorEnv (same-step autoreset)."""

from __future__ import annotations

from functools import partial

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from a2c_ppo.envs.layout import StepTimes, choose_layout, env_step_time, faster_kind, measure_step_times
from a2c_ppo.envs.make import make_env_fn, make_vec_envs
from a2c_ppo.envs.subproc import EnvWorkerError, SubprocVecEnv
from tests.envs_for_tests import ActionEchoEnv, CounterEnv, DiscreteObsEnv, ImageEnv, SleepyEnv, SpinningEnv
from tests.vec_env_checks import assert_same, rollout


def test_matches_sync_and_seeds_do_not_depend_on_worker_count():
    fns = [partial(CounterEnv, random_length=True, info_every=3) for _ in range(5)]
    rng = np.random.default_rng(1)
    actions = [rng.integers(0, 3, size=5) for _ in range(60)]
    expected = rollout(SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP), actions, seed=7)
    ends = sum(int(np.sum(r[2] | r[3])) for r in expected[1:])
    assert ends > 20  # many episode ends, terminated and truncated, across envs
    for workers, in_main in ((1, 0), (2, 0), (3, 0), (1, 3), (2, 1), (2, None), (1, 5)):
        envs = SubprocVecEnv(fns, num_workers=workers, in_main=in_main)
        assert envs.num_workers + envs.in_main <= 5 and len(envs.worker_pids) == envs.num_workers
        got = rollout(envs, actions, seed=7)
        for t, (g, e) in enumerate(zip(got, expected)):
            assert_same(g, e, f"workers={workers} in_main={in_main} t={t}")
    # A different seed gives different noise.
    other = rollout(SubprocVecEnv(fns, num_workers=2), actions[:1], seed=8)
    assert not np.array_equal(other[0][0], expected[0][0])


@pytest.mark.parametrize("in_main", [0, 2])
@pytest.mark.parametrize("info_kind", ["numpy", "mixed", "nested"])
def test_infos_match_sync(info_kind, in_main):
    fns = [partial(CounterEnv, random_length=True, info_every=1 + i % 2, info_kind=info_kind) for i in range(5)]
    rng = np.random.default_rng(2)
    actions = [rng.integers(0, 3, size=5) for _ in range(30)]
    expected = rollout(SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP), actions, seed=0)
    got = rollout(SubprocVecEnv(fns, num_workers=3, in_main=in_main), actions, seed=0)
    for t, (g, e) in enumerate(zip(got, expected)):
        assert_same(g, e, f"t={t}")


def test_matches_sync_on_cartpole():
    fns = [make_env_fn("CartPole-v1") for _ in range(4)]
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, 2, size=4) for _ in range(300)]
    expected = rollout(SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP), actions, seed=3)
    got = rollout(SubprocVecEnv(fns, num_workers=1, in_main=2), actions, seed=3)
    assert sum(int(np.sum(r[2])) for r in expected[1:]) > 10
    for t, (g, e) in enumerate(zip(got, expected)):
        assert_same(g, e, f"t={t}")
    final = [r[4] for r in got[1:] if "final_info" in r[4]]
    assert final and all("episode" in f["final_info"] for f in final)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ImageEnv(),
        lambda: DiscreteObsEnv(),
        lambda: ActionEchoEnv(gym.spaces.Box(-1.0, 1.0, (2, 3), np.float32)),
        lambda: ActionEchoEnv(gym.spaces.MultiDiscrete([3, 4, 5])),
        lambda: ActionEchoEnv(gym.spaces.MultiBinary(4)),
        lambda: ActionEchoEnv(gym.spaces.Discrete(5)),
    ],
    ids=[
        "uint8-image-obs",
        "discrete-obs",
        "box-action",
        "multidiscrete-action",
        "multibinary-action",
        "discrete-action",
    ],
)
def test_spaces(make):
    fns = [make for _ in range(3)]
    sync = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    space = sync.action_space
    space.seed(0)
    actions = [space.sample() for _ in range(12)]
    expected = rollout(sync, actions, seed=0)
    envs = SubprocVecEnv(fns, num_workers=2)
    assert envs.observation_space == sync.observation_space and envs.action_space == sync.action_space
    got = rollout(envs, actions, seed=0)
    for t, (g, e) in enumerate(zip(got, expected)):
        assert_same(g, e, f"t={t}")
    assert got[-1][0].dtype == sync.observation_space.dtype


def test_terminal_obs_autoreset_and_flags():
    fns = [
        partial(CounterEnv, terminate_at=3),
        partial(CounterEnv, truncate_at=4),
        partial(CounterEnv, terminate_at=4, truncate_at=4),
    ]
    envs = SubprocVecEnv(fns, num_workers=2)
    try:
        assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        obs, info = envs.reset(seed=0)
        np.testing.assert_array_equal(obs[:, 0], [0, 0, 0])
        assert info["_noise"].all()
        act = np.array([2, 1, 0])
        for t in (1, 2):
            obs, rew, term, trunc, info = envs.step(act)
            np.testing.assert_array_equal(obs[:, 0], [t, t, t])
            np.testing.assert_array_equal(obs[:, 2], act)
            np.testing.assert_array_equal(rew, t + act)
            assert not term.any() and not trunc.any() and "final_obs" not in info
        obs, rew, term, trunc, info = envs.step(act)  # env 0 terminates at t=3
        np.testing.assert_array_equal(term, [True, False, False])
        np.testing.assert_array_equal(trunc, [False, False, False])
        np.testing.assert_array_equal(info["_final_obs"], [True, False, False])
        assert info["final_obs"][0][0] == 3 and info["final_obs"][1] is None
        assert obs[0, 0] == 0 and obs[1, 0] == 3  # env 0 already reset, in the same step
        assert info["final_info"] == {} and info["_final_info"].tolist() == [True, False, False]
        assert info["_noise"].tolist() == [True, False, False]  # the reset info of env 0
        obs, rew, term, trunc, info = envs.step(act)  # env 1 truncates, env 2 both, env 0 at t=1
        np.testing.assert_array_equal(term, [False, False, True])
        np.testing.assert_array_equal(trunc, [False, True, True])
        np.testing.assert_array_equal(info["_final_obs"], [False, True, True])
        np.testing.assert_array_equal(info["final_obs"][1], [4, info["final_obs"][1][1], 1])
        np.testing.assert_array_equal(obs[:, 0], [1, 0, 0])
        np.testing.assert_array_equal(rew, [1 + 2, 4 + 1, 4 + 0])
    finally:
        envs.close()


def test_reset_with_seed_list_and_mask():
    fns = [CounterEnv for _ in range(4)]
    sync = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    envs = SubprocVecEnv(fns, num_workers=2, in_main=2)
    try:
        for e in (sync, envs):
            e.reset(seed=[10, 11, None, 13])
        for _ in range(2):
            a = envs.step(np.ones(4, np.int64))
            b = sync.step(np.ones(4, np.int64))
        mask = np.array([False, True, False, True])
        a = envs.reset(seed=5, options={"reset_mask": mask})
        b = sync.reset(seed=5, options={"reset_mask": mask.copy()})
        np.testing.assert_array_equal(a[0][:, 0], [2, 0, 2, 0])
        np.testing.assert_array_equal(a[0][[1, 3]], b[0][[1, 3]])
        assert_same(a[1], b[1])
    finally:
        envs.close()
        sync.close()


def test_call_get_attr_set_attr_render():
    envs = SubprocVecEnv([partial(CounterEnv, render_mode="rgb_array") for _ in range(3)], num_workers=1, in_main=2)
    try:
        envs.reset(seed=0)
        envs.step(np.zeros(3, np.int64))
        assert envs.call("describe", "x") == ("x:1", "x:1", "x:1")
        assert envs.get_attr("tag") == ("default",) * 3
        envs.set_attr("tag", ["a", "b", "c"])
        assert envs.get_attr("tag") == ("a", "b", "c")
        envs.set_attr("tag", "z")
        assert envs.get_attr("tag") == ("z",) * 3
        frames = envs.render()
        assert len(frames) == 3 and frames[0].shape == (2, 2, 3)
        with pytest.raises(EnvWorkerError, match="no_such_attribute"):
            envs.get_attr("no_such_attribute")
        envs.step(np.zeros(3, np.int64))  # still usable after a failed call
        assert envs.call("describe", "y") == ("y:2",) * 3
    finally:
        envs.close()


def test_make_vec_envs_subproc_and_auto(monkeypatch):
    envs = make_vec_envs("Pendulum-v1", 3, vec_env="subproc", num_workers=2)  # VecNormalize on top
    try:
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (3, 3) and isinstance(envs.unwrapped, SubprocVecEnv)
        envs.step(np.zeros((3, 1), np.float32))
    finally:
        envs.close()
    # CartPole's step times as measured on the development machine (a live measurement on a
    # busy CI machine can land either side): classic control is cheaper in-process.
    monkeypatch.setattr("a2c_ppo.envs.make.measure_step_times", lambda *_, **__: StepTimes(env=8e-6, vec=14e-6))
    envs = make_vec_envs("CartPole-v1", 8, vec_env="auto", num_workers=2)
    try:
        assert isinstance(envs.unwrapped, SubprocVecEnv) and envs.unwrapped.num_workers == 0
    finally:
        envs.close()

    def kind(env_fn, num_envs: int, num_workers: int) -> str:
        times = lambda: measure_step_times(env_fn)  # noqa: E731
        return choose_layout(num_envs, vec_env="auto", num_workers=num_workers, overlap="off", step_times=times).kind

    assert kind(partial(SleepyEnv, 0.001), 8, num_workers=2) == "subproc"
    assert kind(partial(SleepyEnv, 0.001), 8, num_workers=1) == "subproc"  # 1 worker + main
    assert kind(partial(SleepyEnv, 0.001), 1, num_workers=2) == "sync"
    # A cheap env stays in-process. Its timings as measured on the development machine (a live
    # probe of a 2 us env lands near the break-even point on a busy machine, and flaked in CI).
    cheap = StepTimes(env=2e-6, vec=10e-6)
    assert choose_layout(8, vec_env="auto", num_workers=2, overlap="off", step_times=lambda: cheap).kind == "sync"


def test_probe_splits_the_vector_steps_fixed_cost_from_the_work_per_env():
    # An env that spins 60 us (cheaper than a worker's round trip, so the probe times the vector
    # env over one and two envs): the spin is work per env, in ``env`` and ``vec``, never in what
    # a vector step pays once. A 2 ms env (dearer) skips the two-env timing: ``fixed`` is 0.
    cheap = measure_step_times(partial(SpinningEnv, 60e-6))
    assert 60e-6 <= cheap.env <= cheap.vec and 0.0 <= cheap.fixed < 60e-6
    dear = measure_step_times(partial(SleepyEnv, 0.002))
    assert 0.002 <= dear.env <= dear.vec and dear.fixed == 0.0


def test_probe_arithmetic(monkeypatch):
    # Medians as timed: the env alone 10 us and one env through the vector env 40 us, then one
    # env 41 us and two 56 us: 15 us per env, the other 26 us paid once.
    medians = iter([[10e-6, 40e-6], [41e-6, 56e-6]])
    monkeypatch.setattr("a2c_ppo.envs.layout._median_steps", lambda *_: next(medians))
    times = measure_step_times(CounterEnv)
    assert times == pytest.approx(StepTimes(env=10e-6, vec=15e-6, fixed=26e-6))
    # CartPole x8 on a slow host (the probe of 2026-12-06): t 10 us, v 15 us, f 25 us. Charged
    # once, f keeps the envs in-process (f + 8 v = 145 us against one worker's 3 envs, 3 * 10 us
    # * 1.3 + 120 us = 159 us); charged to every env, as a one-env probe did, the worker wins.
    slow_host = StepTimes(env=10e-6, vec=15e-6, fixed=25e-6)
    assert env_step_time(8, slow_host, "sync", 1) == pytest.approx(145e-6)
    assert env_step_time(8, slow_host, "subproc", 1) == pytest.approx(max(25e-6 + 5 * 15e-6, 159e-6))
    assert faster_kind(8, slow_host, 1) == "sync"
    assert faster_kind(8, StepTimes(env=10e-6, vec=40e-6), 1) == "subproc"
