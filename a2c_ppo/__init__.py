"""a2c_ppo: multi-process, vectorized on-policy RL (PPO, A2C, ACKTR) in PyTorch.

The library face (see the README's Python API)::

    import a2c_ppo
    result = a2c_ppo.train("CartPole-v1", num_env_steps=50_000)
    agent = a2c_ppo.load(result.checkpoint)
    action = agent.act(observation)

``train``, ``load`` and the rest are imported on first use, so that ``import a2c_ppo`` (and
``python main.py``'s first moments, before its Ctrl-C handling is in place) stay light.
"""

from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "train": "a2c_ppo.api",
    "load": "a2c_ppo.api",
    "Agent": "a2c_ppo.api",
    "TrainResult": "a2c_ppo.session",
    "ConfigError": "a2c_ppo.errors",
    "UpdateInfo": "a2c_ppo.callbacks",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'a2c_ppo' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
