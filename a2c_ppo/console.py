"""Lines for the user on stdout / stderr that can never end a run.

``python main.py | head -2`` closes the pipe after two lines, and ``python main.py >&-`` starts
without a stdout at all. Writing then raises (BrokenPipeError, or there is no stream); here
that only stops the console output: training, TensorBoard, the CSV and the checkpoints carry
on. The dead stream's file descriptor is pointed at /dev/null, so that the interpreter's own
flush at exit stays quiet too.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn, TextIO

from a2c_ppo.signals import Interrupted, stop_signal_within


class Console:
    """Writes to the stream ``get_stream()`` returns (looked up at each write, so a replaced
    ``sys.stdout`` is followed), until a write fails."""

    def __init__(self, get_stream: Callable[[], TextIO | None]) -> None:
        self._get_stream = get_stream
        self.alive = True

    def write(self, text: str) -> None:
        stream = self._get_stream()
        if not self.alive or stream is None:
            return
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (EPIPE), a closed file
            self._silence(stream)

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def isatty(self) -> bool:
        stream = self._get_stream()
        try:
            return self.alive and stream is not None and stream.isatty()
        except (OSError, ValueError):
            return False

    def _silence(self, stream: TextIO) -> None:
        self.alive = False
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass


#: The program's stdout and stderr, as consoles.
out = Console(lambda: sys.stdout)
err = Console(lambda: sys.stderr)


def fail(message: str, prog: str, code: int = 2, *, node_wide: bool = False) -> NoReturn:
    """Print ``message`` as the program's error paragraph and exit with status ``code`` (2: bad
    input, ``errors.EXIT_BAD_INPUT``). ``node_wide``: every torchrun rank of this node should
    meet the same error (the same command line, files and installs): ``say_once_per_node``."""
    text = f"{prog}: error: {message}\n"
    if node_wide:
        say_once_per_node(text)
    else:
        err.write(text)
    raise SystemExit(code)


#: How long a later torchrun rank waits, after an error its node's first rank should meet too,
#: for that one to say it and end (torchrun then stops the others): long enough for a first
#: rank that is seconds behind on a busy machine.
NODE_WIDE_WAIT_S = 10.0


def say_once_per_node(text: str) -> None:
    """Write ``text``, an error every torchrun rank of this node should meet, once per node:
    local rank 0 writes it; a later rank only where torchrun has not stopped it within
    ``NODE_WIDE_WAIT_S`` (its first rank did not meet the error: say, an env this rank alone
    cannot build), naming itself. Before, later ranks were silent, and such an error was lost."""
    if is_later_local_rank():
        if stop_signal_within(NODE_WIDE_WAIT_S):  # the first rank said it and ended
            return
        rank = f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}"
        text = f"{rank} (its node's first rank did not say this within {NODE_WIDE_WAIT_S:.0f} s): {text}"
    err.write(text)


#: What torchrun sets in each rank's environment (``distributed.py`` reads them): enough to
#: tell a torchrun launch from a plain one; torchrun also sets MASTER_ADDR/PORT.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def is_later_local_rank() -> bool:
    """Whether this process is a torchrun rank other than its node's first: torchrun sets
    ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (other launchers may set ``LOCAL_RANK`` alone)."""
    if not all(os.environ.get(name) for name in TORCHRUN_VARIABLES):
        return False
    return os.environ["LOCAL_RANK"] != "0"


def say_stopped(exc: KeyboardInterrupt) -> int:
    """A short command (replay, export, plot) stopped by ``exc``: say which signal, in one line,
    and return its exit status (a plain KeyboardInterrupt, Python's own Ctrl-C handler: SIGINT)."""
    stop = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
    err.line(f"Stopped by {stop.key}.")
    return stop.exit_code
