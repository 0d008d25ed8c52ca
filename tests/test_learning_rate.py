"""The linear learning-rate decay and its horizon (``--lr-decay-steps``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from a2c_ppo.arguments import resolve
from a2c_ppo.errors import ConfigError
from a2c_ppo.trainer import Trainer


def _rate(update: int, tmp_path, *flags: str) -> float:
    """The learning rate at ``update`` of a 1M-step run of 16 x 5 steps (12,500 updates), lr 1."""
    argv = ["--algo", "a2c", "--env-name", "Pendulum-v1", "--num-processes", "16", "--num-steps", "5",
            "--num-env-steps", "1000000", "--lr", "1", "--log-dir", str(tmp_path), *flags]  # fmt: skip
    config = resolve(argv).config
    trainer = SimpleNamespace(config=config, env_steps=update * 80, total_steps=12_500 * 80, batch=80)
    return Trainer.learning_rate(trainer)  # type: ignore[arg-type]


def test_by_default_the_rate_reaches_zero_at_the_end_of_the_run(tmp_path):
    assert _rate(0, tmp_path) == 1.0
    assert _rate(6_250, tmp_path) == 0.5
    assert _rate(12_499, tmp_path) == pytest.approx(1 / 12_500)


def test_a_longer_horizon_stops_above_zero_as_tianshous_three_million_step_decay(tmp_path):
    # 3M steps / 80 = 37,500 updates: after the 1M-step run's 12,500, two thirds are left
    assert _rate(12_500, tmp_path, "--lr-decay-steps", "3000000") == pytest.approx(2 / 3)
    assert _rate(3_750, tmp_path, "--lr-decay-steps", "3000000") == pytest.approx(0.9)


def test_a_shorter_horizon_holds_zero_after_it_and_no_decay_keeps_the_rate(tmp_path):
    assert _rate(6_250, tmp_path, "--lr-decay-steps", "400000") == 0.0  # 5,000 updates
    assert _rate(2_500, tmp_path, "--lr-decay-steps", "400000") == 0.5
    assert _rate(6_250, tmp_path, "--no-use-linear-lr-decay") == 1.0
    with pytest.raises(ConfigError, match="--lr-decay-steps only applies with --use-linear-lr-decay"):
        _rate(6_250, tmp_path, "--no-use-linear-lr-decay", "--lr-decay-steps", "400000")
