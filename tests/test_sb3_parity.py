"""PPO and A2C against Stable-Baselines3's on the same rollouts, weights and settings.

A zoo entry's settings (InvertedPendulum's: one minibatch of the whole 32-step rollout, so
the minibatch order cannot matter) must move the parameters as SB3's ``PPO.train()`` does:
this checks the translation (``env_entries.zoo_ppo``: the value loss's weight, the clip range, the
advantage normalisation) and the update's maths end to end, with the hand-written gradient and
with autograd. A second test runs whole training iterations (rollout with normalisation,
terminations and truncations, returns, update, the optimizer's state carried over) with SB3's
sampled actions and minibatch orders replayed, and holds our parameters to SB3's: PPO with
InvertedPendulum's and HalfCheetah's settings (8 minibatches, which tells where the advantages
are standardised), A2C with the zoo's MuJoCo settings. Needs stable-baselines3 (the ``[test]``
extra) and MuJoCo; skipped without them.
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import pytest
import torch

import a2c_ppo.rollout as rollout_module
from a2c_ppo.algo.common import set_learning_rate
from a2c_ppo.algo.hand_gradient import HandGradient
from a2c_ppo.algo.ppo import PPO
from a2c_ppo.arguments import resolve
from a2c_ppo.builders import build_envs, make_agent, policy_for
from a2c_ppo.config import RunConfig, defaults
from a2c_ppo.env_entries import zoo_a2c, zoo_ppo
from a2c_ppo.fastpath import ActFunction, fast_mlp
from a2c_ppo.model import Policy, make_policy
from a2c_ppo.storage import RolloutStorage
from benchmarks.time_to_result import sb3_arguments

sb3 = pytest.importorskip("stable_baselines3")
pytest.importorskip("mujoco")

ENV_ID = "InvertedPendulum-v5"
#: rl-baselines3-zoo's ppo.yml InvertedPendulum-v2 entry (InvertedPendulum-v5's entry until it
#: took CleanRL's settings, docs/BENCHMARKS.md), as ``env_entries`` translates it.
ZOO_SETTINGS = zoo_ppo(1e6, normalize=True, n_envs=1, batch_size=64, n_steps=32, gamma=0.999,
                       learning_rate=0.000222425, ent_coef=1.37976e-07, clip_range=0.4, n_epochs=5,
                       gae_lambda=0.9, max_grad_norm=0.3, vf_coef=0.19816)  # fmt: skip


def zoo_run(env_id: str = ENV_ID) -> RunConfig:
    """Our run config for ``env_id`` with the zoo's InvertedPendulum settings, in float32."""
    run = resolve(["--env-name", ENV_ID, "--algo", "ppo", "--seed", "1"]).config
    return run.replace(**ZOO_SETTINGS, env_name=env_id, precision="fp32")


def sb3_model_after_one_rollout(config: dict):
    """SB3's PPO for ``config``, its rollout buffer filled by one real rollout (not trained yet)."""
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env(lambda: gym.make(ENV_ID), n_envs=1, seed=1)
    model = sb3.PPO(env=envs, seed=1, device="cpu", **sb3_arguments(config))
    _, callback = model._setup_learn(config["num_steps"], callback=None)
    callback.on_training_start(locals(), globals())
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    return model


def copy_weights(model, policy) -> None:
    """SB3's MlpPolicy parameters into our Policy (the same two 64 x 64 tanh towers and heads)."""
    theirs = model.policy
    pairs = [
        (policy.base.actor, theirs.mlp_extractor.policy_net),
        (policy.base.critic, theirs.mlp_extractor.value_net),
    ]
    with torch.no_grad():
        for ours, src in pairs:
            for a, b in zip(ours.parameters(), src.parameters()):
                a.copy_(b)
        policy.base.critic_linear.weight.copy_(theirs.value_net.weight)
        policy.base.critic_linear.bias.copy_(theirs.value_net.bias)
        policy.dist.mean.weight.copy_(theirs.action_net.weight)
        policy.dist.mean.bias.copy_(theirs.action_net.bias)
        policy.dist.log_std.bias.copy_(theirs.log_std.reshape(policy.dist.log_std.bias.shape))


def storage_from(buffer, obs_space: gym.Space, action_dim: int) -> RolloutStorage:
    """SB3's buffer (returns and advantages computed) as our storage: the update reads the
    returns and the values (advantages = returns - values), the actions and their log-probs."""
    T, N = buffer.buffer_size, buffer.n_envs
    storage = RolloutStorage(T, N, obs_space.shape, action_dim)
    storage.obs[:-1].copy_(torch.as_tensor(buffer.observations, dtype=torch.float32))
    storage.actions.copy_(torch.as_tensor(buffer.actions, dtype=torch.float32).reshape(T, N, action_dim))
    storage.action_log_probs.copy_(torch.as_tensor(buffer.log_probs, dtype=torch.float32).reshape(T, N, 1))
    storage.value_preds[:-1].copy_(torch.as_tensor(buffer.values, dtype=torch.float32).reshape(T, N, 1))
    storage.returns.copy_(torch.as_tensor(buffer.returns, dtype=torch.float32).reshape(T, N, 1))
    return storage


