"""Checkpoints: round trip, atomic writes, safe loading, mismatch errors."""

import argparse
import os

import numpy as np
import pytest
import torch

from a2c_ppo.checkpoint import check_spaces, load_checkpoint, save_checkpoint
from a2c_ppo.envs import VecNormalize, make_vec_envs
from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.errors import ConfigError
from a2c_ppo.model import make_policy

CONFIG = argparse.Namespace(hidden_size=64, env_name="Pendulum-v1", seed=3)


def trained_state(tmp_path):
    envs = TorchVecEnv(make_vec_envs("Pendulum-v1", 2, norm_obs=True, norm_reward=True, vec_env="sync"))
    envs.reset(seed=3)
    policy = make_policy(envs.observation_space, envs.action_space, CONFIG)
    optimizer = torch.optim.Adam(policy.parameters())
    for _ in range(20):
        envs.step(torch.randn(2, 1))
    path = str(tmp_path / "ppo" / "Pendulum-v1.pt")
    save_checkpoint(
        path,
        model=policy,
        optimizer=optimizer,
        config=vars(CONFIG),
        normalization=envs.envs.state_dict(),
        counters={"update": 7, "env_steps": 40},
        observation_space=envs.observation_space,
        action_space=envs.action_space,
    )
    return envs, policy, path


def test_round_trip_gives_identical_actions_and_normalization(tmp_path):
    envs, policy, path = trained_state(tmp_path)
    ckpt = load_checkpoint(path)
    assert ckpt["counters"] == {"update": 7, "env_steps": 40}
    assert ckpt["config"]["env_name"] == "Pendulum-v1"

    fresh_envs = TorchVecEnv(make_vec_envs("Pendulum-v1", 2, norm_obs=True, norm_reward=True, vec_env="sync"))
    fresh_envs.envs.load_state_dict(ckpt["normalization"])
    assert isinstance(fresh_envs.envs, VecNormalize)
    np.testing.assert_allclose(fresh_envs.envs.obs_rms.mean, envs.envs.obs_rms.mean)
    np.testing.assert_allclose(fresh_envs.envs.obs_rms.var, envs.envs.obs_rms.var)
    assert fresh_envs.envs.obs_rms.count == envs.envs.obs_rms.count
    np.testing.assert_allclose(fresh_envs.envs.ret_rms.var, envs.envs.ret_rms.var)

    restored = make_policy(fresh_envs.observation_space, fresh_envs.action_space, CONFIG)
    restored.load_state_dict(ckpt["model"])
    obs = torch.randn(16, 3)
    hxs, masks = torch.zeros(16, 1), torch.ones(16, 1)
    _, a1, _, _ = policy.act(obs, hxs, masks, deterministic=True)
    _, a2, _, _ = restored.act(obs, hxs, masks, deterministic=True)
    torch.testing.assert_close(a1, a2, rtol=0, atol=0)


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    envs, policy, path = trained_state(tmp_path)
    before = open(path, "rb").read()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(
            path,
            model=policy,
            optimizer=None,
            config={},
            normalization=None,
            counters={},
            observation_space=envs.observation_space,
            action_space=envs.action_space,
        )
    assert open(path, "rb").read() == before
    assert os.listdir(os.path.dirname(path)) == ["Pendulum-v1.pt"]


def test_loading_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "payload": argparse.Namespace(x=1)}, path)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_checkpoint(str(path))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint(str(tmp_path / "nope.pt"))


def test_space_mismatch_is_a_clear_error(tmp_path):
    _, _, path = trained_state(tmp_path)
    other = TorchVecEnv(make_vec_envs("CartPole-v1", 1, vec_env="sync"))
    with pytest.raises(ConfigError, match="observation space"):
        check_spaces(load_checkpoint(path), other.observation_space, other.action_space, "CartPole-v1")
