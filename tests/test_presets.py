"""Presets: the family is chosen from the env, typed flags always win, the choice is recorded."""

from __future__ import annotations

import os

import pytest

from a2c_ppo.arguments import build_parser, resolve
from a2c_ppo.checkpoint import load_checkpoint
from a2c_ppo.presets import PRESET_VALUES, presets_table
from a2c_ppo.session import run
from a2c_ppo.storage import fitting_chunk_length


def test_cartpole_keeps_the_classic_settings():
    request = resolve([])
    config = request.config
    assert config.preset == "classic" and "Preset classic (auto" in request.notes[0]
    assert (config.lr, config.num_processes, config.num_steps, config.ppo_epoch, config.num_mini_batch) == (
        1e-3, 8, 32, 20, 1)  # fmt: skip
    assert (config.gamma, config.gae_lambda, config.num_env_steps) == (0.98, 0.8, 100_000)
    assert (config.norm_obs, config.norm_reward) == (False, False)


def test_continuous_control_gets_the_mujoco_settings():
    config = resolve(["--env-name", "tests.envs_for_tests:ConstantEnv"]).config  # continuous, no per-env entry
    assert config.preset == "mujoco"
    assert (config.num_processes, config.num_steps, config.ppo_epoch, config.num_mini_batch) == (1, 2048, 10, 32)
    assert (config.lr, config.gamma, config.gae_lambda, config.entropy_coef) == (3e-4, 0.99, 0.95, 0.0)
    assert config.norm_obs and config.norm_reward and config.use_proper_time_limits and config.use_linear_lr_decay
    assert config.num_env_steps == 1_000_000


def test_atari_ids_get_the_atari_settings():
    pytest.importorskip("ale_py")
    config = resolve(["--env-name", "ALE/Pong-v5"]).config
    assert config.preset == "atari"
    assert (config.num_processes, config.num_steps, config.clip_param, config.entropy_coef) == (8, 128, 0.1, 0.01)
    assert (config.ppo_epoch, config.num_mini_batch, config.lr) == (4, 4, 2.5e-4)
    acktr = resolve(["--env-name", "ALE/Pong-v5", "--algo", "acktr"]).config
    assert acktr.num_processes == 32
    # n-step returns, as ikostrikov's and baselines' A2C / ACKTR on Atari: lambda 0.95 had no source
    a2c = resolve(["--env-name", "ALE/Pong-v5", "--algo", "a2c"]).config
    assert (a2c.num_processes, a2c.num_steps, a2c.gae_lambda, acktr.gae_lambda) == (16, 5, 1.0, 1.0)


def test_typed_flags_win_and_are_named():
    request = resolve(["--env-name", "Pendulum-v1", "--lr", "1e-3", "--num-steps", "64", "--num-mini-batch", "4"])
    config = request.config
    assert (config.lr, config.num_steps, config.num_mini_batch, config.ppo_epoch) == (1e-3, 64, 4, 10)
    assert "overridden by --lr, --num-mini-batch, --num-steps" in request.notes[0]


def test_a_typed_preset_applies_to_any_env():
    config = resolve(["--preset", "mujoco", "--num-env-steps", "4096"]).config
    assert (config.preset, config.num_steps, config.num_processes) == ("mujoco", 2048, 1)
    assert config.norm_obs  # the preset's choice, not the automatic one (off for CartPole)


def test_the_preset_is_recorded_in_the_checkpoint(tmp_path):
    argv = ["--env-name", "Pendulum-v1", "--preset", "mujoco", "--num-steps", "32", "--num-env-steps", "32",
            "--num-mini-batch", "1", "--log-dir", str(tmp_path / "runs"),
            "--save-dir", str(tmp_path / "models")]  # fmt: skip
    config = load_checkpoint(run(resolve(argv).config).checkpoint)["config"]
    assert config["preset"] == "mujoco" and config["ppo_epoch"] == 10 and config["num_steps"] == 32


def test_help_shows_every_preset_value():
    text = build_parser().format_help().split("Values of the settings")[1]
    for preset, columns in PRESET_VALUES.items():
        table = text.split(f"{preset}: ")[1].split("\n\n")[0]
        assert table.splitlines()[1].split() == ["setting", *columns]
        assert "--num-mini-batch" in table
    assert max(len(line) for line in text.splitlines()) <= 100  # readable in a terminal


def test_recurrent_chunk_length_is_chosen_when_columns_are_too_few():
    request = resolve(["--recurrent-policy", "--num-processes", "2", "--num-mini-batch", "4"])
    # 2 columns of 32 steps cannot make 4 minibatches; chunks of 16 make 4 sequences. The config
    # keeps "auto" (None), so that a resume with other minibatches chooses again
    assert request.config.recurrent_chunk_length is None
    assert any("Recurrent chunk length 16" in note for note in request.notes)
    assert fitting_chunk_length(32, 2, 4) == 16 and fitting_chunk_length(32, 8, 4) == 32
    assert resolve(["--recurrent-policy"]).config.recurrent_chunk_length is None  # 8 columns suffice


def test_the_readme_shows_the_presets_as_they_are():
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
    block = readme.split("<!-- presets-table -->")[1].split("<!-- /presets-table -->")[0]
    assert block.strip().removeprefix("```").removesuffix("```").strip() == presets_table()