@pytest.mark.parametrize("by_hand", [True, False])
def test_one_ppo_update_moves_the_parameters_as_sb3s(by_hand):
    config = zoo_run().to_dict()
    assert config["num_mini_batch"] == 1  # the whole rollout: the minibatch order is irrelevant
    model = sb3_model_after_one_rollout(config)
    obs_space, act_space = model.observation_space, model.action_space
    policy, before = make_policy(obs_space, act_space), make_policy(obs_space, act_space)
    copy_weights(model, policy)
    copy_weights(model, before)
    storage = storage_from(model.rollout_buffer, obs_space, act_space.shape[0])
    advantages = storage.returns - storage.value_preds[:-1]
    np.testing.assert_allclose(advantages.reshape(-1).numpy(), model.rollout_buffer.advantages.reshape(-1), rtol=1e-5)

    gradient = HandGradient(fast_mlp(policy)) if by_hand else None
    agent = PPO(policy, gradient=gradient, lr=config["lr"], clip_param=config["clip_param"],
                ppo_epoch=config["ppo_epoch"], num_mini_batch=1, eps=config["eps"],
                value_loss_coef=config["value_loss_coef"], entropy_coef=config["entropy_coef"],
                max_grad_norm=config["max_grad_norm"], use_clipped_value_loss=config["clip_value_loss"],
                norm_adv=config["norm_adv"])  # fmt: skip
    agent.update(storage)
    model.train()

    after = make_policy(obs_space, act_space)
    copy_weights(model, after)
    moved = [(p - q).abs().max().item() for p, q in zip(policy.parameters(), after.parameters())]
    steps = [(p - q).abs().max().item() for p, q in zip(after.parameters(), before.parameters())]
    assert max(steps) > 1e-4  # SB3's update moved its weights: the comparison means something
    assert max(moved) < 1e-5, moved


#: Episodes cut short so that a few rollouts hold many ends: (entry point, max steps). A rollout
#: of InvertedPendulum's 32 steps then holds truncations (bootstrapped from V(final_obs)) as well
#: as terminations (the pole falls); HalfCheetah never terminates.
SHORT_ENVS = {
    "InvertedPendulum-v5": ("gymnasium.envs.mujoco.inverted_pendulum_v5:InvertedPendulumEnv", 8),
    "HalfCheetah-v5": ("gymnasium.envs.mujoco.half_cheetah_v5:HalfCheetahEnv", 100),
}


@pytest.fixture
def short_env(request):
    """The id of ``request.param`` (a key of SHORT_ENVS) registered with short episodes."""
    entry_point, max_steps = SHORT_ENVS[request.param]
    env_id = f"a2c_ppo_test/Short{request.param}"
    gym.register(env_id, entry_point=entry_point, max_episode_steps=max_steps)
    yield env_id
    del gym.registry[env_id]


class SB3Rollout(NamedTuple):
    """One of SB3's training iterations: the parameters it started from and what it drew."""

    policy_before: Policy  # SB3's parameters before the rollout, as our Policy
    actions: torch.Tensor  # (T, N, A) the actions it sampled
    learning_rate: float  # the rate of its update


