"""``python -m a2c_ppo.export CHECKPOINT OUT.onnx``: the ONNX export (``onnx_export``), with a
Ctrl-C while torch loads ended in one line, as ``main.py`` and ``enjoy.py`` end it."""

import signal
import sys

from a2c_ppo.startup import collector_paused

if __name__ == "__main__":
    try:
        with collector_paused():
            from a2c_ppo.onnx_export import main
    except KeyboardInterrupt:
        sys.stderr.write("Stopped by Ctrl-C.\n")
        sys.exit(130)
    try:
        code = main()
    finally:  # a Ctrl-C after the export must not interrupt the interpreter's exit (torch's teardown)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)
