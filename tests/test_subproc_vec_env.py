"""SubprocVecEnv: same answers as gymnasium's SyncVectorEnv (same-step), and clean failures."""

from __future__ import annotations

import _thread
import gc
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from a2c_ppo.envs.make import make_env_fn, make_vec_envs
from a2c_ppo.envs.subproc_vec_env import EnvWorkerError, SubprocVecEnv, choose_vec_env
from tests.envs_for_tests import (
    ActionEchoEnv,
    CounterEnv,
    DiscreteObsEnv,
    FailingInitEnv,
    ImageEnv,
    SleepyEnv,
)

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_gone(pids, timeout: float = 5.0) -> list[int]:
    """The pids still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if pid_alive(p)]
        if alive:
            time.sleep(0.05)
    return alive


def assert_same(a, b, where="") -> None:
    """Deep equality for step results and info dicts (episode wall time ``t`` ignored)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            if key == "t" and where.endswith("episode"):
                continue
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert isinstance(b, np.ndarray) and b.dtype == object and a.shape == b.shape, where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, (np.ndarray, np.generic)):
        b = np.asarray(b)
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} != {b.dtype}"
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def rollout(envs, actions, seed):
    """Reset with ``seed``, play ``actions``; every result, then close."""
    try:
        out = [envs.reset(seed=seed)]
        for action in actions:
            out.append(envs.step(action))
        return out
    finally:
        envs.close()


# ----------------------------------------------------------------------------- same answers as SyncVectorEnv


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


def test_make_vec_envs_subproc_and_auto():
    envs = make_vec_envs("Pendulum-v1", 3, vec_env="subproc", num_workers=2)  # VecNormalize on top
    try:
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (3, 3) and isinstance(envs.unwrapped, SubprocVecEnv)
        envs.step(np.zeros((3, 1), np.float32))
    finally:
        envs.close()
    envs = make_vec_envs("CartPole-v1", 8, vec_env="auto", num_workers=2)
    try:  # classic control is cheaper in-process
        assert isinstance(envs.unwrapped, SyncVectorEnv)
    finally:
        envs.close()
    assert choose_vec_env(partial(SleepyEnv, 0.001), 8, num_workers=2) == "subproc"
    assert choose_vec_env(partial(SleepyEnv, 0.001), 8, num_workers=1) == "subproc"  # 1 worker + main
    assert choose_vec_env(partial(SleepyEnv, 0.001), 1, num_workers=2) == "sync"
    assert choose_vec_env(CounterEnv, 8, num_workers=2) == "sync"


# ----------------------------------------------------------------------------- faults


def error_at_third_step(envs) -> EnvWorkerError:
    """Reset 4 CounterEnvs, step them twice, and return the error the third step raises."""
    envs.reset(seed=0)
    envs.step(np.zeros(4, np.int64))
    envs.step(np.zeros(4, np.int64))
    with pytest.raises(EnvWorkerError) as info:
        envs.step(np.zeros(4, np.int64))
    return info.value


def test_env_exception_names_env_and_carries_traceback():
    fns = [CounterEnv, CounterEnv, partial(CounterEnv, raise_at=3), CounterEnv]
    envs = SubprocVecEnv(fns, num_workers=2, in_main=0)
    pids = envs.worker_pids
    err = error_at_third_step(envs)
    assert err.env_index == 2 and err.worker_index == 1
    assert "env 2" in str(err) and "ValueError: CounterEnv exploded at step 3" in str(err)
    assert "envs_for_tests.py" in err.traceback_text and "in step" in err.traceback_text
    assert envs.closed
    assert wait_gone(pids) == []
    with pytest.raises(RuntimeError, match="closed"):
        envs.step(np.zeros(4, np.int64))


