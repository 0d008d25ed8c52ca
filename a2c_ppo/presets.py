"""Hyper-parameter presets per task family and algorithm.

A run's settings come from, in order of precedence: the flags the user typed, the env's own
entry for ``--algo`` (``ENV_ENTRIES``: published tuned settings of popular ids), the family
preset's column for ``--algo``, then the declared defaults (``config.py``). ``--preset auto`` picks
``atari`` for Atari ids, ``mujoco`` for continuous control (1-D Box observations and Box
actions) and ``classic`` otherwise.

* classic: tuned so ``python main.py`` solves CartPole-v1 (PPO within 100k steps; A2C and
  ACKTR within 300k, docs/BENCHMARKS.md).
* mujoco: the PPO paper's MuJoCo settings (1 env x 2048 steps, 10 epochs x 32 minibatches,
  lr 3e-4 decayed, lambda 0.95, observation and return normalisation, 1M steps).
* atari: PPO's Atari settings (8 envs x 128 steps, clip 0.1, 4 epochs x 4 minibatches, entropy
  0.01, 10M steps); A2C with 16 envs x 5 steps; ACKTR's paper settings (32 envs x 20 steps);
  both with n-step returns (lambda 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from a2c_ppo.config import ALGOS, PRESETS, SETTINGS, defaults
from a2c_ppo.declaration import flag_name, show
from a2c_ppo.env_entries import ENTRIES

_CLASSIC = {"num_processes": 8, "gamma": 0.98}
_MUJOCO = {"gamma": 0.99, "gae_lambda": 0.95, "norm_obs": True, "norm_reward": True, "num_env_steps": 1_000_000}
_ATARI = {"gamma": 0.99, "gae_lambda": 0.95, "entropy_coef": 0.01, "norm_obs": False, "norm_reward": False}

#: ``PRESET_VALUES[preset][algo]``: the values a preset gives on top of the declared defaults.
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
        # A2C and ACKTR take n-step returns (lambda 1): ikostrikov/pytorch-a2c-ppo-acktr-gail's Atari
        # commands (no --use-gae), OpenAI baselines' a2c / acktr, rl-baselines3-zoo a2c.yml atari
        "a2c": {**_ATARI, "num_processes": 16, "num_steps": 5, "lr": 7e-4, "gae_lambda": 1.0,
                "num_env_steps": 10_000_000},
        "acktr": {**_ATARI, "num_processes": 32, "num_steps": 20, "lr": 0.25, "gae_lambda": 1.0,
                  "num_env_steps": 10_000_000},
    },
}  # fmt: skip


@dataclass(frozen=True)
class EnvEntry:
    """Tuned settings of one env id, per algorithm, and where each was published."""

    sources: dict[str, str]  # algo -> where its settings come from
    values: dict[str, dict[str, Any]]  # algo -> settings


#: Per-env entries, layered between the family preset and the typed flags (``env_entries.py``).
ENV_ENTRIES: dict[str, EnvEntry] = {env_id: EnvEntry(sources, values) for env_id, (sources, values) in ENTRIES.items()}


def env_entry(env_id: str, algo: str) -> tuple[dict[str, Any], str | None]:
    """``env_id``'s entry for ``algo`` (``{}`` if none) and its source."""
    entry = ENV_ENTRIES.get(env_id)
    if entry is None or algo not in entry.values:
        return {}, None
    return dict(entry.values[algo]), entry.sources[algo]


#: The settings a preset decides (shown in --help), in declaration order.
PRESET_KEYS = [name for name, declared in SETTINGS.items() if declared.spec.preset]


def preset_values(preset: str, algo: str) -> dict[str, Any]:
    """The declared defaults overlaid with ``preset``'s column for ``algo``."""
    return {**defaults(), **PRESET_VALUES[preset][algo]}


def auto_preset(observation_space: Any, action_space: Any, is_atari: bool) -> str:
    """``atari`` for Atari ids, ``mujoco`` for continuous control, else ``classic``."""
    from a2c_ppo.envs.make import is_continuous_control

    if is_atari:
        return "atari"
    return "mujoco" if is_continuous_control(observation_space, action_space) else "classic"


#: What each family is for, above its table.
FAMILY_NOTES = {
    "classic": "classic: every other task (classic control, toy text, Box2D with discrete actions, your own)",
    "mujoco": "mujoco: continuous control (1-D Box observations and Box actions)",
    "atari": "atari: ALE/<Game>-v5 and <Game>NoFrameskip-v4 ids",
}


def presets_table() -> str:
    """Every preset's values per algorithm, one small table per family, for ``--help`` and
    the README ("-": the setting does not apply to that algorithm)."""
    blocks = []
    for preset in PRESETS:
        rows = [["setting", *ALGOS]]
        rows += [[flag_name(key)] + [_cell(key, preset, algo) for algo in ALGOS] for key in PRESET_KEYS]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        blocks.append("\n".join([FAMILY_NOTES[preset], *lines]))
    legend = "auto: on for continuous control, else off; -: does not apply to that algorithm."
    return "\n\n".join([*blocks, legend])


def _cell(key: str, preset: str, algo: str) -> str:
    if algo not in SETTINGS[key].spec.algos:
        return "-"
    value = preset_values(preset, algo)[key]
    return "auto" if value is None else show(value)