def sb3_training(
    config: dict, env_id: str, iterations: int, space_policy
) -> tuple[Any, list[SB3Rollout], list[np.ndarray]]:
    """SB3's PPO or A2C (``config["algo"]``) trained ``iterations`` rollouts on ``env_id`` with its VecNormalize, as
    ``benchmarks/sb3_entry.py`` runs it: the model, its iterations and its minibatch orders (the
    permutation of the rollout's samples it draws for each epoch). ``space_policy(spaces)``
    builds our Policy of the same shape, to hold its parameters."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    envs = make_vec_env(lambda: gym.make(env_id), n_envs=1, seed=1)
    envs = VecNormalize(envs, norm_obs=config["norm_obs"], norm_reward=config["norm_reward"], gamma=config["gamma"])
    model = (sb3.A2C if config["algo"] == "a2c" else sb3.PPO)(env=envs, seed=1, device="cpu", **sb3_arguments(config))
    record: list[SB3Rollout] = []
    before = space_policy(model.observation_space, model.action_space)

    class Recorder(BaseCallback):
        def _on_rollout_start(self) -> None:
            copy_weights(self.model, before)

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            actions = torch.as_tensor(self.model.rollout_buffer.actions, dtype=torch.float32)
            # the rate of the update that follows: SB3 moves its progress on after this callback
            rate = self.model.lr_schedule(1.0 - self.model.num_timesteps / self.model._total_timesteps)
            record.append(SB3Rollout(copy.deepcopy(before), actions, rate))

    permutations: list[np.ndarray] = []
    draw = np.random.permutation

    def recorded(n):
        permutations.append(draw(n))
        return permutations[-1]

    np.random.permutation = recorded  # RolloutBuffer.get: one per epoch
    try:
        model.learn(iterations * config["num_steps"], callback=Recorder())
    finally:
        np.random.permutation = draw
    return model, record, permutations


def replaying(policy: Policy, actions: torch.Tensor) -> ActFunction:
    """An act function that takes ``actions (T, N, A)`` in order (SB3's sampled ones) and our
    policy's value and log-probability of each."""
    replay = iter(actions)

    def act(obs, rnn_hxs, masks):
        action = next(replay)
        value, log_prob, _, rnn_hxs = policy.evaluate_actions(obs, rnn_hxs, masks, action)
        return value, action, log_prob, rnn_hxs

    return act


def entry_run(env_id: str, algo: str) -> RunConfig:
    """Our run config on ``env_id`` in float32. PPO: HalfCheetah-v5's entry, the zoo's
    HalfCheetah-v4 (512-step rollouts, 8 minibatches, 20 epochs, 256-wide ReLU towers without
    orthogonal init, log-std -2). A2C: the zoo's MuJoCo a2c.yml entry, SB3's A2C defaults with
    normalisation (1 env x 5 steps, RMSprop, n-step returns)."""
    run = resolve(["--env-name", "HalfCheetah-v5", "--algo", algo, "--seed", "1"]).config
    if algo == "ppo":
        assert run.num_mini_batch == 8 and run.activation == "relu" and not run.ortho_init
    else:
        run = run.replace(**zoo_a2c(1e6, normalize=True), log_std_init=defaults()["log_std_init"])
    return run.replace(env_name=env_id, precision="fp32")


@pytest.mark.parametrize(
    "short_env, algo, iterations",
    [("InvertedPendulum-v5", "ppo", 60), ("HalfCheetah-v5", "ppo", 3), ("HalfCheetah-v5", "a2c", 300)],
    indirect=["short_env"],
)
def test_training_iterations_follow_sb3s_with_its_actions_replayed(short_env, algo, iterations, monkeypatch):
    """Whole iterations (rollout with normalisation, ends, returns, the update with its
    minibatches and learning rate, the optimizer's state carried over) with SB3's sampled
    actions and minibatch orders replayed: our parameters stay SB3's. PPO on InvertedPendulum
    takes the zoo's settings (one minibatch), on HalfCheetah its entry's (8 minibatches x 20
    epochs); A2C on HalfCheetah the zoo's MuJoCo settings (RMSprop, 5-step rollouts)."""
    run = zoo_run(short_env) if "Pendulum" in short_env else entry_run(short_env, algo)
    config = run.to_dict()
    space_policy = lambda *spaces: policy_for(run, *spaces)  # noqa: E731
    model, record, permutations = sb3_training(config, short_env, iterations, space_policy)
    # one per epoch (A2C: its one pass over the rollout, whose order a mean does not need)
    assert len(permutations) == iterations * (run.ppo_epoch if algo == "ppo" else 1)
    obs_space, act_space = model.observation_space, model.action_space
    policy = space_policy(obs_space, act_space)
    policy.load_state_dict(record[0].policy_before.state_dict())  # SB3's initial weights
    agent = make_agent(run, policy)
    envs = build_envs(run, 1, torch.device("cpu"))
    storage = RolloutStorage(run.num_steps, 1, obs_space.shape, act_space.shape[0])
    storage.obs[0].copy_(envs.reset(seed=1))
    ends = torch.zeros(2)
    rollouts_actions = [iteration.actions for iteration in record]
    monkeypatch.setattr(rollout_module, "acting_function", lambda *_, **__: replaying(policy, rollouts_actions.pop(0)))
    for iteration in record:
        rollout_module.collect_rollout(policy, envs, storage, run.use_proper_time_limits, fast=False)
        ends += torch.stack([storage.terminated.sum(), storage.truncated.sum()])
        with torch.no_grad():
            next_value = policy.get_value(storage.obs[-1], storage.recurrent_hidden_states[-1], storage.masks[-1])
        storage.compute_returns(next_value, run.use_gae, run.gamma, run.gae_lambda)
        set_learning_rate(agent.optimizer, iteration.learning_rate)
        with monkeypatch.context() as patch:  # the update's minibatches in SB3's order
            patch.setattr(torch, "randperm", lambda n, device=None: torch.as_tensor(permutations.pop(0)))
            agent.update(storage)
        storage.after_update()
    envs.close()

    assert ends[1] > 10 and (ends[0] > 10 or "Cheetah" in short_env)  # ends replayed many times
    after = space_policy(obs_space, act_space)
    copy_weights(model, after)
    moved = max((p - q).abs().max().item() for p, q in zip(after.parameters(), record[0].policy_before.parameters()))
    apart = max((p - q).abs().max().item() for p, q in zip(policy.parameters(), after.parameters()))
    assert moved > 5e-3  # SB3 trained: the comparison means something
    # float32 rounding over hundreds of Adam steps: about 5e-4 of the distance moved. With the
    # advantages standardised over the rollout instead of per minibatch, HalfCheetah's end 0.18 apart.
    assert apart < 2e-3 * moved, (apart, moved)
