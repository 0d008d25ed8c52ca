"""A time limit for env code that runs in this process: SIGALRM interrupts it.

Env code that never returns (a simulator that hangs, a ``while True``) must not stall a run
silently. In a worker process the main process notices that no reply came and kills the
worker; code in this process is interrupted by ``time_limit``, which raises ``EnvTimeout``
into it when it runs too long. The handler is installed once; each limit then costs two
``setitimer`` calls and a clock read (about a microsecond and a half), paid per vector step. Signals reach the main
thread only, so elsewhere the limit does not apply. Code stuck outside Python, which no
signal handler interrupts, meets a backstop (``_Backstop``) that ends the process.
"""

from __future__ import annotations

import _signal
import contextlib
import faulthandler
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from a2c_ppo.errors import EXIT_ENV_FAILED


class EnvTimeout(TimeoutError):
    """Env code did not return within its time limit (``--env-timeout``)."""


_limit = [0.0]  # the seconds of the limit that is running, for the message


def _interrupt(signum: int, frame: Any) -> None:
    raise EnvTimeout(
        f"no return within {_limit[0]:g} s (--env-timeout: raise it for a slow simulator, 0 waits forever)"
    )


def arm(seconds: float | None, backstop: bool = True) -> bool:
    """Start a limit of ``seconds`` (``None`` or 0: none); whether one started (then ``disarm``).
    ``backstop``: also end the process if the code gets stuck outside Python (``_Backstop``)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        return False
    try:
        if backstop:  # first: an alarm raised below must find the watch already set (disarm clears it)
            _BACKSTOP.enter(seconds)
        # _signal's getsignal: signal.getsignal wraps the answer in an Enum where it can, and
        # finding that it cannot (a Python handler) costs ~2 us, paid per vector step.
        if _signal.getsignal(signal.SIGALRM) is not _interrupt:
            signal.signal(signal.SIGALRM, _interrupt)
        _limit[0] = seconds
        signal.setitimer(signal.ITIMER_REAL, seconds)
    except BaseException:  # a Ctrl-C landing in here: its caller's finally never disarms
        disarm()
        raise
    return True


def disarm() -> None:
    _BACKSTOP.leave()  # first, as arm's watch: an alarm may still land below
    signal.setitimer(signal.ITIMER_REAL, 0)


class _Backstop:
    """The limit for env code stuck outside Python, where no signal handler runs: a simulator's
    C code that never returns lets neither SIGALRM's ``EnvTimeout`` nor a Ctrl-C through. A
    watcher thread (started by the first ``enter``) wakes every ``TICK_S``; once env code has
    run ``GRACE_S`` past its limit, it prints which limit passed and every thread's stack, and
    ends the process (exit 3, an env failure; workers end with it). Per env call this costs two
    attribute stores. Time the process spends stopped (Ctrl-Z, a paused container) does not
    count: a tick that comes late moves the deadline on by the delay. Code stuck while holding
    the GIL stops the watcher too; nothing inside the process can end that."""

    TICK_S = 0.5
    GRACE_S = 5.0

    def __init__(self) -> None:
        # the running env call's (start, limit, deadline), replaced whole so the watcher reads
        # one call's
        self.call = IDLE
        self.thread: threading.Thread | None = None

    def leave(self) -> None:
        self.call = IDLE

    def enter(self, seconds: float) -> None:
        now = time.monotonic()
        self.call = (now, seconds, now + seconds)
        if self.thread is None:
            self.thread = threading.Thread(target=self._watch, name="a2c_ppo-env-backstop", daemon=True)
            self.thread.start()

    def _watch(self) -> None:
        last = time.monotonic()
        while True:
            time.sleep(self.TICK_S)
            now = time.monotonic()
            late = now - last - self.TICK_S
            call = self.call
            start, limit, deadline = call
            # stopped (or starved) while this call ran, which began before the tick was due: that
            # time is no env's (a call that began after the stop gets no credit)
            if late > 1.0 and start <= last + self.TICK_S:
                if self.call is call:
                    self.call = (start, limit, deadline + late)
            elif now > deadline + self.GRACE_S and self.call is call:  # (not a call that just returned)
                _end_stuck(limit, now - start)
            last = now


def _end_stuck(limit: float, seconds: float) -> None:
    """Report env code stuck outside Python and end the process (from the watcher thread)."""
    try:
        stderr = sys.__stderr__
        if stderr is not None:
            program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "a2c_ppo"
            stderr.write(
                f"{program}: error: an environment failed: env code in the main process has not returned for "
                f"{seconds:.0f} s, past its limit of {limit:g} s (--env-timeout), and cannot be interrupted: it is "
                "stuck outside Python (e.g. in a simulator's C code). The process ends now; the last checkpoint "
                "written is intact. Where each thread was:\n"
            )
            stderr.flush()
            faulthandler.dump_traceback(stderr, all_threads=True)
    except BaseException:  # a closed stderr must not keep a stuck process alive
        pass
    finally:
        os._exit(EXIT_ENV_FAILED)


IDLE = (0.0, 0.0, math.inf)  # no env call running: no deadline
_BACKSTOP = _Backstop()


@contextlib.contextmanager
def time_limit(seconds: float | None, backstop: bool = True) -> Iterator[None]:
    """Raise ``EnvTimeout`` in the block if it runs longer than ``seconds`` (``None`` or 0: no
    limit); ``backstop``: see ``arm``."""
    armed = arm(seconds, backstop)
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
        with time_limit(None if outer else seconds, backstop=False):  # a close stuck in C: the end waits
            env.close()
    except EnvTimeout:
        if outer:
            raise  # the outer limit's: its owner handles it
    except Exception:
        pass
