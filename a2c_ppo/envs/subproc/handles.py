"""One submit / collect interface over a block of envs, wherever it runs.

:class:`RemoteBlock` talks to a worker process through its pipe; :class:`LocalBlock` runs an
:class:`EnvBlock` in the main process. ``submit`` starts a command (a remote block returns at
once; a local block runs it there and then, which is why the vector env submits to the local
block last), ``collect`` returns its result or raises :class:`EnvWorkerError`. Every
submitted command carries a ``tag`` and is collected by it, so that two step ranges in flight
on one block (split-phase stepping) come back to the right caller.
"""

from __future__ import annotations

import pickle
import select
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from a2c_ppo.envs.subproc.block import EnvBlock, whereabouts
from a2c_ppo.envs.subproc.protocol import REPLY_ERROR, EnvWorkerError, encode_command, error_report
from a2c_ppo.envs.timeouts import (
    STOPPED_S,
    EnvTimeout,
    arm,
    build_limit,
    clock,
    disarm,
    watch_stops,
)


class LocalBlock:
    """A block stepped by the main process (the ``in_main`` share)."""

    worker_index = None
    dead = False

    def __init__(self, block: EnvBlock, envs: range, timeout: float | None = None) -> None:
        self.block = block
        self.envs = envs
        self.timeout = timeout
        self._results: dict[Any, tuple[bool, Any]] = {}

    def submit(self, cmd: bytes, payload: Any = None, tag: Any = None) -> None:
        self.run(lambda: self.block.execute(cmd, payload), tag)

    def run(self, fn: Callable[[], Any], tag: Any = None, building: bool = False) -> None:
        """Run ``fn`` on the block now, within ``timeout`` (``building`` the envs: ``build_limit``'s);
        its result or error waits for ``collect(tag)``."""
        armed = arm(build_limit(self.timeout) if building else self.timeout)  # per vector step: no system call
        try:
            self._results[tag] = (True, fn())
        except (Exception, SystemExit, EnvTimeout) as exc:  # an env's sys.exit() is its failure; a Ctrl-C goes up
            if armed:  # first: the limit's signal, resent each tick, must not land in the report's making
                disarm()
                armed = False
            self._results[tag] = (False, (error_report(*self.block.whereabouts()), exc))
        finally:
            if armed:
                disarm()

    def collect(self, what: str, tag: Any = None) -> Any:
        """``run``'s result; an env's exception as EnvWorkerError, caused by the exception itself
        (its traceback reaches the env's code: ``pdb.post_mortem(error.__cause__.__traceback__)``)."""
        ok, result = self._results.pop(tag)
        if not ok:
            report, exc = result
            raise EnvWorkerError.from_report(report, None) from exc
        return result

    def drain(self, what: str) -> None:
        self._results.clear()


def _reply_waiter(conn: Any) -> Callable[[float], bool]:
    """``wait(timeout_s) -> bool``: is a reply (or EOF) readable? One cheap syscall on POSIX."""
    if not hasattr(select, "poll"):
        return conn.poll
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return lambda timeout_s: bool(poller.poll(int(timeout_s * 1000)))


