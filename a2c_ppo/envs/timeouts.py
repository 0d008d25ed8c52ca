"""A time limit for env code that runs in this process: a signal interrupts it.

Env code that never returns (a simulator that hangs, a ``while True``) must not stall a run
silently. In a worker process the main process notices that no reply came and kills the
worker; code in this process is interrupted by ``time_limit``, which raises ``EnvTimeout``
into it when it runs too long. A watcher thread (``_Watch``) keeps the time: each limit costs
a clock read and two attribute stores, paid per vector step and no system call (a kernel timer
armed and cancelled per step cost HalfCheetah's single env 2% of its training). Only a call
past its limit gets a signal, sent to the main thread, whose handler raises; signals reach the
main thread only, so elsewhere the limit does not apply. Code stuck outside Python, which no
signal handler interrupts, is ended with its process a grace period later.
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

from a2c_ppo import console
from a2c_ppo.errors import EXIT_ENV_FAILED

#: The least time env code gets to build an env, in a worker (its start and imports included)
#: or in the main process.
WORKER_START_S = 60.0


#: The signal that interrupts env code: a real-time one where the system has them (Linux), which
#: no env uses, so that an env's own ``signal.alarm`` keeps SIGALRM; SIGALRM elsewhere (macOS).
INTERRUPT_SIGNAL: int = signal.SIGRTMAX - 2 if hasattr(signal, "SIGRTMAX") else signal.SIGALRM
INTERRUPT_SIGNAL_NAME = "SIGRTMAX-2" if hasattr(signal, "SIGRTMAX") else "SIGALRM"


def build_limit(timeout: float | None) -> float | None:
    """The limit on building an env: ``timeout`` (``--env-timeout``; None or 0: none), at least
    ``WORKER_START_S``."""
    return max(timeout, WORKER_START_S) if timeout else None


class EnvTimeout(BaseException):
    """Env code did not return within its time limit (``--env-timeout``).

    A ``BaseException``, as ``KeyboardInterrupt`` is: env code that retries whatever fails
    (``except Exception``) must not swallow the interruption and run on into the backstop."""


def _interrupt(signum: int, frame: Any) -> None:
    call = _WATCH.call
    if _WATCH.expired is not call:  # sent for a call that has returned since: nothing to stop
        return
    at_least = f", and at least {WORKER_START_S:g} s to build an env" if call[1] == WORKER_START_S else ""
    raise EnvTimeout(
        f"no return within {call[1]:g} s (--env-timeout{at_least}: raise it for a slow simulator, 0 waits forever)"
    )


def arm(seconds: float | None, backstop: bool = True) -> bool:
    """Start a limit of ``seconds`` (``None`` or 0: none); whether one started (then ``disarm``).
    ``backstop``: also end the process if the code gets stuck outside Python (``_Watch``)."""
    if not seconds or threading.get_ident() != _MAIN_THREAD_ID:
        return False
    try:
        # _signal's getsignal: signal.getsignal wraps the answer in an Enum where it can, and
        # finding that it cannot (a Python handler) costs ~2 us, paid per vector step.
        if _signal.getsignal(INTERRUPT_SIGNAL) is not _interrupt:  # first, or an env replaced it
            signal.signal(INTERRUPT_SIGNAL, _interrupt)
        _WATCH.enter(seconds, backstop)
    except BaseException:  # a Ctrl-C landing in here: its caller's finally never disarms
        disarm()
        raise
    return True


def disarm() -> None:
    _WATCH.call = IDLE


class _Watch:
    """The time of the env call running in the main thread, kept by a watcher thread (started
    by the first limit, or by ``watch_stops``) that wakes every tick (``TICK_S``, or a quarter
    of the shortest limit yet). Once the call has run past its limit, the watcher marks it
    ``expired`` and sends ``INTERRUPT_SIGNAL`` to the main thread, whose handler raises ``EnvTimeout`` into
    the call, and again each tick while the call runs on (env code that caught it). A call stuck
    outside Python lets neither that nor a Ctrl-C through: ``GRACE_S`` later, with ``backstop``,
    the watcher prints which limit passed and every thread's stack, and ends the process (exit
    3, an env failure; workers end with it). Code stuck while
    holding the GIL stops the watcher too; nothing inside the process can end that.

    Limits run on ``clock``, which leaves out the time the process spends stopped (Ctrl-Z, a
    paused container): a tick that comes ``STOPPED_S`` or more late, with the process's CPU
    time standing still meanwhile, adds its delay to ``stopped_s``. A run continued after a
    long stop goes on; its envs were stopped too."""

    TICK_S = 0.5
    GRACE_S = 5.0

    def __init__(self) -> None:
        # the running call's (start, limit, deadline, backstop) on ``clock``, replaced whole (by
        # the main thread only) so that the watcher reads one call's
        self.call = IDLE
        self.expired: tuple[float, float, float, bool] | None = None  # the call the signal was sent for
        self.shortest = math.inf  # the shortest limit yet, which sets the tick
        self.stopped_s = 0.0  # written by the watcher only
        self.thread: threading.Thread | None = None

    def clock(self) -> float:
        """Seconds, as ``time.monotonic``, less those the process spent stopped."""
        return time.monotonic() - self.stopped_s

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._watch, name="a2c_ppo-env-watch", daemon=True)
            self.thread.start()

    def enter(self, seconds: float, backstop: bool) -> None:
        now = time.monotonic() - self.stopped_s
        self.call = (now, seconds, now + seconds, backstop)
        if seconds < self.shortest:
            self.shortest = seconds
            self.start()

    def _watch(self) -> None:
        last, last_cpu = time.monotonic(), time.process_time()
        while True:
            tick = min(self.TICK_S, self.shortest / 4)
            time.sleep(tick)
            now, cpu = time.monotonic(), time.process_time()
            # the delay in which the process did not run: stopped (its CPU time stands still), not
            # kept from the watcher by env code that holds the GIL (a hang to catch; it runs)
            unrun = now - last - tick - (cpu - last_cpu)
            last, last_cpu = now, cpu
            if unrun >= STOPPED_S:  # no env's time (a call that began right after it gets some too)
                self.stopped_s += unrun
                continue
            call = self.call
            start, limit, deadline, backstop = call
            active = now - self.stopped_s
            if active <= deadline:
                continue
            if self.expired is not call:
                self.expired = call
                _signal_main_thread()
            elif backstop and active > deadline + self.GRACE_S and self.call is call:  # (not one just returned)
                _end_stuck(limit, active - start)
            else:  # env code that caught the interruption (``except BaseException``) gets another each tick
                _signal_main_thread()


def _signal_main_thread() -> None:
    try:
        signal.pthread_kill(_MAIN_THREAD_ID, INTERRUPT_SIGNAL)
    except (OSError, ValueError):  # the main thread has ended: the interpreter is on its way out
        pass


def _end_stuck(limit: float, seconds: float) -> None:
    """Report env code that no interruption stops and end the process (from the watcher thread)."""
    try:
        stderr = sys.__stderr__
        if stderr is not None:
            program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "a2c_ppo"
            stderr.write(
                f"{program}: error: an environment failed: env code in the main process has not returned for "
                f"{seconds:.0f} s, past its limit of {limit:g} s (--env-timeout), and cannot be interrupted: it is "
                "stuck outside Python (e.g. in a simulator's C code), or it catches the interruption "
                f"(`except BaseException`) or ignores {INTERRUPT_SIGNAL_NAME}. The process ends now; the last "
                "checkpoint written is intact. Where each thread was:\n"
            )
            stderr.flush()
            faulthandler.dump_traceback(stderr, all_threads=True)
    except BaseException:  # a closed stderr must not keep a stuck process alive
        pass
    finally:
        os._exit(EXIT_ENV_FAILED)


IDLE = (0.0, 0.0, math.inf, False)  # no env call running: no deadline
_WATCH = _Watch()
_MAIN_THREAD_ID: int = threading.main_thread().ident  # type: ignore[assignment]  # None only before it starts

#: How much later than due a wait may end, the process not running meanwhile, before the time
#: is taken for the process's own stop rather than an env's.
STOPPED_S = 1.0


def _after_fork_in_child() -> None:
    """A forked child has none of its parent's threads: its limits need a watcher of their own."""
    global _MAIN_THREAD_ID
    _WATCH.__init__()  # type: ignore[misc]  # the same object: ``clock`` and ``watch_stops`` stay bound to it
    _MAIN_THREAD_ID = threading.get_ident()


