"""Checkpoints: round trip, atomic writes, safe loading, mismatch errors, NaN refusal."""

import argparse
import json
import os
import stat

import gymnasium as gym
import numpy as np
import pytest
import torch

from a2c_ppo.algo.flat_params import FlatParameters
from a2c_ppo.api import train
from a2c_ppo.arguments import resolve
from a2c_ppo.checkpoint import FORMAT_VERSION, FiniteCheck, check_spaces, load_checkpoint, save_checkpoint
from a2c_ppo.distributed import DistContext
from a2c_ppo.envs import VecNormalize, make_vec_envs
from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.errors import ConfigError, NonFiniteError
from a2c_ppo.model import make_policy
from a2c_ppo.trainer import Trainer
from tests.custom_nets import SmallNet
from tests.helpers import local_run_flags, run_checkpoint

CONFIG = argparse.Namespace(hidden_size=64, env_name="Pendulum-v1", seed=3)


def trained_state(tmp_path):
    envs = TorchVecEnv(make_vec_envs("Pendulum-v1", 2, norm_obs=True, norm_reward=True, vec_env="sync"))
    envs.reset(seed=3)
    policy = make_policy(envs.observation_space, envs.action_space, hidden_size=CONFIG.hidden_size)
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

    restored = make_policy(fresh_envs.observation_space, fresh_envs.action_space, hidden_size=CONFIG.hidden_size)
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


class Payload:
    """Unpickling this would run ``touch``: a checkpoint carrying code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_loading_refuses_pickled_code_without_running_it(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "ran"
    torch.save({"format_version": 2, "payload": Payload(str(marker))}, path)
    with pytest.raises(ConfigError, match="is refused: it contains code") as exc:
        load_checkpoint(str(path))
    assert not marker.exists()
    assert "weights_only=False" not in str(exc.value)  # never advise the unsafe load


@pytest.mark.parametrize("content", [b"", b"hello world", b"PK\x03\x04 truncated zip"])
def test_unreadable_files_get_one_clear_message(tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="cannot be read.*not written by a2c_ppo, or it is truncated or damaged"):
        load_checkpoint(str(path))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        load_checkpoint(str(tmp_path / "nope.pt"))


def test_checkpoint_file_mode_follows_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        _, _, path = trained_state(tmp_path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_non_finite_model_is_never_saved_over_a_good_checkpoint(tmp_path):
    envs, policy, path = trained_state(tmp_path)
    before = open(path, "rb").read()
    with torch.no_grad():
        next(policy.parameters())[0].fill_(float("nan"))
    kwargs = dict(optimizer=None, config={}, normalization=None, counters={}, observation_space=envs.observation_space,
                  action_space=envs.action_space)  # fmt: skip
    with pytest.raises(NonFiniteError, match="is not finite"):
        save_checkpoint(path, model=policy, **kwargs)
    with torch.no_grad():
        next(policy.parameters())[0].fill_(0.0)
    with pytest.raises(NonFiniteError, match="normalisation statistics"):
        save_checkpoint(path, model=policy, **{**kwargs, "normalization": {"obs_rms": {"mean": [float("inf")]}}})
    assert open(path, "rb").read() == before
    assert os.listdir(os.path.dirname(path)) == ["Pendulum-v1.pt"]


@pytest.mark.parametrize("where", ["parameter", "buffer"])
def test_the_finite_check_names_a_non_finite_tensor_with_and_without_the_flat_buffer(where):
    policy = make_policy(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,)), hidden_size=8)
    if where == "buffer":  # a floating tensor outside the flat buffer: every tensor is checked
        policy.register_buffer("scale", torch.ones(2))
    flat = FlatParameters(policy.parameters())
    check = FiniteCheck(policy, flat.data)
    assert (check.flat is None) == (where == "buffer")
    assert check.first_non_finite() is None and FiniteCheck(policy).first_non_finite() is None
    bad = "scale" if where == "buffer" else "base.critic.2.weight"
    with torch.no_grad():
        if where == "buffer":
            policy.get_buffer(bad)[1] = float("nan")
        else:
            policy.get_parameter(bad)[0, 3] = -float("inf")
    assert check.first_non_finite() == bad


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_the_trainer_checks_the_flat_buffer_and_names_a_non_finite_parameter(tmp_path, algo):
    request = resolve(["--env-name", "CartPole-v1", "--algo", algo, *local_run_flags(tmp_path)])
    trainer = Trainer(request.config, DistContext(device=torch.device("cpu")))
    try:
        assert trainer.finite_check.flat is not None  # PPO's and the hand-gradient A2C's one buffer
        trainer.check_finite({})
        with torch.no_grad():
            trainer.policy.get_parameter("base.actor.0.bias")[5] = float("nan")
        with pytest.raises(NonFiniteError, match=r"model parameter 'base.actor.0.bias' is not finite"):
            trainer.check_finite({})
    finally:
        trainer.close()


def test_space_mismatch_is_a_clear_error(tmp_path):
    _, _, path = trained_state(tmp_path)
    other = TorchVecEnv(make_vec_envs("CartPole-v1", 1, vec_env="sync"))
    with pytest.raises(ConfigError, match="observation space"):
        check_spaces(load_checkpoint(path), other.observation_space, other.action_space, "CartPole-v1")


UNREADABLE_RMSPROP = {"state": {0: {"square_avg": "x"}}, "param_groups": [{"params": [0], "lr": 1.0, "alpha": 0.9}]}


@pytest.mark.parametrize("optimizer", [{"state": {}, "param_groups": []}, UNREADABLE_RMSPROP])
def test_an_old_checkpoint_whose_optimizer_state_cannot_be_upgraded_is_one_clear_error(tmp_path, optimizer):
    """A format-3 A2C checkpoint's RMSprop state is concatenated on load; where it is not a
    torch optimizer's state (no group, text for a tensor) the load ends in ConfigError."""
    path = tmp_path / "old.pt"
    payload = {"format_version": 3, "config": json.dumps({"algo": "a2c"}), "normalization": "null",
               "spaces": '{"observation": {}, "action": {}}', "counters": {"update": 1, "env_steps": 5},
               "rng": {}, "resume_state": None, "model": {"w": torch.zeros(2)}}  # fmt: skip
    torch.save({**payload, "optimizer": optimizer}, path)
    with pytest.raises(ConfigError, match="is damaged or was not written by a2c_ppo"):
        load_checkpoint(str(path))


