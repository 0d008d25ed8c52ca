"""The worker command protocol, and the one error type a failing env or worker becomes.

Main -> worker: one command byte, then (where the command has one) a pickled payload.
Worker -> main: ``b""`` for "done, nothing to say", ``REPLY_DATA`` + a pickled result, or
``REPLY_ERROR`` + a pickled :func:`error_report`.
"""

from __future__ import annotations

import pickle
import sys
import traceback
from typing import Any

import cloudpickle

from a2c_ppo.envs.subproc.step_values import wrapper_values_error

CMD_STEP = b"s"  # payload: None (the whole block) or (start, stop), global env indices
CMD_RESET = b"r"  # payload: (seeds, options, mask), seeds and mask cut to the block
CMD_CALL = b"k"  # payload: (name, args, kwargs)
CMD_SET_ATTR = b"a"  # payload: (name, values), values cut to the block
CMD_CLOSE = b"c"


REPLY_DATA = b"d"
REPLY_ERROR = b"e"

ErrorReport = tuple[int, str, str, str, str]  # (env index, phase, exception type name, message, traceback)


def dumps(obj: Any) -> bytes:
    """Pickle, falling back to cloudpickle for lambdas or local classes (in infos, call args)."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def encode_command(cmd: bytes, payload: Any = None) -> bytes:
    return cmd if payload is None else cmd + dumps(payload)


def decode_command(msg: bytes) -> tuple[bytes, Any]:
    return msg[:1], (pickle.loads(msg[1:]) if len(msg) > 1 else None)


def encode_reply(result: Any) -> bytes:
    return b"" if result is None else REPLY_DATA + dumps(result)


def error_report(env_index: int, phase: str) -> ErrorReport:
    """The exception being handled, as plain data that crosses the pipe; where a wrapper raised
    it using a value the env's step returned, the report names the env and that value instead
    (``step_values``: found here, on the failure path, so that the step pays nothing)."""
    exc_type, exc, _ = sys.exc_info()
    name = exc_type.__name__ if exc_type is not None else "Exception"
    explained = wrapper_values_error(env_index, exc) if exc is not None and phase == "step" else None
    if explained is not None:
        name, exc = type(explained).__name__, explained
    return env_index, phase, name, str(exc), traceback.format_exc()


class EnvWorkerError(RuntimeError):
    """An env raised, or its worker process died. Carries where and the worker's traceback.

    Attributes: ``env_index`` (the failing env, or ``None`` when only the worker is known),
    ``worker_index`` (``None`` for an env stepped in the main process, see ``in_main``),
    ``traceback_text`` (the env's traceback, ``""`` if its worker died), ``error_type`` (the
    class name of the env's exception, e.g. ``"UnsupportedEnvState"``; ``""`` if it died).
    """

    def __init__(
        self,
        message: str,
        *,
        env_index: int | None,
        worker_index: int | None,
        traceback_text: str = "",
        error_type: str = "",
    ) -> None:
        super().__init__(message)
        self.env_index = env_index
        self.worker_index = worker_index
        self.traceback_text = traceback_text
        self.error_type = error_type

    @classmethod
    def from_report(cls, report: ErrorReport, worker_index: int | None) -> EnvWorkerError:
        """An env's exception, reported by worker ``worker_index`` (``None``: the main process)."""
        env_index, phase, error_type, message, tb = report
        where = "main process" if worker_index is None else f"worker {worker_index}"
        what = f"did not return from {phase}: {message}" if error_type == "EnvTimeout" else (
            f"raised during {phase}: {error_type}: {message}"
        )  # fmt: skip
        return cls(
            f"env {env_index} ({where}) {what}\n--- traceback ---\n{tb.rstrip()}",
            env_index=env_index,
            worker_index=worker_index,
            traceback_text=tb,
            error_type=error_type,
        )

    @classmethod
    def worker_died(cls, worker_index: int, pid: int | None, envs: range, how: str, what: str) -> EnvWorkerError:
        return cls(
            f"SubprocVecEnv worker {worker_index} (pid {pid}, envs {envs.start}..{envs.stop - 1}) {how} while "
            f"{what}; its envs are lost and the vector env was closed",
            env_index=None,
            worker_index=worker_index,
        )