class RemoteBlock:
    """The envs ``envs`` of worker process ``worker_index``, reached through ``conn``.

    A dead worker (noticed through its pipe, or within ``poll_interval`` seconds by an
    ``is_alive`` check) raises :class:`EnvWorkerError` and sets ``dead``.
    """

    def __init__(
        self,
        worker_index: int,
        proc: Any,
        conn: Any,
        envs: range,
        poll_interval: float,
        where: np.ndarray | None = None,
        timeout: float | None = None,
    ) -> None:
        self.worker_index = worker_index
        self.proc = proc
        self.conn = conn
        self.envs = envs
        self.poll_interval = poll_interval
        self.where = where  # the worker's (env index, phase code) cells in shared memory
        self.timeout = timeout
        self._step_limit = timeout or float("inf")  # a command's, read per vector step
        if timeout:
            watch_stops()  # the deadlines below leave out a Ctrl-Z's time
        self.dead = False
        self._wait = _reply_waiter(conn)
        self._tags: deque[Any] = deque()  # tags of the sent commands whose reply is unread
        self._deadlines: deque[tuple[float, float]] = deque()  # when each reply is due, and its limit (inf: none)
        self._stash: dict[Any, bytes] = {}  # replies read while looking for another tag

    def expect(self, tag: Any = None) -> None:
        """A reply is coming without a command (the worker's "ready" after building its envs,
        within the timeout, but at least ``WORKER_START_S``: a process starts and imports on a
        loaded machine slower than a step; an env whose constructor hangs must not hang the run)."""
        self._tags.append(tag)
        limit = build_limit(self.timeout) or float("inf")
        self._deadlines.append((clock() + limit, limit))

    def submit(self, cmd: bytes, payload: Any = None, tag: Any = None) -> None:
        try:
            self.conn.send_bytes(encode_command(cmd, payload))
            self._tags.append(tag)
            self._deadlines.append((clock() + self._step_limit, self._step_limit))
            return
        except (OSError, ValueError):
            pass  # raised below, outside the handler, so no BrokenPipeError shows as its context
        raise self._died("receiving a command")

    def collect(self, what: str, tag: Any = None) -> Any:
        reply = self._stash.pop(tag) if tag in self._stash else self._read_until(tag, what)
        if reply[:1] == REPLY_ERROR:
            raise EnvWorkerError.from_report(pickle.loads(reply[1:]), self.worker_index)
        return pickle.loads(reply[1:]) if reply else None

    def _read_until(self, tag: Any, what: str) -> bytes:
        while True:
            reply = self._recv(what)  # an interrupt here leaves the tag pending: nothing is lost
            got = self._tags.popleft()
            self._deadlines.popleft()
            if got == tag:
                return reply
            self._stash[got] = reply

    def drain(self, what: str) -> None:
        """Read and drop every unread reply (of a command whose caller was interrupted)."""
        while self._tags:
            self._recv(what)
            self._tags.popleft()
            self._deadlines.popleft()
        self._stash.clear()

    def _recv(self, what: str) -> bytes:
        waited = time.monotonic()
        while not self._wait(self.poll_interval):
            if not self.proc.is_alive():
                raise self._died(what)
            # a wait that ended late: this process was stopped, and the watcher may not have
            # taken that time off the clock yet; the next round's check will find it has
            late = time.monotonic() - waited - self.poll_interval >= STOPPED_S
            if not late and self._deadlines and clock() > self._deadlines[0][0]:
                raise self._hung(self._deadlines[0][1])
            waited = time.monotonic()
        try:
            return self.conn.recv_bytes()
        except (EOFError, OSError):
            pass  # raised below, outside the handler, so no EOFError shows as its context
        raise self._died(what)

    def _hung(self, limit: float) -> EnvWorkerError:
        """The worker has not answered in time (an env hangs, or the process was stopped):
        kill it (SIGKILL also ends a stopped process) and name the env it was working on."""
        self.dead = True
        index, phase = whereabouts(self.where) if self.where is not None else (self.envs.start, "?")
        self.proc.kill()
        self.proc.join(1.0)
        start = "" if limit == self.timeout else f" {self.timeout:g}, and at least {limit:g} s to start"
        return EnvWorkerError(
            f"env {index} (worker {self.worker_index}, pid {self.proc.pid}) did not return from {phase} within "
            f"{limit:g} s (--env-timeout{start}: raise it for a slow simulator, 0 waits forever); the worker was "
            "stopped and the vector env closed",
            env_index=index,
            worker_index=self.worker_index,
            error_type=EnvTimeout.__name__,
        )

    def _died(self, what: str) -> EnvWorkerError:
        self.dead = True
        proc = self.proc
        proc.join(0.1)
        code = proc.exitcode
        if code is not None and code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        elif code is not None:
            how = f"exited with code {code}"
        else:
            how = "closed its pipe"
        error = EnvWorkerError.worker_died(self.worker_index, proc.pid, self.envs, how, what)
        if what == "creating the envs":
            # forkserver and spawn import the main script again in each worker; a script that
            # builds its envs at module level then starts processes while importing, and dies.
            error.args = (
                f"{error}. If your script builds the envs or trains at module level, put that code under "
                '`if __name__ == "__main__":` (worker processes start with forkserver or spawn, which import '
                "the main script again).",
            )
        return error
