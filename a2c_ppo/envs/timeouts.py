"""A time limit for env code that runs in this process: SIGALRM interrupts it.

Env code that never returns (a simulator that hangs, a ``while True``) must not stall a run
silently. In a worker process the main process notices that no reply came and kills the
worker; code in this process is interrupted by ``time_limit``, which raises ``EnvTimeout``
into it when it runs too long. The handler is installed once; each limit then costs two
``setitimer`` calls (under a microsecond), paid per vector step. Signals reach the main
thread only, so elsewhere the limit does not apply. Code stuck outside Python, which no
signal handler interrupts, meets a backstop (``_Backstop``) that ends the process.
"""

from __future__ import annotations

import _signal
import contextlib
import faulthandler
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any


class EnvTimeout(TimeoutError):
    """Env code did not return within its time limit (``--env-timeout``)."""


_limit = [0.0]  # the seconds of the limit that is running, for the message


def _interrupt(signum: int, frame: Any) -> None:
    raise EnvTimeout(
        f"no return within {_limit[0]:g} s (--env-timeout: raise it for a slow simulator, 0 waits forever)"
    )


def arm(seconds: float | None) -> bool:
    """Start a limit of ``seconds`` (``None`` or 0: none); whether one started (then ``disarm``)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        return False
    # _signal's getsignal: signal.getsignal wraps the answer in an Enum where it can, and
    # finding that it cannot (a Python handler) costs ~2 us, paid per vector step.
    if _signal.getsignal(signal.SIGALRM) is not _interrupt:
        signal.signal(signal.SIGALRM, _interrupt)
    _limit[0] = seconds
    signal.setitimer(signal.ITIMER_REAL, seconds)
    _BACKSTOP.enter(seconds)
    return True


def disarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)
    _BACKSTOP.leave()


class _Backstop:
    """The limit for env code stuck outside Python, where no handler runs: a simulator's C code
    that never returns (holding the GIL or not) lets neither SIGALRM's ``EnvTimeout`` nor a
    Ctrl-C through. faulthandler's watchdog, a C thread that needs no GIL, then dumps every
    thread's stack to stderr and ends the process (exit 1) once env code has run ``2 x limit +
    GRACE_S`` seconds. Arming it costs ~20 us and cancelling ~40 us, so it is re-armed at most
    once a second while env calls under one limit go on, and a thread cancels it once they have stopped for
    ``IDLE_S`` (an update between rollouts may take longer than any deadline)."""

    GRACE_S = 5.0
    IDLE_S = 0.5

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = False  # in an env call now
        self.armed_at = 0.0  # when the watchdog was last armed (0: it is not)
        self.armed_for = 0.0  # the limit it was armed for
        self.last = 0.0  # when the last env call began or ended
        self.thread: threading.Thread | None = None

    def enter(self, seconds: float) -> None:
        now = time.monotonic()
        with self.lock:
            self.inside, self.last = True, now
            if now - self.armed_at > 1.0 or seconds != self.armed_for:
                faulthandler.dump_traceback_later(2 * seconds + self.GRACE_S, exit=True, file=sys.__stderr__ or 2)
                self.armed_at, self.armed_for = now, seconds
        if self.thread is None:
            self.thread = threading.Thread(target=self._cancel_when_idle, name="a2c_ppo-env-backstop", daemon=True)
            self.thread.start()

    def leave(self) -> None:
        with self.lock:
            self.inside, self.last = False, time.monotonic()

    def _cancel_when_idle(self) -> None:
        while True:
            time.sleep(self.IDLE_S)
            with self.lock:
                if self.armed_at and not self.inside and time.monotonic() - self.last > self.IDLE_S:
                    faulthandler.cancel_dump_traceback_later()
                    self.armed_at = 0.0


_BACKSTOP = _Backstop()


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ``EnvTimeout`` in the block if it runs longer than ``seconds`` (``None`` or 0: no limit)."""
    armed = arm(seconds)
    try:
        yield
    finally:
        if armed:
            disarm()


#: Seconds the close of an env in this process may take before it is left as it is (workers
#: get as long before they are terminated).
CLOSE_TIMEOUT_S = 5.0


def close_within(env: Any, seconds: float | None = CLOSE_TIMEOUT_S) -> None:
    """``env.close()``, ignoring what it raises and given up after ``seconds`` (in the main
    thread): a simulator that will not shut down must not hang the program's start or end.
    Inside another limit (the layout probe's) that one bounds the close: one timer serves both."""
    outer = signal.getitimer(signal.ITIMER_REAL)[0] > 0
    try:
        with time_limit(None if outer else seconds):
            env.close()
    except EnvTimeout:
        if outer:
            raise  # the outer limit's: its owner handles it
    except Exception:
        pass