@pytest.mark.parametrize("raising", [2, 3])
def test_exception_in_main_process_env_names_env_and_cleans_up(raising):
    fns = [CounterEnv] * 4
    fns[raising] = partial(CounterEnv, raise_at=3)
    envs = SubprocVecEnv(fns, num_workers=1, in_main=2)  # envs 2 and 3 in the main process
    pids = envs.worker_pids
    assert len(pids) == 1
    err = error_at_third_step(envs)
    assert err.env_index == raising and err.worker_index is None
    assert f"env {raising} (main process) raised during step" in str(err)
    assert "ValueError: CounterEnv exploded at step 3" in str(err)
    assert "envs_for_tests.py" in err.traceback_text and "in step" in err.traceback_text
    assert envs.closed
    assert wait_gone(pids) == []
    with pytest.raises(RuntimeError, match="closed"):
        envs.step(np.zeros(4, np.int64))


def test_worker_error_is_reported_before_main_process_error():
    fns = [partial(CounterEnv, raise_at=1), CounterEnv, partial(CounterEnv, raise_at=1)]
    envs = SubprocVecEnv(fns, num_workers=1, in_main=1)
    pids = envs.worker_pids
    envs.reset(seed=0)
    with pytest.raises(EnvWorkerError) as info:  # envs 0 and 2 fail: the lower index, as in sync
        envs.step(np.zeros(3, np.int64))
    assert info.value.env_index == 0 and info.value.worker_index == 0
    assert envs.closed and wait_gone(pids) == []


def test_main_process_call_error_keeps_env_usable():
    class Picky(CounterEnv):
        def describe(self, prefix):
            raise KeyError("no description in the main process")

    fns = [CounterEnv, CounterEnv, Picky]
    envs = SubprocVecEnv(fns, num_workers=1, in_main=1)
    try:
        envs.reset(seed=0)
        with pytest.raises(EnvWorkerError) as info:
            envs.call("describe", "x")
        assert info.value.env_index == 2 and info.value.worker_index is None
        assert not envs.closed
        obs, *_ = envs.step(np.zeros(3, np.int64))
        np.testing.assert_array_equal(obs[:, 0], [1, 1, 1])
        assert envs.get_attr("tag") == ("default",) * 3
    finally:
        envs.close()
    assert wait_gone(envs.worker_pids) == []


def test_main_process_constructor_exception_cleans_up():
    before = set(p.pid for p in mp.active_children())
    with pytest.raises(EnvWorkerError) as info:
        SubprocVecEnv([CounterEnv, CounterEnv, FailingInitEnv], num_workers=1, in_main=1)
    assert info.value.env_index == 2 and info.value.worker_index is None
    assert "FailingInitEnv cannot be built" in str(info.value) and "creating the env" in str(info.value)
    gc.collect()
    assert wait_gone(set(p.pid for p in mp.active_children()) - before) == []


def test_killed_worker_is_detected_with_main_share():
    envs = SubprocVecEnv([CounterEnv for _ in range(4)], num_workers=1, in_main=3)
    envs.reset(seed=0)
    os.kill(envs.worker_pids[0], signal.SIGKILL)
    with pytest.raises(EnvWorkerError, match="worker 0 .*killed by signal SIGKILL"):
        envs.step(np.zeros(4, np.int64))
    assert envs.closed and wait_gone(envs.worker_pids) == []


def test_split_arguments():
    fns = [CounterEnv for _ in range(8)]
    envs = SubprocVecEnv(fns, num_workers=1)
    try:
        assert (envs.num_workers, envs.in_main) == (1, 5)  # default: main block 1.5x a worker's
    finally:
        envs.close()
    envs = SubprocVecEnv(fns, num_workers=4, in_main=6)
    try:  # never more workers than envs left to them
        assert (envs.num_workers, envs.in_main, len(envs.worker_pids)) == (2, 6, 2)
    finally:
        envs.close()
    with pytest.raises(ValueError, match="in_main"):
        SubprocVecEnv(fns, in_main=9)
    with pytest.raises(ValueError, match="num_workers"):
        SubprocVecEnv(fns, num_workers=0)


def test_constructor_exception():
    before = set(p.pid for p in mp.active_children())
    with pytest.raises(EnvWorkerError) as info:
        SubprocVecEnv([CounterEnv, CounterEnv, FailingInitEnv], num_workers=2)
    assert info.value.env_index == 2 and "FailingInitEnv cannot be built" in str(info.value)
    assert "creating the env" in str(info.value)
    gc.collect()
    assert set(p.pid for p in mp.active_children()) <= before


