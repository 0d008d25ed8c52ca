"""Packaging: the setup.py shim, the extras the README promises, the console script."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the project supports 3.10 too

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]


def test_setup_py_is_a_thin_shim():
    code = [line for line in (ROOT / "setup.py").read_text().splitlines() if line and not line.startswith('"""')]
    assert code == ["from setuptools import setup", "setup()"]


def test_extras_cover_what_the_readme_promises():
    readme = (ROOT / "README.md").read_text()
    promised = set(re.findall(r"\|\s*`\[(\w+)\]`", readme))
    for group in re.findall(r"\.\[([\w,]+)\]", readme):
        promised.update(group.split(","))
    assert promised and promised <= set(EXTRAS)


def test_extras_contents():
    assert any(dep.startswith("gymnasium[mujoco]") for dep in EXTRAS["mujoco"])
    assert any(dep.startswith("matplotlib") for dep in EXTRAS["plot"])
    assert any(dep.startswith("stable-baselines3") for dep in EXTRAS["bench"])
    assert any(dep.startswith("stable-baselines3") for dep in EXTRAS["test"])  # the parity tests
    (everything,) = EXTRAS["all"]
    included = set(everything.split("[")[1].rstrip("]").split(","))
    # [bench] is a peer; [envpool] is 700 MB (CI leaves it out)
    assert included == {"atari", "mujoco", "box2d", "video", "plot", "wandb", "onnx", "test"}


def test_console_scripts_resolve():
    for target in PROJECT["scripts"].values():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr))
