"""a2c_ppo: multi-process, vectorized on-policy RL (PPO, A2C, ACKTR) in PyTorch.

The library face (see the README's Python API)::

    import a2c_ppo
    result = a2c_ppo.train("CartPole-v1", num_env_steps=50_000)
    agent = a2c_ppo.load(result.checkpoint)
    action = agent.act(observation)

``train``, ``load`` and the rest are imported on first use, so that ``import a2c_ppo`` (and
``python main.py``'s first moments, before its Ctrl-C handling is in place) stay light.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports them
    from a2c_ppo.agent import Agent
    from a2c_ppo.api import load, train
    from a2c_ppo.callbacks import UpdateInfo
    from a2c_ppo.errors import ConfigError
    from a2c_ppo.session import TrainResult

__version__ = "0.2.0"

_EXPORTS = {
    "train": "a2c_ppo.api",
    "load": "a2c_ppo.api",
    "Agent": "a2c_ppo.agent",
    "TrainResult": "a2c_ppo.session",
    "ConfigError": "a2c_ppo.errors",
    "UpdateInfo": "a2c_ppo.callbacks",
}


def __getattr__(name: str) -> _Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'a2c_ppo' has no attribute {name!r}")


def __dir__() -> list[str]:
    """Tab completion and ``dir()`` list the exports, which are imported on first use."""
    return sorted([*(name for name in globals() if not name.startswith("_") or name.startswith("__")), *_EXPORTS])


__all__ = ["Agent", "ConfigError", "TrainResult", "UpdateInfo", "load", "train"]  # _EXPORTS' names
