"""A time limit for env code that runs in this process: SIGALRM interrupts it.

Env code that never returns (a simulator that hangs, a ``while True``) must not stall a run
silently. In a worker process the main process notices that no reply came and kills the
worker; code in this process is interrupted by ``time_limit``, which raises ``EnvTimeout``
into it when it runs too long. The handler is installed once; each limit then costs two
``setitimer`` calls (under a microsecond), paid per vector step. Signals reach the main
thread only, so elsewhere the limit does not apply.
"""

from __future__ import annotations

import _signal
import contextlib
import signal
import threading
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
    return True


def disarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


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
