"""SubprocVecEnv: many envs on a few worker processes, data through shared memory.

``SubprocVecEnv(env_fns, num_workers=None)`` behaves exactly like
``gymnasium.vector.SyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)``: same
observations, rewards, flags and infos (``final_obs`` / ``final_info`` for envs whose episode
ended, the reset observation in ``obs``), with the envs stepped in parallel.

How it works:

* ``num_envs`` envs are split into ``num_workers`` contiguous blocks; each worker process
  builds its block (constructors travel with cloudpickle, so lambdas and closures work) and
  steps it serially. 16 envs on 2 cores need only 2 processes.
* Observations, actions, rewards and the terminated / truncated flags live in shared memory
  (``RawArray`` wrapped as numpy). A step writes the actions, sends a one-byte command down
  each worker's pipe and reads one reply per worker: empty when no env produced an info,
  otherwise the pickled infos that exist (a finished episode's ``final_obs`` and info).
* Faults: an exception in an env becomes one :class:`EnvWorkerError` naming the env index
  and carrying the worker's traceback; a worker that dies (e.g. SIGKILL) is noticed at once
  through its pipe, or within ``poll_interval`` seconds by an ``is_alive`` check. After a
  fault in ``step`` / ``reset`` the vector env closes itself.
* Workers ignore SIGINT (Ctrl-C is the main process's decision), are daemonic, and are
  ended by ``close()`` (idempotent: ask, wait ``close_timeout``, terminate, kill), by a
  ``weakref.finalize`` hook at garbage collection or interpreter exit, and exit by
  themselves when the main process disappears (their pipe reaches EOF).

The default start method is ``forkserver`` (``spawn`` where it does not exist): forking a
process that already runs torch threads is unsafe. The forkserver preloads this module, so
the heavy imports (numpy, gymnasium, torch via ``a2c_ppo.envs``) happen once, not per worker.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import select
import signal
import sys
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, create_empty_array

__all__ = ["SubprocVecEnv", "EnvWorkerError", "choose_vec_env", "default_in_main", "predicted_step_time"]

# Commands (main -> worker): one byte, then a pickled payload where one is needed.
_CMD_STEP = b"s"
_CMD_RESET = b"r"
_CMD_CALL = b"k"
_CMD_SET_ATTR = b"a"
_CMD_CLOSE = b"c"
# Replies (worker -> main): empty = ok and nothing to say; else one byte and a payload.
_REPLY_DATA = b"d"
_REPLY_ERROR = b"e"

_PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL


class EnvWorkerError(RuntimeError):
    """An env raised, or its worker process died. Carries where and the worker's traceback.

    Attributes: ``env_index`` (the failing env, or ``None`` when only the worker is known),
    ``worker_index`` (``None`` for an env stepped in the main process, see ``in_main``),
    ``traceback_text`` (the env's traceback, ``""`` if its worker died).
    """

    def __init__(
        self, message: str, *, env_index: int | None, worker_index: int | None, traceback_text: str = ""
    ) -> None:
        super().__init__(message)
        self.env_index = env_index
        self.worker_index = worker_index
        self.traceback_text = traceback_text


def _dumps(obj: Any) -> bytes:
    try:
        return pickle.dumps(obj, protocol=_PICKLE_PROTOCOL)
    except Exception:  # lambdas or local classes inside infos / call results
        return cloudpickle.dumps(obj, protocol=_PICKLE_PROTOCOL)


def _default_num_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _default_context() -> mp.context.BaseContext:
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        # Only effective before the forkserver starts; later calls are harmless no-ops.
        # Not "__main__": env constructors travel by value (cloudpickle), and preloading a
        # script without an `if __name__ == "__main__"` guard would run it in the server.
        ctx.set_forkserver_preload([__name__])
        return ctx
    return mp.get_context("spawn")


class _Buffers:
    """The shared arrays for all envs: numpy views over ``RawArray`` blocks."""

    def __init__(self, raws: dict[str, Any], layout: dict[str, tuple[tuple[int, ...], str]]) -> None:
        self.raws = raws
        self.layout = layout
        self.arrays = {
            name: np.frombuffer(raws[name], dtype=np.dtype(dtype), count=int(np.prod(shape))).reshape(shape)
            for name, (shape, dtype) in layout.items()
        }

    @classmethod
    def allocate(cls, ctx, layout: dict[str, tuple[tuple[int, ...], str]]) -> _Buffers:
        raws = {}
        for name, (shape, dtype) in layout.items():
            nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
            raws[name] = ctx.RawArray(ctypes.c_uint8, nbytes)
        return cls(raws, layout)


def _check_space(space: gym.Space, what: str) -> None:
    if not isinstance(space, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        raise TypeError(
            f"SubprocVecEnv supports Box, Discrete, MultiDiscrete and MultiBinary {what} spaces, "
            f"got {space}. Use vec_env='sync' (gymnasium SyncVectorEnv) for this env."
        )


# --------------------------------------------------------------------------- infos
#
# The vectorised infos must be exactly what gymnasium's ``VectorEnv._add_info`` builds when
# fed env by env (SyncVectorEnv). Most steps' infos are flat dicts of scalars (MuJoCo's
# positions, ALE's lives and frame numbers); pickling numpy scalars and calling
# ``_add_info`` per env and key is slow, so workers send those as columns of plain Python
# values with their type, and the main process builds one array per key. Anything else
# (a finished episode, nested dicts, arrays, mixed types) takes ``_add_info`` itself.

_PLAIN = (int, float, bool)


def _encode_columns(plain: list[tuple[int, dict]]) -> dict[str, tuple[type, list[int], list]] | None:
    """``{key: (type, env indices, values)}`` for flat scalar infos, keys in order of first
    appearance, values as Python scalars (exact: ``type(value)`` restores them). ``None``
    if some info is not of that kind."""
    columns: dict[str, tuple[type, list[int], list]] = {}
    for env_index, info in plain:
        for key, value in info.items():
            kind = type(value)
            column = columns.get(key)
            if column is None:
                if kind not in _PLAIN and not issubclass(kind, np.number):
                    return None
                column = columns[key] = (kind, [], [])
            elif column[0] is not kind:
                return None
            column[1].append(env_index)
            column[2].append(value if kind in _PLAIN else value.item())
    return columns


def _decode_columns(columns: dict[str, tuple[type, list[int], list]]) -> list[tuple[int, dict]]:
    """Back to ``(env index, info)`` pairs, values of their original types."""
    infos: dict[int, dict] = {}
    for key, (kind, index, values) in columns.items():
        for env_index, value in zip(index, values):
            infos.setdefault(env_index, {})[key] = kind(value)
    return sorted(infos.items(), key=lambda item: item[0])


def _columns_to_infos(blocks: list[dict], num_envs: int) -> dict[str, Any] | None:
    """The vectorised infos from the column blocks of the workers (in env order), or
    ``None`` if a key has different types in different blocks."""
    merged: dict[str, tuple[type, list[int], list]] = {}
    for columns in blocks:
        for key, (kind, index, values) in columns.items():
            column = merged.get(key)
            if column is None:
                merged[key] = (kind, list(index), list(values))
            elif column[0] is not kind:
                return None
            else:
                column[1].extend(index)
                column[2].extend(values)
    infos: dict[str, Any] = {}
    everyone = None
    for key, (kind, index, values) in merged.items():
        # As _add_info: an array of the first value's type, zeros where an env had no value.
        if len(index) == num_envs:  # every env has this key (indices are 0..n-1 in order)
            if everyone is None:
                everyone = np.ones(num_envs, dtype=np.bool_)
            infos[key], infos[f"_{key}"] = np.array(values, dtype=kind), everyone.copy()
        else:
            array = np.zeros(num_envs, dtype=kind)
            array[index] = values
            mask = np.zeros(num_envs, dtype=np.bool_)
            mask[index] = True
            infos[key], infos[f"_{key}"] = array, mask
    return infos


# --------------------------------------------------------------------------- worker side


def _worker(
    worker_index: int,
    conn,
    env_fns_bytes: bytes,
    env_offset: int,
    raws: dict[str, Any],
    layout: dict[str, tuple[tuple[int, ...], str]],
    spaces_bytes: bytes,
) -> None:
    """Serve commands for envs ``env_offset .. env_offset + len(env_fns) - 1``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides about Ctrl-C
    envs: list[gym.Env] = []
    current = env_offset  # the env being worked on, for error messages
    try:
        env_fns = cloudpickle.loads(env_fns_bytes)
        obs_space, act_space = pickle.loads(spaces_bytes)
        for j, fn in enumerate(env_fns):
            current = env_offset + j
            env = fn()
            envs.append(env)
            if env.observation_space != obs_space or env.action_space != act_space:
                raise RuntimeError(
                    f"env {current} has observation space {env.observation_space} and action space "
                    f"{env.action_space}, but env 0 has {obs_space} and {act_space}; all envs of a "
                    "vector env must have the same spaces"
                )
        n = len(envs)
        lo, hi = env_offset, env_offset + n
        views = _Buffers(raws, layout).arrays
        obs_buf = views["obs"][lo:hi]
        act_buf = views["actions"][lo:hi]
        rew_buf = views["rewards"][lo:hi]
        term_buf = views["terminated"][lo:hi]
        trunc_buf = views["truncated"][lo:hi]
        conn.send_bytes(b"")  # ready
    except BaseException:
        _send_error(conn, current, "creating the env")
        _close_envs(envs)
        return

    send, recv = conn.send_bytes, conn.recv_bytes
    where = [lo, "step"]  # [env index, phase] of the env being stepped, for error messages
    while True:
        try:
            msg = recv()
        except (EOFError, OSError):  # the main process is gone
            break
        cmd = msg[:1]
        where[0], where[1] = (
            lo,
            {_CMD_STEP: "step", _CMD_RESET: "reset", _CMD_CALL: "call", _CMD_SET_ATTR: "set_attr"}.get(cmd, "?"),
        )
        try:
            if cmd == _CMD_STEP:
                payload = _step_block(envs, lo, act_buf.copy(), obs_buf, rew_buf, term_buf, trunc_buf, where)
                send(b"" if payload is None else _REPLY_DATA + _dumps(payload))
            elif cmd == _CMD_RESET:
                seeds, options, mask = pickle.loads(msg[1:])
                plain = _reset_block(envs, lo, seeds, options, mask, obs_buf, term_buf, trunc_buf, where)
                send(_REPLY_DATA + _dumps((plain, [])))
            elif cmd == _CMD_CALL:
                name, args, kwargs = cloudpickle.loads(msg[1:])
                send(_REPLY_DATA + _dumps(_call_block(envs, lo, name, args, kwargs, where)))
            elif cmd == _CMD_SET_ATTR:
                name, values = cloudpickle.loads(msg[1:])
                _set_attr_block(envs, lo, name, values, where)
                send(b"")
            elif cmd == _CMD_CLOSE:
                break
            else:
                raise RuntimeError(f"unknown command {cmd!r}")
        except (EOFError, BrokenPipeError):
            break
        except BaseException:
            if not _send_error(conn, where[0], where[1]):
                break
    _close_envs(envs)


def _step_block(envs, lo, actions, obs_buf, rew_buf, term_buf, trunc_buf, where) -> tuple | None:
    """Step envs ``lo .. lo + len(envs) - 1`` (same-step autoreset), writing their slices of
    the shared buffers. Returns ``None`` when no env produced an info, else the payload
    ``(plain infos as columns or (env index, info) pairs, finished envs)``. ``where`` is set
    to ``[env index, phase]`` before each env call, so a caller can name a failing env.
    Used by the workers and, for its own block, by the main process."""
    plain = None  # (env index, info) of envs that did not finish, with an info
    done = None  # (env index, reset info, final obs, final info) of finished envs
    for j in range(len(envs)):
        current = lo + j
        where[0], where[1] = current, "step"
        env = envs[j]
        obs, reward, terminated, truncated, info = env.step(actions[j])
        if terminated or truncated:
            final_obs, final_info = obs, info
            where[1] = "the autoreset after its episode ended"
            obs, info = env.reset()
            done = done or []
            done.append((current, info, final_obs, final_info))
        elif info:
            plain = plain or []
            plain.append((current, info))
        obs_buf[j] = obs
        rew_buf[j] = reward
        term_buf[j] = terminated
        trunc_buf[j] = truncated
    if plain is None and done is None:
        return None
    columns = _encode_columns(plain) if plain else {}
    return (columns, done or []) if columns is not None else (plain, done or [])


def _reset_block(envs, lo, seeds, options, mask, obs_buf, term_buf, trunc_buf, where) -> list[tuple[int, dict]]:
    """Reset the block's envs (those in ``mask``); their ``(env index, info)`` pairs."""
    plain = []
    for j in range(len(envs)):
        if mask is not None and not mask[j]:
            continue
        where[0], where[1] = lo + j, "reset"
        obs, info = envs[j].reset(seed=seeds[j], options=options)
        obs_buf[j] = obs
        term_buf[j] = False
        trunc_buf[j] = False
        plain.append((lo + j, info))
    return plain


def _call_block(envs, lo, name, args, kwargs, where) -> list:
    results = []
    for j in range(len(envs)):
        where[0], where[1] = lo + j, "call"
        attr = envs[j].get_wrapper_attr(name)
        results.append(attr(*args, **kwargs) if callable(attr) else attr)
    return results


def _set_attr_block(envs, lo, name, values, where) -> None:
    for j in range(len(envs)):
        where[0], where[1] = lo + j, "set_attr"
        envs[j].set_wrapper_attr(name, values[j])


def _send_error(conn, env_index: int, phase: str) -> bool:
    exc_type, exc, _ = sys.exc_info()
    payload = (env_index, phase, f"{exc_type.__name__}: {exc}", traceback.format_exc())
    try:
        conn.send_bytes(_REPLY_ERROR + pickle.dumps(payload, protocol=_PICKLE_PROTOCOL))
        return True
    except (OSError, EOFError):
        return False


def _close_envs(envs: list[gym.Env]) -> None:
    for env in envs:
        try:
            env.close()
        except Exception:
            pass


# --------------------------------------------------------------------------- main side


def _reply_waiter(conn) -> Callable[[float], bool]:
    """``wait(timeout_s) -> bool``: is a reply (or EOF) readable? One cheap syscall on POSIX."""
    if not hasattr(select, "poll"):
        return conn.poll
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return lambda timeout_s: bool(poller.poll(int(timeout_s * 1000)))


def _shutdown(procs: list, conns: list, timeout: float, main_envs: list | None = None) -> None:
    """Ask workers to stop, then terminate, then kill; close the main process's envs.
    Safe to call more than once."""
    if main_envs:
        envs, main_envs[:] = list(main_envs), []
        _close_envs(envs)
    for conn in conns:
        try:
            conn.send_bytes(_CMD_CLOSE)
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


class SubprocVecEnv(VectorEnv):
    """A same-step-autoreset vector env whose envs run on ``num_workers`` worker processes,
    plus (``in_main``) a block stepped by the main process while the workers step theirs.

    Args:
        env_fns: one constructor per env (any callable; shipped with cloudpickle).
        num_workers: worker processes, *not* counting the main process. Default: the
            number of usable CPUs, minus one when the main process steps envs too (it
            needs a core of its own), at least 1. Capped at the number of envs left to
            the workers. Each worker steps a contiguous, near-equal block of envs.
        in_main: how many envs the main process steps itself (the last ``in_main`` envs).
            ``step`` first sends the step command to the workers, then steps this block
            in-process, then collects the workers' replies: the main process's core is
            used instead of idling, and this block pays no pipe round trip or wake-up.
            ``None`` (default): ``default_in_main(num_envs, num_workers)``, a main block
            somewhat larger than a worker block (1.5x its share). ``0``: workers only.
            ``num_envs``: no workers at all (in-process stepping).
            Results (observations, infos, seeding) do not depend on ``num_workers`` or
            ``in_main``.
        start_method: ``"forkserver"`` (default where available), ``"spawn"`` or ``"fork"``.
        copy: return copies of the shared observation buffer (default). ``False`` returns
            the buffer itself, overwritten by the next ``step`` / ``reset``.
        poll_interval: seconds between liveness checks while waiting for a worker.
        close_timeout: seconds ``close()`` waits for workers before terminating them.

    ``reset(seed=s)`` seeds env ``i`` with ``s + i``. The spaces are read from one env
    built (and closed again) in the main process, as gymnasium's AsyncVectorEnv does.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        num_workers: int | None = None,
        *,
        in_main: int | None = None,
        start_method: str | None = None,
        copy: bool = True,
        poll_interval: float = 0.5,
        close_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        env_fns = list(env_fns)
        if not env_fns:
            raise ValueError("SubprocVecEnv needs at least one env constructor")
        self.num_envs = n = len(env_fns)
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if in_main is not None and not 0 <= in_main <= n:
            raise ValueError(f"in_main must be between 0 and num_envs={n}, got {in_main}")
        if num_workers is None:
            cpus = _default_num_workers()
            num_workers = cpus if in_main == 0 else max(1, cpus - 1)
        if in_main is None:
            in_main = default_in_main(n, num_workers)
        self.in_main = int(in_main)
        self.num_workers = min(int(num_workers), n - self.in_main)
        self._main_lo = n - self.in_main  # the main process steps envs _main_lo .. n - 1
        self._main_envs: list[gym.Env] = []
        self.copy = copy
        self.poll_interval = poll_interval
        self.close_timeout = close_timeout
        self.autoreset_mode = AutoresetMode.SAME_STEP
        self._procs: list = []
        self._conns: list = []
        self._pids: list[int] = []
        self._finalizer = None
        self._pending: list[int] = []  # workers whose reply to the last command is unread

        # Spaces and metadata from one env built here.
        dummy = env_fns[0]()
        try:
            self.single_observation_space = dummy.observation_space
            self.single_action_space = dummy.action_space
            self.metadata = dict(dummy.metadata)
            self.render_mode = dummy.render_mode
        finally:
            dummy.close()
        self.metadata["autoreset_mode"] = self.autoreset_mode
        _check_space(self.single_observation_space, "observation")
        _check_space(self.single_action_space, "action")
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        obs_template = create_empty_array(self.single_observation_space, n=self.num_envs, fn=np.zeros)
        act_template = create_empty_array(self.single_action_space, n=self.num_envs, fn=np.zeros)
        layout = {
            "obs": (obs_template.shape, obs_template.dtype.str),
            "actions": (act_template.shape, act_template.dtype.str),
            "rewards": ((n,), np.dtype(np.float64).str),
            "terminated": ((n,), np.dtype(np.bool_).str),
            "truncated": ((n,), np.dtype(np.bool_).str),
        }
        ctx = mp.get_context(start_method) if start_method else _default_context()
        self._buffers = _Buffers.allocate(ctx, layout)
        arrays = self._buffers.arrays
        self._obs_buf = arrays["obs"]
        self._act_buf = arrays["actions"]
        self._rew_buf = arrays["rewards"]
        self._term_buf = arrays["terminated"]
        self._trunc_buf = arrays["truncated"]

        bounds = np.linspace(0, self._main_lo, self.num_workers + 1).round().astype(int)
        self._bounds = [(int(bounds[w]), int(bounds[w + 1])) for w in range(self.num_workers)]
        spaces_bytes = cloudpickle.dumps((self.single_observation_space, self.single_action_space))
        # The finalizer holds the process and pipe lists (never self), so it can run at gc.
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._conns, close_timeout, self._main_envs)
        try:
            for w, (lo, hi) in enumerate(self._bounds):
                parent_conn, child_conn = ctx.Pipe(duplex=True)
                proc = ctx.Process(
                    target=_worker,
                    name=f"SubprocVecEnv-worker-{w}",
                    args=(
                        w,
                        child_conn,
                        cloudpickle.dumps(env_fns[lo:hi]),
                        lo,
                        self._buffers.raws,
                        layout,
                        spaces_bytes,
                    ),
                    daemon=True,
                )
                proc.start()
                child_conn.close()  # our copy: the worker's death then shows as EOF here
                self._procs.append(proc)
                self._pids.append(proc.pid)
                self._conns.append(parent_conn)
            self._waiters = [_reply_waiter(conn) for conn in self._conns]
            self._pending = list(range(self.num_workers))
            self._build_main_envs(env_fns)  # while the workers build theirs
            self._gather("creating the envs")
        except BaseException:
            self.close(timeout=1.0)
            raise

    # ----------------------------------------------------------------- plumbing

    def _build_main_envs(self, env_fns) -> None:
        lo = self._main_lo
        where = [lo, "creating the env"]
        try:
            for i in range(lo, self.num_envs):
                where[0] = i
                env = env_fns[i]()
                self._main_envs.append(env)
                if (
                    env.observation_space != self.single_observation_space
                    or env.action_space != self.single_action_space
                ):
                    raise RuntimeError(
                        f"env {i} has observation space {env.observation_space} and action space "
                        f"{env.action_space}, but env 0 has {self.single_observation_space} and "
                        f"{self.single_action_space}; all envs of a vector env must have the same spaces"
                    )
        except Exception as e:
            raise self._main_error(e, where) from e

    def _main_slices(self) -> tuple:
        lo = self._main_lo
        return self._obs_buf[lo:], self._rew_buf[lo:], self._term_buf[lo:], self._trunc_buf[lo:]

    @staticmethod
    def _main_error(exc: BaseException, where: list) -> EnvWorkerError:
        """The EnvWorkerError for ``exc``, raised by env ``where[0]`` of the main block."""
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return EnvWorkerError(
            f"env {where[0]} (main process) raised during {where[1]}: {type(exc).__name__}: {exc}\n"
            f"--- traceback ---\n{tb.rstrip()}",
            env_index=where[0],
            worker_index=None,
            traceback_text=tb,
        )

    def _finish(self, what: str, main_exc: BaseException | None, where: list, *, fatal: bool):
        """After the main block ran: the workers' replies (their errors first: lower env
        indices), then the main block's error, if any."""
        if main_exc is None:
            return self._gather(what, fatal=fatal)
        err = self._main_error(main_exc, where)
        try:
            self._gather(what, fatal=fatal)
        finally:
            if fatal:
                self.close(timeout=1.0)
        raise err from main_exc

    def _died(self, w: int, what: str) -> EnvWorkerError:
        proc = self._procs[w]
        proc.join(0.1)
        code = proc.exitcode
        lo, hi = self._bounds[w]
        if code is not None and code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        elif code is not None:
            how = f"exited with code {code}"
        else:
            how = "closed its pipe"
        return EnvWorkerError(
            f"SubprocVecEnv worker {w} (pid {proc.pid}, envs {lo}..{hi - 1}) {how} while {what}; "
            "its envs are lost and the vector env was closed",
            env_index=None,
            worker_index=w,
        )

    def _fatal(self, exc: EnvWorkerError) -> None:
        """Close everything (the envs' state is unknown now), then raise ``exc``."""
        self.close(timeout=1.0)
        raise exc

    def _recv(self, w: int, what: str) -> bytes:
        """One reply from worker ``w``; a dead worker is fatal."""
        wait, conn, proc = self._waiters[w], self._conns[w], self._procs[w]
        while not wait(self.poll_interval):
            if not proc.is_alive():
                self._fatal(self._died(w, what))
        try:
            return conn.recv_bytes()
        except (EOFError, OSError):
            pass  # raised below, outside the handler, so no EOFError shows as its context
        self._fatal(self._died(w, what))
        raise AssertionError("unreachable")

    def _gather(self, what: str, *, fatal: bool = True, drain: bool = False) -> list[bytes]:
        """Read the pending reply of every worker, in order.

        An error reply raises EnvWorkerError at once, without waiting for the other workers
        (their replies stay pending and are discarded before the next command); with
        ``fatal`` the vector env is closed first. ``drain`` ignores error replies (they
        belong to a call whose error was already raised).
        """
        replies: list[bytes] = [b""] * self.num_workers
        while self._pending:
            w = self._pending[0]
            reply = self._recv(w, what)  # an interrupt here leaves w pending: nothing is lost
            self._pending.pop(0)
            if reply[:1] == _REPLY_ERROR:
                if drain:
                    continue
                env_index, phase, summary, tb = pickle.loads(reply[1:])
                exc = EnvWorkerError(
                    f"env {env_index} (worker {w}) raised during {phase}: {summary}\n"
                    f"--- worker traceback ---\n{tb.rstrip()}",
                    env_index=env_index,
                    worker_index=w,
                    traceback_text=tb,
                )
                if fatal:
                    self._fatal(exc)
                raise exc
            replies[w] = reply
        return replies

    def _gather_infos(self, what: str, main_payload: tuple | None = None, main_exc=None, where=None) -> dict[str, Any]:
        """The workers' replies and the main block's payload (last: its envs come last) as
        one vectorised info dict, exactly as SyncVectorEnv builds it."""
        replies = [pickle.loads(reply[1:]) for reply in self._finish(what, main_exc, where, fatal=True) if reply]
        if main_payload is not None:
            replies.append(main_payload)
        if not replies:
            return {}
        if all(isinstance(plain, dict) and not done for plain, done in replies):
            infos = _columns_to_infos([plain for plain, _ in replies], self.num_envs)
            if infos is not None:
                return infos
        entries: list[tuple] = []  # (env index, info, final obs, final info, done)
        for plain, done in replies:
            if isinstance(plain, dict):
                plain = _decode_columns(plain)
            entries.extend((i, info, None, None, False) for i, info in plain)
            entries.extend((i, info, final_obs, final_info, True) for i, info, final_obs, final_info in done)
        entries.sort(key=lambda entry: entry[0])
        infos = {}
        for env_index, info, final_obs, final_info, finished in entries:
            if finished:
                infos = self._add_info(infos, {"final_obs": final_obs, "final_info": final_info}, env_index)
            infos = self._add_info(infos, info, env_index)
        return infos

    def _begin(self) -> None:
        """Before a command: refuse when closed; drop replies of an interrupted command."""
        if self.closed:
            raise RuntimeError("SubprocVecEnv is closed")
        if self._pending:  # e.g. Ctrl-C arrived while waiting for the last step
            self._gather("finishing an interrupted command", drain=True)

    def _send(self, w: int, msg: bytes) -> None:
        try:
            self._conns[w].send_bytes(msg)
            self._pending.append(w)
            return
        except (OSError, ValueError):
            pass
        self._fatal(self._died(w, "receiving a command"))

    # ----------------------------------------------------------------- VectorEnv API

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset all envs (or those in ``options["reset_mask"]``); ``seed=s`` gives env ``i`` ``s + i``."""
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"reset(seed=[...]) needs num_envs={n} seeds, got {len(seeds)}")
        mask = None
        if options is not None and "reset_mask" in options:
            options = dict(options)
            mask = np.asarray(options.pop("reset_mask"))
            if mask.shape != (n,) or mask.dtype != np.bool_:
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}"
                )
            if not mask.any():
                raise ValueError("options['reset_mask'] must select at least one env")
        self._begin()
        for w, (lo, hi) in enumerate(self._bounds):
            payload = (seeds[lo:hi], options, None if mask is None else mask[lo:hi])
            self._send(w, _CMD_RESET + cloudpickle.dumps(payload))
        main_payload = main_exc = None
        where = [self._main_lo, "reset"]
        if self._main_envs:
            lo = self._main_lo
            obs_buf, _, term_buf, trunc_buf = self._main_slices()
            try:
                plain = _reset_block(
                    self._main_envs,
                    lo,
                    seeds[lo:],
                    options,
                    None if mask is None else mask[lo:],
                    obs_buf,
                    term_buf,
                    trunc_buf,
                    where,
                )
                main_payload = (plain, [])
            except Exception as e:
                main_exc = e
        infos = self._gather_infos("resetting", main_payload, main_exc, where)
        obs = self._obs_buf.copy() if self.copy else self._obs_buf
        return obs, infos

    def step(self, actions):
        """Step every env; finished episodes are reset at once (same-step autoreset)."""
        act = np.asarray(actions)
        if act.shape != self._act_buf.shape:
            try:
                act = act.reshape(self._act_buf.shape)
            except ValueError:
                raise ValueError(
                    f"actions of shape {np.shape(actions)} do not fit action space {self.action_space}"
                ) from None
        self._begin()
        self._act_buf[...] = act
        for w in range(self.num_workers):
            self._send(w, _CMD_STEP)
        main_payload = main_exc = None
        where = [self._main_lo, "step"]
        if self._main_envs:  # while the workers step theirs
            lo = self._main_lo
            obs_buf, rew_buf, term_buf, trunc_buf = self._main_slices()
            try:
                main_payload = _step_block(
                    self._main_envs, lo, self._act_buf[lo:].copy(), obs_buf, rew_buf, term_buf, trunc_buf, where
                )
            except Exception as e:
                main_exc = e
        infos = self._gather_infos("stepping", main_payload, main_exc, where)
        return (
            self._obs_buf.copy() if self.copy else self._obs_buf,
            self._rew_buf.copy(),
            self._term_buf.copy(),
            self._trunc_buf.copy(),
            infos,
        )

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call (or read, if not callable) ``name`` on every env; results in env order.

        An exception in an env raises EnvWorkerError but leaves the vector env usable.
        """
        self._begin()
        msg = _CMD_CALL + cloudpickle.dumps((name, args, kwargs))
        for w in range(self.num_workers):
            self._send(w, msg)
        main_results, main_exc, where = [], None, [self._main_lo, "call"]
        if self._main_envs:
            try:
                main_results = _call_block(self._main_envs, self._main_lo, name, args, kwargs, where)
            except Exception as e:
                main_exc = e
        replies = self._finish(f"calling {name!r}", main_exc, where, fatal=False)
        return tuple(r for reply in replies for r in pickle.loads(reply[1:])) + tuple(main_results)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return self.call(name)

    def set_attr(self, name: str, values: Any) -> None:
        """Set ``name`` on every env: one value each (list/tuple of num_envs) or the same one."""
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"set_attr needs num_envs={self.num_envs} values, got {len(values)}")
        self._begin()
        for w, (lo, hi) in enumerate(self._bounds):
            self._send(w, _CMD_SET_ATTR + cloudpickle.dumps((name, list(values[lo:hi]))))
        main_exc, where = None, [self._main_lo, "set_attr"]
        if self._main_envs:
            try:
                _set_attr_block(self._main_envs, self._main_lo, name, list(values[self._main_lo :]), where)
            except Exception as e:
                main_exc = e
        self._finish(f"setting {name!r}", main_exc, where, fatal=False)

    def render(self) -> tuple[Any, ...]:
        return self.call("render")

    @property
    def worker_pids(self) -> list[int]:
        """The pids of the worker processes (for monitoring and tests; kept after close)."""
        return list(self._pids)

    def close_extras(self, timeout: float | None = None, **kwargs: Any) -> None:
        """Stop the workers: ask, wait ``timeout`` (default ``close_timeout``), terminate, kill.
        Close the envs of the main process."""
        if self._finalizer is not None and self._finalizer.alive:
            self._finalizer.detach()
            _shutdown(self._procs, self._conns, self.close_timeout if timeout is None else timeout, self._main_envs)
        self._pending = []

    def __del__(self) -> None:
        try:
            if not getattr(self, "closed", True):
                self.close(timeout=1.0)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"SubprocVecEnv(num_envs={self.num_envs}, num_workers={self.num_workers}, in_main={self.in_main})"


