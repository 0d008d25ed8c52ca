"""What a Python caller passes to ``train`` and ``Agent``, read as a demanding user would write
it: other libraries' names pointed to ours, dict keys JSON would change refused, paths and
switches in their Python types, and values that are not what they seem refused."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

from a2c_ppo.api import load, train
from a2c_ppo.errors import ConfigError
from tests.envs_for_spaces import BitsDictEnv

SMALL = {"num_processes": 2, "num_steps": 16, "vec_env": "sync", "num_env_steps": 32}


@pytest.mark.parametrize(
    ("name", "ours"),
    [("learning_rate", "lr"), ("n_envs", "num_processes"), ("batch_size", "num_mini_batch (minibatches per epoch"),
     ("vf_coef", "value_loss_coef (twice vf_coef"), ("total_timesteps", "num_env_steps"), ("lrr", "lr")],
)  # fmt: skip
def test_another_librarys_name_for_a_setting_is_pointed_to_ours(tmp_path, name, ours):
    with pytest.raises(ConfigError, match=re.escape(f"'{name}' is not a setting (did you mean {ours}")):
        train("CartPole-v1", **{name: 1}, log_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("settings", "where"),
    [({"env_kwargs": {1: 2}}, r"env_kwargs has the key 1 \(int\)"),
     ({"policy_kwargs": {"widths": [{2: 16}]}}, r"policy_kwargs\['widths'\]\[0\] has the key 2 \(int\)")],
)  # fmt: skip
def test_dict_keys_that_json_would_turn_into_text_are_refused(tmp_path, settings, where):
    """``{1: 16}`` would reach the env or network as ``{"1": 16}`` and find another key."""
    with pytest.raises(ConfigError, match=where + r"; the settings hold JSON, whose keys are text, so it would reach"):
        train("CartPole-v1", **settings, log_dir=str(tmp_path))


def test_paths_and_python_switches_are_taken_and_odd_values_refused(tmp_path):
    result = train("CartPole-v1", **SMALL, fast_path=False, log_dir=tmp_path / "runs", save_dir=tmp_path / "models")
    agent = load(pathlib.Path(result.checkpoint))
    assert agent.config.fast_path == "off" and agent.config.log_dir == str(tmp_path / "runs")
    with pytest.raises(ValueError, match="act: deterministic must be True or False, got 'no'"):
        agent.act(np.zeros(4, np.float32), deterministic="no")
    with pytest.raises(ValueError, match="evaluate: deterministic must be True or False"):
        agent.evaluate(episodes=1, deterministic=None)
    assert agent.evaluate(episodes=2, seed=None) == agent.evaluate(episodes=2, seed=0)


def test_a_value_recorded_that_is_no_number_names_record_and_the_tag(tmp_path):
    def record_text(info) -> None:
        info.record("custom/x", "abc")

    with pytest.raises(TypeError, match=r"record: 'custom/x' takes a number, got 'abc'"):
        train("CartPole-v1", **SMALL, callbacks=[record_text], log_dir=str(tmp_path / "runs"),
              save_dir=str(tmp_path / "models"))  # fmt: skip


def test_act_names_the_part_whose_batch_axis_differs_from_the_first_parts(tmp_path):
    """The first part decides one observation or a batch; the message names the part that does
    not follow it, and says what it is, not the shape the policy takes."""
    agent = load(
        train(BitsDictEnv, **SMALL, log_dir=str(tmp_path / "runs"), save_dir=str(tmp_path / "models")).checkpoint
    )
    obs = agent.make_env().reset(seed=0)[0]
    first, *others = agent.observation_space.spaces
    batch = {key: np.stack([value] * 3) if key != first else value for key, value in obs.items()}
    with pytest.raises(ValueError, match=rf"act: part '{others[0]}' has shape \(3, .*\), a batch, and the "
                                         r"observation's first part is one observation"):  # fmt: skip
        agent.act(batch)
