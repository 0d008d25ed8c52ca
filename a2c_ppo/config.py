"""The typed, frozen description of one training run, and its plain-data form for checkpoints.

``arguments.py`` turns the command line into a ``RunConfig`` (flags > preset > common
defaults, then validation); library code receives the fields it needs from it, never the
argparse Namespace. ``to_dict`` / ``from_dict`` carry a version so an old checkpoint's config
is either read correctly or refused with a clear message.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from a2c_ppo.errors import ConfigError

CONFIG_VERSION = 2


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run, resolved (no ``None`` left where a value is needed)."""

    # algorithm
    algo: str
    preset: str
    lr: float
    eps: float
    alpha: float
    gamma: float
    use_gae: bool
    gae_lambda: float
    entropy_coef: float
    value_loss_coef: float
    max_grad_norm: float
    clip_param: float
    ppo_epoch: int
    num_mini_batch: int
    clip_value_loss: bool
    norm_adv: bool
    target_kl: float | None
    use_linear_lr_decay: bool
    # policy
    hidden_size: int | None  # None: 64 for vector observations, 512 for images
    recurrent_policy: bool
    recurrent_type: str
    recurrent_chunk_length: int | None  # None: whole rollout columns
    # environment
    env_name: str
    num_processes: int
    num_steps: int
    num_env_steps: int
    seed: int
    use_proper_time_limits: bool
    norm_obs: bool | None  # None: automatic (on for continuous control)
    norm_reward: bool | None
    vec_env: str
    num_workers: int | None
    overlap: str
    # logging and checkpoints
    log_dir: str
    run_dir: str
    save_dir: str
    log_interval: int
    save_interval: int
    eval_interval: int
    eval_episodes: int
    # device and processes
    no_cuda: bool
    cuda_deterministic: bool
    num_threads: int
    dist_backend: str
    dist_timeout: float

    @property
    def batch_size(self) -> int:
        """Samples per update on one rank: ``num_processes * num_steps``."""
        return self.num_processes * self.num_steps

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able) with a ``config_version`` key."""
        return {"config_version": CONFIG_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """The config saved by ``to_dict``; a ConfigError for another version or shape."""
        version = data.get("config_version")
        if version != CONFIG_VERSION:
            raise ConfigError(
                f"the checkpoint's run config has version {version!r}, but this a2c_ppo reads version "
                f"{CONFIG_VERSION}; replay or resume it with the a2c_ppo version that wrote it, or train anew."
            )
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k != "config_version"}
        missing, unknown = names - set(values), set(values) - names
        if missing or unknown:
            raise ConfigError(
                f"the checkpoint's run config does not match this a2c_ppo version (missing: "
                f"{sorted(missing) or 'none'}, unknown: {sorted(unknown) or 'none'}); train anew."
            )
        return cls(**values)


def config_field_names() -> list[str]:
    return [f.name for f in fields(RunConfig)]
