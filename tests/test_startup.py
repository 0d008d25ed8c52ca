"""The start-up's pause of the garbage collector (``startup.py``) always ends: a program left
without its collector would grow without bound on cyclic garbage."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

from a2c_ppo.cli import train_main
from a2c_ppo.startup import collector_paused


@pytest.fixture(autouse=True)
def restore_collector() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_pauses_then_freezes_and_resumes() -> None:
    gc.enable()
    gc.unfreeze()
    with collector_paused():
        assert not gc.isenabled()
        survivor = [{"made": "during the block"}]
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    assert survivor not in gc.get_objects(), "the block's objects are frozen, out of the collector's generations"


def test_resumes_when_the_block_raises() -> None:
    gc.enable()
    with pytest.raises(ImportError), collector_paused():
        raise ImportError("no such module")
    assert gc.isenabled()


def test_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_main_resumes_the_collector_after_start_up(capsys: pytest.CaptureFixture[str]) -> None:
    gc.enable()
    assert train_main(["--env-name", "CartPole-v1", "--show-settings"]) == 0
    assert "CartPole-v1" in capsys.readouterr().out
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


def test_a_signal_during_the_imports_is_raised_after_them() -> None:
    """enjoy.py's and the export's start-up, as main.py's: a Ctrl-C landing in a C++ extension's
    initialisation (torch's) aborted the process ("terminate called") or was lost."""
    import os
    import signal

    from a2c_ppo.signals import Interrupted
    from a2c_ppo.startup import imports_holding_signals

    finished, before = False, signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as stop:
        with imports_holding_signals():
            os.kill(os.getpid(), signal.SIGINT)
            finished = True  # the block runs to its end first
    assert finished and stop.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) == before


PYRUN_INTERRUPTED = """
import ctypes, os, signal, sys
from a2c_ppo.export import exit_now
signal.setitimer(signal.ITIMER_REAL, 0.2)
signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
try:  # Python code run by C code, as torch's tracer runs the policy
    ctypes.pythonapi.PyRun_String(b"import time\\nfor _ in range(50): time.sleep(0.1)\\n", 257,
                                  ctypes.py_object({}), ctypes.py_object({}))
except KeyboardInterrupt:
    pass
exit_now(130) if sys.argv[1] == "exit_now" else sys.exit(130)
"""


def test_an_export_stopped_by_ctrl_c_exits_130_under_python_m(tmp_path) -> None:
    """CPython run with -m ends by SIGINT itself (-2) after a caught Ctrl-C that landed in Python
    code a C extension ran; the export, run as ``python -m a2c_ppo.export``, exits 130 all the same."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    (tmp_path / "pyrun_interrupted.py").write_text(PYRUN_INTERRUPTED)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    codes = [subprocess.run([sys.executable, "-m", "pyrun_interrupted", how], env=env, timeout=60).returncode
             for how in ("sys.exit", "exit_now")]  # fmt: skip
    assert codes == [-2, 130]