@pytest.mark.parametrize("old_format, algo", [(2, "ppo"), (3, "a2c")])
def test_an_old_checkpoint_resumes_with_the_same_optimizer_state(tmp_path, old_format, algo):
    """Format 2 held PPO's torch.optim.Adam state per parameter, formats 2 and 3 A2C's
    torch.optim.RMSprop state; loading turns it into FlatAdam's or FlatRMSprop's vectors, and
    the next step is exactly what torch's optimizer would take."""
    import copy

    from a2c_ppo.algo.flat_params import FlatAdam, FlatParameters, FlatRMSprop

    envs, policy, _ = trained_state(tmp_path)
    envs.close()
    reference = copy.deepcopy(policy)
    if algo == "ppo":
        theirs: torch.optim.Optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2, eps=1e-5, foreach=False)
    else:
        theirs = torch.optim.RMSprop(reference.parameters(), lr=1e-2, eps=1e-5, alpha=0.9, foreach=True)
    gradients = [[torch.randn_like(p) for p in reference.parameters()] for _ in range(4)]
    for step in gradients[:3]:
        for p, g in zip(reference.parameters(), step):
            p.grad = g
        theirs.step()
    old_path = tmp_path / "old.pt"
    old_payload = {"format_version": old_format, "config": json.dumps({"algo": algo}), "normalization": "null",
                   "spaces": '{"observation": {}, "action": {}}',
                   "counters": {"update": 3, "env_steps": 96}, "rng": {}, "resume_state": None}  # fmt: skip
    torch.save({**old_payload, "model": reference.state_dict(), "optimizer": theirs.state_dict()}, old_path)
    checkpoint = load_checkpoint(str(old_path))
    assert checkpoint["format_version"] == FORMAT_VERSION
    resumed = copy.deepcopy(reference)
    flat = FlatParameters(resumed.parameters())
    # the hyper-parameters are replaced by the checkpoint's
    ours = FlatAdam(flat, lr=0.5, eps=0.5) if algo == "ppo" else FlatRMSprop(flat, lr=0.5, eps=0.5, alpha=0.5)
    ours.load_state_dict(checkpoint["optimizer"])
    assert ours.num_steps == 3 and ours.param_groups[0]["lr"] == 1e-2
    for p, g in zip(reference.parameters(), gradients[3]):
        p.grad = g
    theirs.step()
    flat.grad.copy_(torch.cat([g.reshape(-1) for g in gradients[3]]))
    ours.step()
    for name, p in resumed.named_parameters():
        assert torch.equal(p, dict(reference.named_parameters())[name]), name