def test_killed_worker_is_detected_when_idle():
    envs = SubprocVecEnv([CounterEnv for _ in range(4)], num_workers=2, in_main=0)
    envs.reset(seed=0)
    os.kill(envs.worker_pids[1], signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(EnvWorkerError, match="worker 1 .*killed by signal SIGKILL") as info:
        envs.step(np.zeros(4, np.int64))
    assert time.monotonic() - start < 5.0
    assert info.value.__context__ is None  # no EOFError / BrokenPipeError chained in
    assert envs.closed and wait_gone(envs.worker_pids) == []


def test_killed_worker_is_detected_while_stepping():
    envs = SubprocVecEnv([partial(SleepyEnv, 30.0) for _ in range(2)], num_workers=2)
    pids = envs.worker_pids
    envs.reset(seed=0)
    timer = threading.Timer(0.3, os.kill, (pids[0], signal.SIGKILL))
    timer.start()
    start = time.monotonic()
    with pytest.raises(EnvWorkerError, match="worker 0"):
        envs.step(np.zeros(2, np.int64))  # the other worker sleeps for 30 s: no waiting for it
    assert time.monotonic() - start < 5.0
    assert wait_gone(pids) == []  # the sleeping worker was terminated by close()


def test_keyboard_interrupt_during_step_keeps_env_usable():
    envs = SubprocVecEnv([partial(SleepyEnv, 0.3) for _ in range(2)], num_workers=2)
    pids = envs.worker_pids
    try:
        envs.reset(seed=0)
        timer = threading.Timer(0.1, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            envs.step(np.zeros(2, np.int64))
        timer.join()
        obs, *_ = envs.step(np.zeros(2, np.int64))  # the interrupted step's replies are dropped
        np.testing.assert_array_equal(obs[:, 0], [2, 2])
    finally:
        envs.close()
    assert wait_gone(pids) == []


def test_close_is_idempotent_and_del_cleans_up():
    envs = SubprocVecEnv([CounterEnv for _ in range(3)], num_workers=3)
    pids = envs.worker_pids
    assert len(set(pids)) == 3 and all(pid_alive(p) for p in pids)
    envs.close()
    envs.close()
    assert wait_gone(pids) == []
    assert not set(pids) & {p.pid for p in mp.active_children()}

    envs = SubprocVecEnv([CounterEnv for _ in range(2)], num_workers=2)
    pids = envs.worker_pids
    del envs
    gc.collect()
    assert wait_gone(pids) == []


_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from a2c_ppo.envs.subproc_vec_env import SubprocVecEnv
    from tests.envs_for_tests import CounterEnv

    if __name__ == "__main__":
        envs = SubprocVecEnv([CounterEnv for _ in range(4)], num_workers=int(sys.argv[2]), in_main=int(sys.argv[3]))
        envs.reset(seed=0)
        print(" ".join(map(str, envs.worker_pids)), flush=True)
        if sys.argv[1] == "crash":
            raise RuntimeError("the training loop crashed")
        while True:
            envs.step(np.zeros(4, np.int64))
            time.sleep(0.001)
    """
)


@pytest.mark.parametrize("split", [(2, 0), (1, 2)], ids=["workers-only", "main-share"])
@pytest.mark.parametrize("how", ["ctrl-c", "crash", "main-killed"])
def test_no_orphans_after_ctrl_c_crash_or_kill(how, split, tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, str(script), how, *map(str, split)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        line = proc.stdout.readline()
        assert line.strip(), proc.stderr.read()
        pids = [int(p) for p in line.split()]
        if how == "ctrl-c":
            time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        elif how == "main-killed":
            time.sleep(0.2)
            os.kill(proc.pid, signal.SIGKILL)  # no cleanup code runs: workers must notice
        _, err = proc.communicate(timeout=20)
        if how != "main-killed":
            expected = "KeyboardInterrupt" if how == "ctrl-c" else "the training loop crashed"
            assert expected in err
        assert "EOFError" not in err and "BrokenPipe" not in err
        assert wait_gone(pids) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
