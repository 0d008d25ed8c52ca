"""SubprocVecEnv's failures: env exceptions, dead workers, interrupts, and no orphan processes."""

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
import traceback
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from gymnasium.error import ClosedEnvironmentError

from a2c_ppo.envs import timeouts
from a2c_ppo.envs.subproc import EnvWorkerError, SubprocVecEnv
from tests.envs_for_tests import CounterEnv, FailingInitEnv, HangingCloseEnv, HangsInWorkerEnv, SleepyEnv
from tests.vec_env_checks import pid_alive, wait_gone

ROOT = Path(__file__).resolve().parents[1]


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
    with pytest.raises(ClosedEnvironmentError):
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
    # the env's own exception is the cause, its traceback down to the env's code (for pdb)
    assert isinstance(err.__cause__, ValueError) and str(err.__cause__) == "CounterEnv exploded at step 3"
    assert traceback.extract_tb(err.__cause__.__traceback__)[-1].filename.endswith("envs_for_tests.py")
    assert "envs_for_tests.py" in err.traceback_text and "in step" in err.traceback_text
    assert envs.closed
    assert wait_gone(pids) == []
    with pytest.raises(ClosedEnvironmentError):
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


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt here even when the test run inherited SIGINT ignored
    (e.g. pytest started as a background job of a non-interactive shell)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_env_whose_close_hangs_in_the_main_process_is_left_after_the_timeout():
    envs = SubprocVecEnv([HangingCloseEnv, CounterEnv], num_workers=1, in_main=2, timeout=1.0)
    envs.reset(seed=0)
    start = time.monotonic()
    envs.close()
    assert time.monotonic() - start < 10


def test_a_worker_whose_env_never_gets_built_is_reported_within_the_timeout(monkeypatch):
    monkeypatch.setattr(timeouts, "WORKER_START_S", 2.0)  # 60 s by default: a start includes imports
    start = time.monotonic()
    # the message gives the limit that ran out: the start's, where it is longer than --env-timeout
    match = r"did not return from creating the env within 2 s \(--env-timeout 1, and at least 2 s to start"
    with pytest.raises(EnvWorkerError, match=match):
        SubprocVecEnv([partial(HangsInWorkerEnv, os.getpid()) for _ in range(2)], num_workers=1, in_main=1,
                      timeout=1.0)  # fmt: skip
    assert time.monotonic() - start < 20


@pytest.mark.parametrize("in_main,expected", [(0, [2, 2]), (1, [2, 1])], ids=["workers-only", "in-main-env"])
def test_keyboard_interrupt_during_step_keeps_env_usable(in_main, expected, sigint_raises):
    # With in_main=1 the interrupt lands in the main process's env (its step never finished)
    # while the worker's reply is still unread: that reply must not be taken for the next one's.
    envs = SubprocVecEnv([partial(SleepyEnv, 0.3) for _ in range(2)], num_workers=2, in_main=in_main)
    pids = envs.worker_pids
    try:
        envs.reset(seed=0)
        timer = threading.Timer(0.1, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            envs.step(np.zeros(2, np.int64))
        timer.join()
        obs, *_ = envs.step(np.zeros(2, np.int64))  # the interrupted step's replies are dropped
        np.testing.assert_array_equal(obs[:, 0], expected)
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
    import signal, sys, time
    from functools import partial
    import numpy as np
    from a2c_ppo.envs.subproc import SubprocVecEnv
    from tests.envs_for_tests import CounterEnv, SleepyEnv

    if __name__ == "__main__":
        # Ctrl-C must work whatever disposition this process inherited (as main.py makes sure).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # killed in a step: each step blocks in every env (the workers' too) for a minute
        env_fn = partial(SleepyEnv, 60.0) if sys.argv[1] == "main-killed-in-step" else CounterEnv
        envs = SubprocVecEnv([env_fn for _ in range(4)], num_workers=int(sys.argv[2]), in_main=int(sys.argv[3]))
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
@pytest.mark.parametrize("how", ["ctrl-c", "crash", "main-killed", "main-killed-in-step"])
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
        elif how.startswith("main-killed"):
            time.sleep(0.2)
            os.kill(proc.pid, signal.SIGKILL)  # no cleanup code runs: workers must notice
        _, err = proc.communicate(timeout=20)
        if not how.startswith("main-killed"):
            expected = "KeyboardInterrupt" if how == "ctrl-c" else "the training loop crashed"
            assert expected in err
        assert "EOFError" not in err and "BrokenPipe" not in err
        assert wait_gone(pids) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
