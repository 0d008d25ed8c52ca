"""``python -m a2c_ppo.export CHECKPOINT OUT.onnx``: the ONNX export (``onnx_export``), with a
Ctrl-C or SIGTERM while torch loads ended in one line, as ``main.py`` and ``enjoy.py`` end it."""

import os
import signal
import sys
from typing import NoReturn

from a2c_ppo.signals import Interrupted, StopSignals
from a2c_ppo.startup import imports_holding_signals


def exit_now(code: int) -> NoReturn:
    """Exit with ``code``, the streams flushed, without the interpreter's exit. Under ``python
    -m``, CPython ends a program by SIGINT itself (a return code of -2, not 130) once a Ctrl-C has
    landed in Python code that a C extension ran (torch's tracer calling the policy), though the
    KeyboardInterrupt was caught; a stopped export has nothing left to finish (OUT is written
    whole or not at all)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    try:
        with imports_holding_signals():
            from a2c_ppo.onnx_export import main
    except Interrupted as stop:
        sys.stderr.write(f"Stopped by {stop.key}.\n")
        exit_now(stop.exit_code)
    try:
        code = main()
    finally:  # a signal after the export must not interrupt the interpreter's exit (torch's teardown)
        for signum in StopSignals.SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
    if code in (128 + signum for signum in StopSignals.SIGNALS):
        exit_now(code)
    sys.exit(code)
