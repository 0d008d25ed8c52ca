"""Ctrl-C and SIGTERM as exceptions the training loop can finish cleanly on.

``StopSignals`` installs handlers for SIGINT and SIGTERM explicitly (a process started with
SIGINT ignored, e.g. a background job of a non-interactive shell, still stops on it) that
raise ``Interrupted``, and ignores SIGHUP (a closed terminal). Inside ``deferred()`` a signal
is only recorded and raised when the block ends, so a save or an update is never cut in half,
whatever arrives and how often.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any, NoReturn


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM arrived; ``signum`` says which."""

    def __init__(self, signum: int, during: str = "") -> None:
        """``during``: what the program was doing, said after the signal's name."""
        super().__init__(" ".join(filter(None, (signal.Signals(signum).name, during))))
        self.signum = signum

    @property
    def key(self) -> str:
        """How the replay and export commands name it: ``Ctrl-C``, or the signal's name."""
        return "Ctrl-C" if self.signum == signal.SIGINT else signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
        return 128 + self.signum


class StopSignals:
    """Context manager: SIGINT / SIGTERM raise ``Interrupted`` while it is active."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    arrived = False  # one of them came to a handler of this process, held back or not

    def __init__(self, ignore_hangup: bool = True) -> None:
        """``ignore_hangup``: False for the short commands (replay, export, plot), which a
        closed terminal still ends as before."""
        self._ignore_hangup = ignore_hangup
        self._previous: dict[int, Any] = {}
        self._deferring = 0
        self._pending: int | None = None
        self._closing = False
        self._escalate = False
        self._escalate_after: float | None = None
        self._held = 0  # counts the signals held back: a timer acts only on the one it was set for

    def install(self) -> StopSignals:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        if self._ignore_hangup:
            # A closed terminal (SIGHUP) never ends a run, as nohup; workers started later inherit it.
            self._previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        return self

    def ignore_further(self) -> None:
        """From now on signals are dropped: for the last moments of a program that is exiting
        anyway, so a late Ctrl-C cannot print a traceback from interpreter shutdown."""
        self._closing = True

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        StopSignals.arrived = True
        if self._closing:
            return
        if self._deferring and not (self._escalate and self._pending is not None):
            if self._pending is None:
                self._pending = signum
                self._held += 1
                if self._escalate_after is not None:
                    self._escalate_later(self._escalate_after)
            return
        self.stop(signum)

    def _escalate_later(self, seconds: float) -> None:
        """Signal the main thread again in ``seconds`` if the signal held now is still held:
        the second signal that stops at once."""
        held, main = self._held, threading.main_thread().ident

        def again() -> None:
            signum = self._pending
            if signum is not None and self._held == held and not self._closing and main is not None:
                signal.pthread_kill(main, signum)

        timer = threading.Timer(seconds, again)
        timer.daemon = True
        timer.start()

    def stop(self, signum: int) -> NoReturn:
        """Raise the one ``Interrupted`` of this program: later signals are dropped, so that one
        arriving while the first is being handled (the message, the exit) cannot cut into it."""
        self._closing = True
        self._pending = None
        raise Interrupted(signum)

    def take_pending(self) -> int | None:
        """The signal ``deferred`` holds back, if any, now the caller's to act on (``stop``)."""
        signum, self._pending = self._pending, None
        return signum

    def hold(self, signum: int) -> None:
        """Hold ``signum`` again (one ``take_pending`` took, that the caller defers after all):
        the enclosing ``deferred`` block raises it when it ends, unless taken again; a timer
        set for it earlier (``escalate_after``) no longer acts."""
        self._pending = signum
        self._held += 1

    @contextlib.contextmanager
    def deferred(self, escalate: bool = False, escalate_after: float | None = None) -> Iterator[None]:
        """Signals arriving inside the block are raised (once) when it ends without error; one
        held back when the outermost block ends with an error is dropped (the error ends the
        program, and says so).

        ``escalate``: a second signal inside the block raises at once (for start-up steps
        that may hang, such as building a user's env, where waiting is not an option);
        ``escalate_after``: so does the first, that many seconds after it came, unless taken
        (``take_pending``) or held by a nested block then."""
        self._deferring += 1
        escalate, self._escalate = self._escalate, escalate
        escalate_after, self._escalate_after = self._escalate_after, escalate_after
        try:
            yield
        except BaseException:
            if self._deferring == 1:
                self._pending = None
            raise
        finally:
            self._deferring -= 1
            self._escalate = escalate
            self._escalate_after = escalate_after
        if not self._deferring and self._pending is not None:
            self.stop(self._pending)


@contextlib.contextmanager
def command_stops() -> Iterator[None]:
    """For the replay, export and plot commands: SIGTERM (a job scheduler's stop) raises
    ``Interrupted`` as Ctrl-C does, so that both end in one line and leave no partial file.
    In a thread other than the main one no handler can be installed, and none is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with StopSignals(ignore_hangup=False):
        yield


def stop_signal_within(seconds: float) -> bool:
    """Whether SIGINT or SIGTERM came to this process (to a ``StopSignals`` handler) or comes
    within ``seconds``, waited for here; one that comes now is taken here, not by a handler."""
    wanted = set(StopSignals.SIGNALS)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, wanted)  # from here on one waits for sigtimedwait
    try:
        return StopSignals.arrived or signal.sigtimedwait(wanted, seconds) is not None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
