"""The zoo translation (``env_entries.zoo_ppo`` / ``zoo_a2c``) against rl-baselines3-zoo's YAML
and Stable-Baselines3's semantics: every zoo-sourced entry's translated values, stated from
the YAML, and the keys that translate, keep SB3's defaults or are refused."""

from __future__ import annotations

import pytest

from a2c_ppo.env_entries import zoo_a2c, zoo_ppo
from a2c_ppo.presets import ENV_ENTRIES

ALGORITHM = ("num_processes", "num_steps", "lr", "use_linear_lr_decay", "gamma", "gae_lambda", "entropy_coef",
             "value_loss_coef", "norm_obs", "norm_reward", "num_env_steps")  # fmt: skip
PPO_ONLY = ("num_mini_batch", "ppo_epoch", "clip_param")

#: DLR-RM/rl-baselines3-zoo hyperparams/ppo.yml at 22e3ff2, in ALGORITHM + PPO_ONLY's order: n_envs,
#: n_steps, learning_rate ("lin_" -> decay), gamma, gae_lambda, ent_coef, 2 x vf_coef (our 0.5 * MSE),
#: normalize (obs, reward), n_timesteps, n_envs * n_steps / batch_size, n_epochs, clip_range; a key
#: the YAML leaves out is SB3's default (2048 steps, 3e-4, 0.99, 0.95, 0, vf 0.5, batch 64, 10, 0.2).
#: Ant-v5 is Ant-v4's, HalfCheetah / Swimmer / Walker2d-v5 their v4's, Reacher-v5 Reacher-v2's.
PPO_YAML = {
    "Acrobot-v1": (16, 256, 3e-4, False, 0.99, 0.94, 0.0, 1.0, True, True, 1e6, 64, 4, 0.2),
    "MountainCar-v0": (16, 16, 3e-4, False, 0.99, 0.98, 0.0, 1.0, True, True, 1e6, 4, 4, 0.2),
    "Pendulum-v1": (4, 1024, 1e-3, False, 0.9, 0.95, 0.0, 1.0, False, False, 1e5, 64, 10, 0.2),
    "LunarLander-v3": (16, 1024, 3e-4, False, 0.999, 0.98, 0.01, 1.0, False, False, 1e6, 256, 4, 0.2),
    "LunarLanderContinuous-v3": (16, 1024, 3e-4, False, 0.999, 0.98, 0.01, 1.0, False, False, 1e6, 256, 4, 0.2),
    "BipedalWalker-v3": (32, 2048, 3e-4, False, 0.999, 0.95, 0.0, 1.0, True, True, 5e6, 1024, 10, 0.18),
    "CarRacing-v3": (8, 512, 1e-4, True, 0.99, 0.95, 0.0, 1.0, False, True, 4e6, 32, 10, 0.2),
    "Ant-v5": (1, 2048, 3e-4, False, 0.99, 0.95, 0.0, 1.0, True, True, 1e6, 32, 10, 0.2),
    "HalfCheetah-v5": (1, 512, 2.0633e-05, False, 0.98, 0.92, 0.000401762, 1.16192, True, True, 1e6, 8, 20, 0.1),
    "Reacher-v5": (1, 512, 0.000104019, False, 0.9, 1.0, 7.52585e-08, 1.900736, True, True, 1e6, 16, 5, 0.3),
    "Swimmer-v5": (4, 1024, 6e-4, False, 0.9999, 0.98, 0.0, 1.0, True, True, 1e6, 16, 10, 0.2),
    "Walker2d-v5": (1, 512, 5.05041e-05, False, 0.99, 0.95, 0.000585045, 1.743846, True, True, 1e6, 16, 20, 0.1),
}
#: hyperparams/a2c.yml at 22e3ff2, in ALGORITHM's order (SB3's A2C defaults: 5 steps, 7e-4,
#: gamma 0.99, gae_lambda 1, vf 0.5).
A2C_YAML = {
    "Acrobot-v1": (16, 5, 7e-4, False, 0.99, 1.0, 0.0, 1.0, True, True, 5e5),
    "MountainCar-v0": (16, 5, 7e-4, False, 0.99, 1.0, 0.0, 1.0, True, True, 1e6),
    "MountainCarContinuous-v0": (4, 100, 7e-4, False, 0.99, 1.0, 0.0, 1.0, True, True, 1e5),
    "Pendulum-v1": (8, 8, 7e-4, True, 0.9, 0.9, 0.0, 0.8, True, True, 1e6),
    "LunarLander-v3": (8, 5, 0.00083, True, 0.995, 1.0, 1e-5, 1.0, False, False, 2e5),
    "LunarLanderContinuous-v3": (4, 8, 7e-4, True, 0.99, 0.9, 0.0, 0.8, True, True, 5e6),
    "BipedalWalker-v3": (16, 8, 0.00096, True, 0.99, 0.9, 0.0, 0.8, True, True, 5e6),
}
#: Their policy_kwargs, use_sde / sde_sample_freq, frame_stack and env_wrapper (MlpPolicy's 64 x 64
#: Tanh towers, orthogonal init, log-std 0 and no gSDE where an entry gives none).
SDE = {"use_sde": True, "sde_sample_freq": -1, "log_std_init": -2.0, "ortho_init": False}
CAR_RACING = {"use_sde": True, "sde_sample_freq": 4, "log_std_init": -2.0, "ortho_init": False, "frame_skip": 2,
              "frame_size": 64, "grayscale": True, "frame_stack": 2}  # fmt: skip
