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


def test_the_package_ships_its_annotations_and_names_its_exports_for_type_checkers():
    """PEP 561's marker goes into the wheel; the imports type checkers see (under TYPE_CHECKING)
    are the lazy exports, each from the module it is loaded from."""
    import ast

    import a2c_ppo

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-data"]["a2c_ppo"] == ["py.typed"] and (ROOT / "a2c_ppo" / "py.typed").is_file()
    tree = ast.parse((ROOT / "a2c_ppo" / "__init__.py").read_text())
    (block,) = [node for node in tree.body if isinstance(node, ast.If)]
    seen = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert seen == a2c_ppo._EXPORTS
    assert sorted(a2c_ppo.__all__) == sorted(a2c_ppo._EXPORTS) and set(a2c_ppo.__all__) <= set(dir(a2c_ppo))
    assert all(getattr(a2c_ppo, name) is not None for name in a2c_ppo.__all__)