class _RaisesMidUpdate(SmallNet):
    """SmallNet whose second gradient pass after ``armed`` is set raises: the first pass has
    moved the parameters already (a second Ctrl-C or an error of one's own network mid-update)."""

    armed: int | None = None  # the gradient passes since it was armed

    def forward(self, obs, rnn_hxs, masks):
        if self.training and torch.is_grad_enabled() and _RaisesMidUpdate.armed is not None:
            _RaisesMidUpdate.armed += 1
            if _RaisesMidUpdate.armed == 2:
                raise RuntimeError("the network failed on purpose")
        return super().forward(obs, rnn_hxs, masks)


def test_an_error_inside_an_update_never_saves_its_half_updated_parameters(tmp_path):
    after: dict[int, dict[str, torch.Tensor]] = {}

    def keep_parameters_and_arm_after_update_3(info):
        after[info.update] = {name: value.clone() for name, value in info.policy.state_dict().items()}
        if info.update == 3:
            _RaisesMidUpdate.armed = 0

    _RaisesMidUpdate.armed = None
    with pytest.raises(RuntimeError, match="the network failed on purpose"):
        train("tests.envs_failing:tiny_env", callbacks=keep_parameters_and_arm_after_update_3,
              policy_base=_RaisesMidUpdate, algo="ppo", num_processes=2, num_steps=16, num_env_steps=320,
              save_interval=2, vec_env="sync", log_dir=str(tmp_path / "runs"))  # fmt: skip
    assert sorted(after) == [1, 2, 3]
    # update 2, written by the periodic save, stays: update 3's checkpoint would hold update 4's first steps
    checkpoint = load_checkpoint(run_checkpoint(tmp_path))
    assert checkpoint["counters"]["update"] == 2
    for name, value in checkpoint["model"].items():
        assert torch.equal(value, after[2][name]), name


def test_numpys_cached_gaussian_goes_through_a_checkpoints_generator_states(tmp_path):
    """numpy's global generator draws normals in pairs and keeps the second for the next draw
    (``has_gauss``, ``gauss`` in its state). The checkpoint dropped them: an env drawing
    ``np.random.normal()`` in the training process got another number after a resume."""
    from a2c_ppo.checkpoint import rng_state, set_rng_state

    np.random.seed(3)
    np.random.normal()  # the pair's second number is now cached
    path = tmp_path / "rng.pt"
    torch.save(rng_state(), path)
    expected = [np.random.normal() for _ in range(3)]
    np.random.normal()
    set_rng_state(torch.load(path, weights_only=True))
    assert [np.random.normal() for _ in range(3)] == expected
    older = torch.load(path, weights_only=True)  # a checkpoint written without the cache: none cached
    older["numpy"] = {key: older["numpy"][key] for key in ("keys", "pos")}
    set_rng_state(older)
    assert np.random.get_state()[3:] == (0, 0.0)