# --------------------------------------------------------------------------- choosing

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


#: Per vector step, what a worker costs beyond its env steps: the pipe round trip and its
#: wake-up (~70 us with a no-op env on the 2-core development VM, ~120 us with MuJoCo infos).
SUBPROC_ROUND_TRIP_S = 120e-6
#: Envs step this much slower in a worker that sleeps between commands (cold caches).
WORKER_SLOWDOWN = 1.3
#: ``auto`` takes ``subproc`` only when it is predicted this much faster than ``sync``: other
#: load on the machine hurts the processes of ``subproc`` much more than one ``sync`` process.
AUTO_MIN_SPEEDUP = 1.1


def predicted_step_time(num_envs: int, t: float, num_workers: int, in_main: int) -> float:
    """Seconds per vector step of ``SubprocVecEnv(num_workers, in_main)`` for envs whose step
    takes ``t`` seconds in-process: the slower of the main block and the largest worker block."""
    workers = min(num_workers, num_envs - in_main)
    main = in_main * t
    if workers <= 0:
        return main
    per_worker = -(-(num_envs - in_main) // workers)
    return max(main, per_worker * t * WORKER_SLOWDOWN + SUBPROC_ROUND_TRIP_S)


def measure_step_time(
    env_fn: Callable[[], gym.Env], *, warmup: int = 5, steps: int = 50, budget_s: float = 0.05
) -> float:
    """Median seconds per ``step`` (random actions) of one env built here.

    The median, so that a preemption by another process during one step does not count.
    """
    env = env_fn()
    try:
        env.reset(seed=0)
        env.action_space.seed(0)
        times: list[float] = []
        spent = 0.0
        for i in range(warmup + steps):
            action = env.action_space.sample()
            start = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(action)
            elapsed = time.perf_counter() - start
            if terminated or truncated:
                env.reset()
            if i >= warmup:
                times.append(elapsed)
                spent += elapsed
                if spent > budget_s:
                    break
        return float(np.median(times))
    finally:
        env.close()


def choose_vec_env(env_fn: Callable[[], gym.Env], num_envs: int, num_workers: int | None = None) -> str:
    """``"subproc"`` if ``SubprocVecEnv(num_workers=num_workers)`` (default split, main block
    included) is expected to be faster than in-process stepping, else ``"sync"``.

    ``t`` (one env step) is timed here on one env; ``sync`` costs ``N * t`` per vector step,
    ``subproc`` ``predicted_step_time`` (the slower of the main block, ``in_main * t``, and a
    worker block, ``n * t * WORKER_SLOWDOWN + SUBPROC_ROUND_TRIP_S``). ``subproc`` when that
    is at least ``AUTO_MIN_SPEEDUP`` times faster. Always ``sync`` for one env or, with the
    default ``num_workers``, one CPU. On 2 cores (1 worker + the main process, 5 of 8 envs in
    the main process): ``sync`` for classic control (CartPole, t ~ 10 us), ``subproc`` for
    MuJoCo x8 (t ~ 45 us: 295 against 360 us predicted) and Atari (t ~ 400 us).
    """
    if num_envs <= 1 or (num_workers is None and _default_num_workers() <= 1):
        return "sync"
    workers = num_workers if num_workers is not None else max(1, _default_num_workers() - 1)
    in_main = default_in_main(num_envs, workers)
    t = measure_step_time(env_fn)
    return (
        "subproc" if num_envs * t >= AUTO_MIN_SPEEDUP * predicted_step_time(num_envs, t, workers, in_main) else "sync"
    )
