"""Hyper-parameter presets per task family and algorithm.

A run's settings come from, in order of precedence: the flags the user typed, the preset's
column for ``--algo``, then ``COMMON_DEFAULTS``. ``--preset auto`` picks ``atari`` for Atari
ids, ``mujoco`` for continuous control (1-D Box observations and Box actions) and ``classic``
otherwise.

* classic: tuned so ``python main.py`` solves CartPole-v1 (PPO within 100k steps; A2C and
  ACKTR within 300k, docs/BENCHMARKS.md).
* mujoco: the PPO paper's MuJoCo settings (1 env x 2048 steps, 10 epochs x 32 minibatches,
  lr 3e-4 decayed, lambda 0.95, observation and return normalisation, 1M steps).
* atari: PPO's Atari settings (8 envs x 128 steps, clip 0.1, 4 epochs x 4 minibatches, entropy
  0.01, 10M steps); A2C with 16 envs x 5 steps; ACKTR's paper settings (32 envs x 20 steps).
"""

from __future__ import annotations

from typing import Any

PRESETS = ("classic", "mujoco", "atari")

#: Values every preset starts from.
COMMON_DEFAULTS: dict[str, Any] = {
    "eps": 1e-5,
    "alpha": 0.99,
    "use_gae": True,
    "value_loss_coef": 0.5,
    "max_grad_norm": 0.5,
    "clip_param": 0.2,
    "clip_value_loss": True,
    "use_linear_lr_decay": True,
    "use_proper_time_limits": True,
    "entropy_coef": 0.0,
    "ppo_epoch": 1,
    "num_mini_batch": 1,
    "norm_adv": False,
}

_CLASSIC = {"num_processes": 8, "gamma": 0.98}
_MUJOCO = {"gamma": 0.99, "gae_lambda": 0.95, "norm_obs": True, "norm_reward": True, "num_env_steps": 1_000_000}
_ATARI = {"gamma": 0.99, "gae_lambda": 0.95, "entropy_coef": 0.01, "norm_obs": False, "norm_reward": False}

#: ``PRESET_VALUES[preset][algo]``: the values a preset gives on top of COMMON_DEFAULTS.
PRESET_VALUES: dict[str, dict[str, dict[str, Any]]] = {
    "classic": {
        "ppo": {**_CLASSIC, "lr": 1e-3, "num_steps": 32, "ppo_epoch": 20, "gae_lambda": 0.8, "norm_adv": True,
                "num_env_steps": 100_000},
        "a2c": {**_CLASSIC, "lr": 7e-4, "num_steps": 5, "gae_lambda": 0.95, "num_env_steps": 300_000},
        "acktr": {**_CLASSIC, "lr": 0.25, "num_steps": 20, "gae_lambda": 0.95, "num_env_steps": 300_000},
    },
    "mujoco": {
        "ppo": {**_MUJOCO, "num_processes": 1, "num_steps": 2048, "lr": 3e-4, "ppo_epoch": 10, "num_mini_batch": 32,
                "norm_adv": True},
        "a2c": {**_MUJOCO, "num_processes": 8, "num_steps": 5, "lr": 7e-4},
        "acktr": {**_MUJOCO, "num_processes": 1, "num_steps": 2048, "lr": 0.25},
    },
    "atari": {
        "ppo": {**_ATARI, "num_processes": 8, "num_steps": 128, "lr": 2.5e-4, "clip_param": 0.1, "ppo_epoch": 4,
                "num_mini_batch": 4, "norm_adv": True, "num_env_steps": 10_000_000},
        "a2c": {**_ATARI, "num_processes": 16, "num_steps": 5, "lr": 7e-4, "num_env_steps": 10_000_000},
        "acktr": {**_ATARI, "num_processes": 32, "num_steps": 20, "lr": 0.25, "num_env_steps": 10_000_000},
    },
}  # fmt: skip

#: The settings a preset decides (shown in --help).
PRESET_KEYS = sorted({key for table in PRESET_VALUES.values() for col in table.values() for key in col})


def preset_values(preset: str, algo: str) -> dict[str, Any]:
    """COMMON_DEFAULTS overlaid with ``preset``'s column for ``algo``."""
    return {**COMMON_DEFAULTS, **PRESET_VALUES[preset][algo]}


def auto_preset(observation_space: Any, action_space: Any, is_atari: bool) -> str:
    """``atari`` for Atari ids, ``mujoco`` for continuous control, else ``classic``."""
    from a2c_ppo.envs.make import is_continuous_control

    if is_atari:
        return "atari"
    return "mujoco" if is_continuous_control(observation_space, action_space) else "classic"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and value >= 100_000:
        return f"{value:,}"
    return str(value)


def presets_table() -> str:
    """A text table of every preset's values per algorithm, for ``--help``."""
    columns = [(preset, algo) for preset in PRESETS for algo in ("ppo", "a2c", "acktr")]
    header = ["setting"] + [f"{p}/{a}" for p, a in columns]
    rows = [header]
    for key in PRESET_KEYS:
        rows.append(["--" + key.replace("_", "-")] + [_show(preset_values(p, a).get(key, "auto")) for p, a in columns])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
