"""The worker process: build a block of envs, then serve commands until told to stop.

Workers ignore SIGINT (Ctrl-C is the main process's decision) and exit by themselves when
the main process disappears (their pipe reaches EOF). The default start method is
``forkserver`` (``spawn`` where it does not exist): forking a process that already runs torch
threads is unsafe. The forkserver preloads this module, so numpy and gymnasium are imported
once, not per worker; nothing here imports torch or the learner.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import cloudpickle

from a2c_ppo.envs.subproc.block import COMMAND_PHASES, STEP, EnvBlock, Layout, SharedBuffers
from a2c_ppo.envs.subproc.protocol import (
    CMD_CLOSE,
    REPLY_ERROR,
    decode_command,
    encode_reply,
    error_report,
)

if TYPE_CHECKING:
    from a2c_ppo.envs.subproc.handles import LocalBlock


def usable_cpus() -> int:
    """The number of CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(main_process_busy: bool) -> int:
    """Worker processes by default: one per usable CPU, minus one for the main process when it
    works while the workers step (stepping its own envs, or computing the policy), at least 1."""
    return max(1, usable_cpus() - 1) if main_process_busy else usable_cpus()


#: How many envs the main process steps per env a worker steps, by default. A worker pays a
#: pipe round trip and a wake-up per step, and its envs step slower after idling; the main
#: process pays neither, so it gets the larger block. Measured on the 2-core VM (8 envs, 1
#: worker): see docs/BENCHMARKS.md (vector envs).
MAIN_WEIGHT = 1.5


def default_in_main(num_envs: int, num_workers: int) -> int:
    """The default main-process block: ``round(N * MAIN_WEIGHT / (MAIN_WEIGHT + W))``,
    leaving at least one env per worker. 8 envs: 5 in the main process with 1 worker, 3 with 2."""
    share = int(round(num_envs * MAIN_WEIGHT / (MAIN_WEIGHT + num_workers)))
    return max(0, min(share, num_envs - num_workers))


def release_blocks(procs: list, conns: list, timeout: float, local: list[LocalBlock]) -> None:
    """Close the main process's envs and stop the workers; safe to call more than once.
    Holds lists, never the vector env, so that it can run as the finalizer at gc."""
    while local:
        local.pop().block.close()
    stop_workers(procs, conns, timeout)


def default_context() -> Any:
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        # Only effective before the forkserver starts; later calls are harmless no-ops.
        # Not "__main__": env constructors travel by value (cloudpickle), and preloading a
        # script without an `if __name__ == "__main__"` guard would run it in the server.
        ctx.set_forkserver_preload([__name__])
        return ctx
    return mp.get_context("spawn")


def start_quietly(ctx: Any) -> None:
    """Start ``ctx``'s forkserver (if it uses one and it is not running) with SIGINT blocked.

    The server ignores SIGINT once it runs, but first it imports numpy and gymnasium for half a
    second, and a Ctrl-C then (it shares the terminal's process group) would print its own
    traceback. It inherits the blocked signal mask; this process gets its Ctrl-C as the mask
    is restored. Only the main thread can do this (other threads leave the mask alone)."""
    if ctx.get_start_method() != "forkserver" or threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import forkserver

    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


@contextlib.contextmanager
def main_script_hidden() -> Iterator[None]:
    """Start a process without it running the main script first when there is none to run:
    a script fed on stdin (``python - < script.py``) or a notebook names a ``__main__.__file__``
    that does not exist, and multiprocessing would make each new process load it and fail.
    The workers need nothing of it: env constructors travel by value (cloudpickle)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or os.path.exists(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _send_error(conn: Any, env_index: int, phase: str) -> bool:
    try:
        conn.send_bytes(REPLY_ERROR + pickle.dumps(error_report(env_index, phase)))
        return True
    except (OSError, EOFError):
        return False


def worker_main(
    conn: Any,
    env_fns_bytes: bytes,
    lo: int,
    raws: dict[str, Any],
    layout: Layout,
    spaces: bytes,
    index: int,
    step_infos: bool = True,
    main_pid: int | None = None,
) -> None:
    """Serve commands for the envs ``lo .. lo + len(env_fns) - 1`` as worker ``index``
    (``step_infos``: see ``EnvBlock``) for the process ``main_pid``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if main_pid is not None:
        threading.Thread(target=_end_with, args=(main_pid,), name="end-with-main", daemon=True).start()
    arrays = SharedBuffers(raws, layout).arrays
    block = EnvBlock(lo, arrays, pickle.loads(spaces), where=arrays["where"][index], step_infos=step_infos)
    try:
        block.build(cloudpickle.loads(env_fns_bytes))
        conn.send_bytes(b"")  # ready
    except BaseException:
        _send_error(conn, *block.whereabouts())
        block.close()
        return
    while True:
        try:
            msg = conn.recv_bytes()
        except (EOFError, OSError):  # the main process is gone
            break
        try:
            cmd, payload = decode_command(msg)
            if cmd == CMD_CLOSE:
                break
            block.where[:] = (lo, COMMAND_PHASES.get(cmd, STEP))
            conn.send_bytes(encode_reply(block.execute(cmd, payload)))
        except (EOFError, BrokenPipeError):
            break
        except BaseException:
            if not _send_error(conn, *block.whereabouts()):
                break
    block.close()


def stop_workers(procs: list, conns: list, timeout: float) -> None:
    """Ask workers to stop, then terminate, then kill them. Safe to call more than once."""
    for conn in conns:
        try:
            conn.send_bytes(CMD_CLOSE)
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + timeout
    # Drain replies while waiting, so no worker blocks writing into a full pipe.
    while time.monotonic() < deadline and any(p.is_alive() for p in procs):
        for conn in conns:
            try:
                while conn.poll(0):
                    conn.recv_bytes()
            except (OSError, EOFError, ValueError):
                pass
        for p in procs:
            p.join(0.01)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(1.0)
        if p.is_alive():
            p.kill()
            p.join(1.0)
    for conn in conns:
        try:
            conn.close()
        except OSError:
            pass
    for p in procs:
        try:
            p.close()
        except ValueError:  # still running (cannot happen after kill, but never raise here)
            pass


def _end_with(main_pid: int, interval_s: float = 1.0) -> None:
    """End this worker once the main process is gone. Its pipe tells the command loop so, but
    not an env call that blocks (a main process killed with SIGKILL could not stop us)."""
    try:  # /proc shows our PID namespace (not so in some sandboxes): it can tell a zombie
        proc = os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        proc = False
    while _running(main_pid, proc):
        time.sleep(interval_s)
    os._exit(1)


def _running(pid: int, proc: bool) -> bool:
    """Whether process ``pid`` runs: not gone, nor (with ``proc``: /proc is ours) a zombie its
    parent has not reaped yet (the kernel counts one as alive)."""
    if proc:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # the state follows "(name)"
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process took the PID: ours is gone
        return False
    return True
