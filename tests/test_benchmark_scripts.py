"""The benchmark scripts still import what they use from the package: a rename in ``a2c_ppo``
that one of them missed broke it only when someone next ran it (CI runs no benchmark)."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_benchmark_module_imports():
    names = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "benchmarks")) if f.endswith(".py"))
    assert "throughput" in names and "memory" in names
    # one fresh process (the scripts set up paths and variables as they import), no script's main
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module('benchmarks.' + name)"
    done = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
