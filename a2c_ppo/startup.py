"""A command's start-up: without the cyclic garbage collector's rescans, and (for ``enjoy.py``
and the export) with Ctrl-C held until the imports are done (``imports_holding_signals``).

Importing torch, gymnasium and the rest creates a few hundred thousand objects that all live
until the program ends. While they are being created, every full collection the growing heap
triggers walks all of them again: measured on the 2-core machine of docs/BENCHMARKS.md, about
0.4 s of the 2 s from ``python main.py`` to its first line. Nothing imported is garbage, so the
collector is paused for the imports, and what they created is then moved to the permanent
generation (``gc.freeze``), where the full collections of the training loop skip it too.
The cyclic garbage the imports leave (about 0.7 MB of functions and tuples for ``main.py``,
once, no env) is frozen with them: freeing it would take a full collection, 0.16 s.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (imports), then freeze what exists and
    resume it, also when the block raises. A collector the caller had disabled stays so."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


@contextmanager
def imports_holding_signals() -> Iterator[None]:
    """``collector_paused`` with Ctrl-C and SIGTERM held until the block ends, then raised
    (``signals.Interrupted``), as ``main.py``'s start-up holds them: C++ extensions (torch's)
    run Python code as they initialise, where the exception a signal raises aborts the process
    (pybind11: "terminate called") or is lost. A second signal raises at once."""
    from a2c_ppo.signals import StopSignals

    with StopSignals() as signals, signals.deferred(escalate=True), collector_paused():
        yield