os.register_at_fork(after_in_child=_after_fork_in_child)

#: ``time.monotonic`` less the time the process spent stopped: the clock of every env limit.
clock = _WATCH.clock
#: Start keeping the time the process spends stopped (for limits on ``clock`` outside ``arm``).
watch_stops = _WATCH.start


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


@contextlib.contextmanager
def env_time_limit(env: str, what: str, seconds: float | None, timeout: float | None) -> Iterator[None]:
    """``time_limit(seconds)`` on env code run outside a vector step (``env`` names it, ``what``
    says what it runs, ``timeout`` is ``--env-timeout``); past it, an env failure
    (``EnvWorkerError``: exit 3), as a worker's would be."""
    try:
        with time_limit(seconds):
            yield
    except EnvTimeout:
        from a2c_ppo.envs.subproc.protocol import EnvWorkerError  # (the vector env's package: not at start-up)

        at_least = f", and at least {seconds:g} s to build" if seconds != timeout else ""
        raise EnvWorkerError(
            f"{env} did not return from {what} within {seconds:g} s (--env-timeout {timeout:g}{at_least}: raise it "
            "for a slow simulator, 0 waits forever)",
            env_index=None,
            worker_index=None,
            error_type=EnvTimeout.__name__,
        ) from None


#: Seconds the close of an env in this process may take before it is left as it is (workers
#: get as long before they are terminated).
CLOSE_TIMEOUT_S = 5.0


def close_within(env: Any, seconds: float | None = CLOSE_TIMEOUT_S) -> None:
    """``env.close()``, ignoring what it raises and given up after ``seconds`` (in the main
    thread): a simulator that will not shut down must not hang the program's start or end.
    Inside another limit (the layout probe's) that one bounds the close: one limit serves both."""
    outer = _WATCH.call is not IDLE
    try:
        with time_limit(None if outer else seconds, backstop=False):  # a close stuck in C: the end waits
            env.close()
    except EnvTimeout:
        if outer:
            raise  # the outer limit's: its owner handles it
        _note_hung_close(env, seconds)
    except Exception:
        pass


_hung_closes: set[str] = set()  # the env classes whose close has hung in this process: said once


def _note_hung_close(env: Any, seconds: float | None) -> None:
    """Say once per env class why the program paused: a close that hangs costs its limit at
    every close (the start-up check's envs, the layout probe's, the run's end)."""
    name = type(getattr(env, "unwrapped", env)).__name__
    if name not in _hung_closes:
        _hung_closes.add(name)
        console.err.line(
            f"note: {name}.close() did not return within {seconds:g} s and was left as it is; each close of such an "
            "env waits that long (fix the env's close)."
        )
