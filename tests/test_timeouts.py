"""The time limit on env code in the main process (``--env-timeout``): the watcher thread's
signal interrupts a call past its limit, and only such a call."""

from __future__ import annotations

import math
import os
import re
import signal
import threading
import time

import pytest

from a2c_ppo.envs import timeouts
from a2c_ppo.envs.timeouts import EnvTimeout, close_within, time_limit

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")


def test_a_call_past_its_limit_is_interrupted_in_a_sleep_and_in_python_code():
    start = time.monotonic()
    with pytest.raises(EnvTimeout, match=r"within 0\.4 s"), time_limit(0.4):
        time.sleep(30)
    assert 0.4 <= time.monotonic() - start < 5
    start = time.monotonic()
    with pytest.raises(EnvTimeout), time_limit(0.4):
        while True:
            pass
    assert 0.4 <= time.monotonic() - start < 5


def test_env_code_that_catches_the_interruption_is_interrupted_again():
    """``except Exception`` (a retry loop) does not catch it, and code that catches it once (a
    ``finally`` that hangs too) gets another each tick, so no catch leaves the run to the backstop."""
    start = time.monotonic()
    with pytest.raises(EnvTimeout), time_limit(0.4):
        while True:
            try:
                time.sleep(30)
            except Exception:
                pass
    caught: list[str] = []
    with pytest.raises(EnvTimeout), time_limit(0.4):
        try:
            time.sleep(30)
        except BaseException as exc:
            caught.append(type(exc).__name__)
            time.sleep(30)
    assert caught == ["EnvTimeout"] and time.monotonic() - start < 10


def test_env_code_that_keeps_the_gil_past_the_limit_is_still_interrupted():
    """Env code that holds the GIL for seconds at a time (a C call that never lets go) delays
    the watcher's ticks as a stopped process would; the process runs meanwhile, so that is no
    stop and the limit holds."""
    pattern = re.compile(r"(a+)+b")  # backtracks 2^n steps in one C call
    start = time.perf_counter()
    pattern.match("a" * 18)
    n = 18 + math.ceil(math.log2(1.5 / max(time.perf_counter() - start, 1e-4)))  # a call of ~1.5 s
    start = time.monotonic()
    with pytest.raises(EnvTimeout), time_limit(0.5):
        for _ in range(5):  # about 7 s of GIL-holding calls if the limit never fires
            pattern.match("a" * min(n, 32))
    assert time.monotonic() - start < 6


def test_a_forked_child_keeps_its_own_limits():
    with time_limit(30):  # the parent's watcher runs
        pass
    pid = os.fork()
    if pid == 0:  # the child: no watcher thread of the parent's survives a fork
        code = 1
        try:
            with time_limit(0.4):
                time.sleep(10)
        except EnvTimeout:
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_call_within_its_limit_and_the_time_between_calls_are_left_alone():
    for _ in range(3):
        with time_limit(0.4):
            time.sleep(0.2)
        time.sleep(0.6)  # between calls (an update): no limit runs
    assert timeouts._WATCH.call is timeouts.IDLE


def test_a_signal_for_a_call_that_has_returned_raises_nothing():
    """The watcher may send its signal just as the call returns: the handler then finds
    another call (or none) running and lets the code go on."""
    with time_limit(0.4):
        expired = timeouts._WATCH.call
    timeouts._WATCH.expired = expired
    timeouts._interrupt(timeouts.INTERRUPT_SIGNAL, None)  # no call running
    with time_limit(0.4):
        timeouts._interrupt(timeouts.INTERRUPT_SIGNAL, None)  # a newer call, within its limit
        timeouts._WATCH.expired = timeouts._WATCH.call
        with pytest.raises(EnvTimeout):
            timeouts._interrupt(timeouts.INTERRUPT_SIGNAL, None)


@pytest.mark.skipif(
    not hasattr(signal, "SIGRTMAX"), reason="the limit takes SIGALRM where there are no real-time signals"
)
def test_env_code_keeps_its_own_alarm_inside_a_limit():
    """An env that times itself with SIGALRM (``signal.alarm``, ``setitimer``) gets its alarm: the
    limit's signal is another."""
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        with time_limit(5):
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            time.sleep(0.5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert fired == [signal.SIGALRM]


def test_no_limit_outside_the_main_thread_or_when_zero():
    started: list[bool] = []
    thread = threading.Thread(target=lambda: started.append(timeouts.arm(1.0)))
    thread.start()
    thread.join()
    assert started == [False] and not timeouts.arm(0) and not timeouts.arm(None)


def test_a_close_inside_a_limit_is_bounded_by_that_limit(capsys):
    class SlowClose:
        def close(self) -> None:
            time.sleep(30)

    start = time.monotonic()
    close_within(SlowClose(), seconds=0.4)  # alone: its own limit, the timeout swallowed, said once
    close_within(SlowClose(), seconds=0.4)
    assert capsys.readouterr().err.count("note: SlowClose.close() did not return within 0.4 s and was left") == 1
    with pytest.raises(EnvTimeout), time_limit(0.4):
        close_within(SlowClose(), seconds=60)  # inside the probe's limit: that one's, raised to its owner
    assert time.monotonic() - start < 10