MUJOCO_256 = {"log_std_init": -2.0, "ortho_init": False, "activation": "relu", "hidden_size": 256}
POLICY_YAML = {
    ("Pendulum-v1", "ppo"): {"use_sde": True, "sde_sample_freq": 4},
    ("CarRacing-v3", "ppo"): {**CAR_RACING, "activation": "gelu", "cnn_head_size": 256},
    ("HalfCheetah-v5", "ppo"): MUJOCO_256,
    ("MountainCarContinuous-v0", "a2c"): {
        "use_sde": True,
        "sde_sample_freq": 16,
        "log_std_init": 0.0,
        "ortho_init": False,
    },  # fmt: skip
    ("Pendulum-v1", "a2c"): SDE,
    ("LunarLanderContinuous-v3", "a2c"): SDE,
    ("BipedalWalker-v3", "a2c"): SDE,
}
POLICY = ("use_sde", "sde_sample_freq", "log_std_init", "ortho_init", "activation", "hidden_size", "cnn_head_size",
          "frame_skip", "frame_size", "grayscale", "frame_stack")  # fmt: skip
YAML_CASES = [(env_id, "ppo", row) for env_id, row in PPO_YAML.items()]
YAML_CASES += [(env_id, "a2c", row) for env_id, row in A2C_YAML.items()]


@pytest.mark.parametrize("env_id, algo, row", YAML_CASES)
def test_a_zoo_entry_translates_to_the_yamls_values(env_id, algo, row):
    values = ENV_ENTRIES[env_id].values[algo]
    names = ALGORITHM + PPO_ONLY if algo == "ppo" else ALGORITHM
    assert tuple(values[name] for name in names) == row
    assert {name: values[name] for name in POLICY if name in values} == POLICY_YAML.get((env_id, algo), {})
    # SB3: no value clipping (clip_range_vf=None); PPO standardises each minibatch's advantages, A2C none
    assert values["norm_adv"] is (algo == "ppo") and values.get("clip_value_loss", False) is False
    assert values.get("norm_adv_scope") == ("minibatch" if algo == "ppo" else None)


def test_a_partial_normalize_dict_keeps_vecnormalizes_defaults_and_its_other_arguments_are_refused():
    """The zoo passes a normalize dict to SB3's VecNormalize as keyword arguments: a switch it leaves
    out is VecNormalize's default, on. clip_obs, clip_reward, epsilon and gamma stay SB3's here."""
    reward_only = zoo_ppo(1e6, normalize={"norm_obs": False})
    assert (reward_only["norm_obs"], reward_only["norm_reward"]) == (False, True)
    observations_only = zoo_a2c(1e6, normalize={"norm_reward": False})
    assert (observations_only["norm_obs"], observations_only["norm_reward"]) == (True, False)
    with pytest.raises(ValueError, match="normalize .*clip_obs.* without a translation"):
        zoo_ppo(1e6, normalize={"norm_obs": True, "clip_obs": 5.0})


def test_a_clip_range_schedule_is_refused_rather_than_misread():
    """SB3's clip_range "lin_0.2" decays to 0; --clip-param is constant, so it has no translation."""
    with pytest.raises(ValueError, match="clip_range 'lin_0.2' without a translation"):
        zoo_ppo(1e6, clip_range="lin_0.2")


def test_sb3s_advantage_and_a2c_optimizer_keys_translate():
    """normalize_advantage (SB3: PPO on, A2C off), and A2C's use_rms_prop / rms_prop_eps (SB3:
    RMSprop(alpha=0.99, eps=1e-5), ours the same unless the entry gives an eps)."""
    a2c = zoo_a2c(1e6, use_rms_prop=True, normalize_advantage=False)
    assert not a2c["norm_adv"] and "eps" not in a2c  # SB3's 1e-5 is this framework's default
    assert zoo_a2c(1e6, normalize_advantage=True, rms_prop_eps=1e-4)["norm_adv"] is True
    assert zoo_a2c(1e6, rms_prop_eps=1e-4)["eps"] == 1e-4
    with pytest.raises(ValueError, match="use_rms_prop False"):
        zoo_a2c(1e6, use_rms_prop=False)
    unnormalised = zoo_ppo(1e6, normalize_advantage=False)
    assert not unnormalised["norm_adv"] and "norm_adv_scope" not in unnormalised
    with pytest.raises(ValueError, match="without a translation: \\['use_rms_prop'\\]"):
        zoo_ppo(1e6, use_rms_prop=True)  # an A2C key


def test_carracing_a2c_says_it_does_not_take_the_atari_entrys_tensorflow_rmsprop():
    assert "not its RMSpropTFLike" in ENV_ENTRIES["CarRacing-v3"].sources["a2c"]
