"""gSDE: the state-dependent Gaussian against hand computation, the noise matrices and their
resampling, the policy and fast-path wiring, and short training runs."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from a2c_ppo.arguments import resolve
from a2c_ppo.builders import build_envs, policy_for
from a2c_ppo.distributed import DistContext
from a2c_ppo.errors import ConfigError
from a2c_ppo.fastpath import why_not_fast
from a2c_ppo.rollout import collect_rollout
from a2c_ppo.sde import (
    VARIANCE_FLOOR,
    StateDependentNoiseHead,
    is_due,
    noise_rows,
    resample_noise,
    state_dependent_log_std,
)
from a2c_ppo.session import run
from a2c_ppo.trainer import Trainer
from tests.helpers import local_run_flags, run_main

F, A = 5, 2


def head(log_std_init: float = -0.5, sample_freq: int = -1, seed: int = 0) -> StateDependentNoiseHead:
    torch.manual_seed(seed)
    sde = StateDependentNoiseHead(F, A, log_std_init, sample_freq)
    with torch.no_grad():  # an uneven std, so that every (feature, action) pair matters
        sde.log_std.add_(torch.linspace(-0.3, 0.3, F * A).reshape(F, A))
    return sde


def hand_log_prob(mean: np.ndarray, var: np.ndarray, action: np.ndarray) -> np.ndarray:
    """log N(action; mean, var) summed over the action dimensions, written out."""
    return np.sum(-((action - mean) ** 2) / (2 * var) - 0.5 * np.log(2 * math.pi * var), axis=-1)


def hand_variance(phi: np.ndarray, log_std: np.ndarray) -> np.ndarray:
    """var_j = sum_i phi_i^2 exp(log_std_ij)^2 (+ the floor)."""
    return np.einsum("bi,ij->bj", phi**2, np.exp(log_std) ** 2) + VARIANCE_FLOOR


@torch.no_grad()
def test_the_log_prob_of_a_sampled_action_is_the_gaussian_with_the_state_dependent_variance():
    sde = head()
    phi = torch.randn(7, F)
    sde.resample(7)
    action, log_prob = sde.act(phi, deterministic=False)
    mean = sde.mean(phi).detach().numpy()
    var = hand_variance(phi.numpy(), sde.log_std.detach().numpy())
    expected = hand_log_prob(mean, var, action.numpy())
    np.testing.assert_allclose(log_prob[:, 0].numpy(), expected, rtol=1e-5)
    dist = sde(phi)  # the update's path: the same density, and the Gaussian's entropy
    np.testing.assert_allclose(dist.log_probs(action)[:, 0].detach().numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(dist.entropy().detach().numpy(), np.sum(0.5 * np.log(2 * math.pi * math.e * var), -1),
                               rtol=1e-5)  # fmt: skip
    torch_normal = torch.distributions.Normal(torch.from_numpy(mean), torch.from_numpy(np.sqrt(var)))
    np.testing.assert_allclose(torch_normal.log_prob(action).sum(-1).numpy(), expected, rtol=1e-5)


@torch.no_grad()
def test_each_row_acts_with_its_own_matrix_and_other_batches_share_the_first():
    sde = head()
    sde.resample(3)
    phi = torch.randn(3, F)
    action, _ = sde.act(phi, deterministic=False)
    mean = sde.mean(phi).detach()
    for i in range(3):
        torch.testing.assert_close(action[i], mean[i] + phi[i] @ sde.exploration[i])
    one = torch.randn(2, F)  # an evaluation batch of another size
    torch.testing.assert_close(sde.act(one, False)[0], sde.mean(one).detach() + one @ sde.exploration[0])
    with noise_rows(_holder(sde), slice(1, 3)):
        torch.testing.assert_close(sde.act(phi[1:], False)[0], action[1:])
    assert sde.rows == slice(None)


def _holder(sde: StateDependentNoiseHead) -> torch.nn.Module:
    module = torch.nn.Module()
    module.dist = sde
    return module


@torch.no_grad()
def test_the_noise_is_a_smooth_function_of_the_state_until_resampled():
    sde = head()
    phi = torch.randn(1, F)
    first = sde.act(phi, False)[0]
    torch.testing.assert_close(sde.act(phi, False)[0], first)  # same state, same matrix: same action
    torch.testing.assert_close(sde.act(2 * phi, False)[0] - sde.mean(2 * phi), 2 * (first - sde.mean(phi)))
    sde.resample(1)
    assert not torch.equal(sde.act(phi, False)[0], first)
    torch.testing.assert_close(sde.act(phi, deterministic=True)[0], sde.mean(phi).detach())


@torch.no_grad()
def test_over_the_draw_of_the_matrix_the_noise_has_the_state_dependent_variance():
    sde = head()
    phi = torch.randn(1, F)
    sde.resample(20_000)
    noise = sde.noise(phi.expand(20_000, F))
    var = hand_variance(phi.numpy(), sde.log_std.detach().numpy())[0]
    np.testing.assert_allclose(noise.mean(0).numpy(), 0.0, atol=4 * np.sqrt(var / 20_000).max())
    np.testing.assert_allclose(noise.var(0).numpy(), var, rtol=0.05)


def test_the_log_std_learns_and_the_features_get_no_gradient_through_the_variance():
    sde = head()
    phi = torch.randn(4, F, requires_grad=True)
    state_dependent_log_std(phi, sde.log_std).sum().backward()
    assert phi.grad is None and sde.log_std.grad is not None and bool(sde.log_std.grad.abs().sum() > 0)


@pytest.mark.parametrize("freq, due", [(-1, [0]), (4, [0, 4, 8]), (1, list(range(10)))])
def test_the_noise_is_resampled_every_sample_freq_steps_or_once_per_rollout(freq, due):
    assert [step for step in range(10) if is_due(step, freq)] == due
    policy = _holder(head(sample_freq=freq))
    draws = []
    for step in range(10):
        before = policy.dist.exploration
        resample_noise(policy, 3, step)
        if policy.dist.exploration is not before:
            draws.append(step)
            assert policy.dist.exploration.shape == (3, F, A)
    assert draws == due


def test_other_heads_are_left_alone():
    config = resolve(["--env-name", "Pendulum-v1", "--preset", "mujoco"]).config
    env = gym.make("Pendulum-v1")
    policy = policy_for(config, env.observation_space, env.action_space)
    state = {k: v.clone() for k, v in policy.state_dict().items()}
    resample_noise(policy, 4, 0)
    with noise_rows(policy, slice(0, 2)):
        pass
    assert all(torch.equal(v, policy.state_dict()[k]) for k, v in state.items())


def test_use_sde_builds_the_gsde_head_which_the_fast_path_refuses():
    config = resolve(["--env-name", "Pendulum-v1", "--preset", "mujoco", "--use-sde", "--log-std-init", "-2",
                      "--sde-sample-freq", "8"]).config  # fmt: skip
    env = gym.make("Pendulum-v1")
    policy = policy_for(config, env.observation_space, env.action_space)
    assert isinstance(policy.dist, StateDependentNoiseHead) and policy.dist.sample_freq == 8
    assert policy.dist.log_std.shape == (64, 1) and bool((policy.dist.log_std == -2).all())
    assert why_not_fast(policy) == "the action head is gSDE's (--use-sde)"
    assert "dist.exploration" not in policy.state_dict()  # drawn anew every rollout, never saved


def test_use_sde_needs_continuous_actions():
    with pytest.raises(ConfigError, match=r"gSDE \(--use-sde\) needs a 1-D Box action space"):
        resolve(["--use-sde"])


def test_a_rollout_draws_new_matrices_for_every_env_at_its_start(tmp_path):
    argv = ["--env-name", "Pendulum-v1", "--num-steps", "8", "--num-mini-batch", "1", "--num-env-steps", "64",
            *local_run_flags(tmp_path)]  # fmt: skip
    request = resolve(argv)
    trainer = Trainer(request.config, DistContext(device=torch.device("cpu")))
    try:
        trainer.reset_envs()
        before = trainer.policy.dist.exploration
        collect_rollout(trainer.policy, trainer.envs, trainer.rollouts, True)
        assert trainer.policy.dist.exploration is not before
        assert trainer.policy.dist.exploration.shape[0] == request.config.num_processes
    finally:
        trainer.close()


@pytest.mark.parametrize("algo", ["ppo", "a2c", "acktr"])
def test_training_with_gsde_runs_and_stays_finite(tmp_path, algo):
    argv = ["--env-name", "Pendulum-v1", "--algo", algo, "--use-sde", "--num-env-steps", "2048",
            *local_run_flags(tmp_path)]  # fmt: skip
    if algo == "ppo":
        argv += ["--num-steps", "256", "--num-mini-batch", "4"]
    result = run(resolve(argv).config)
    assert result.env_steps == 2048 and result.history and all(np.isfinite(r) for _, r in result.history)


def test_main_trains_pendulum_with_use_sde(tmp_path):
    out = run_main("--env-name", "Pendulum-v1", "--use-sde", "--num-env-steps", "4096", *local_run_flags(tmp_path))
    assert "Settings of Pendulum-v1" in out and "Done: 4096 env steps" in out


def test_sampled_replay_draws_new_noise_on_gsde_schedule(tmp_path):
    """A non-deterministic act or replay draws new matrices every --sde-sample-freq steps (and at
    each start), as the rollout does; the deterministic one stays the mean."""
    from a2c_ppo.api import load
    from a2c_ppo.evaluation import run_episodes

    argv = ["--env-name", "Pendulum-v1", "--use-sde", "--sde-sample-freq", "4", "--num-env-steps", "256",
            "--num-steps", "64", "--num-mini-batch", "1", *local_run_flags(tmp_path)]  # fmt: skip
    agent = load(run(resolve(argv).config).checkpoint)
    obs = np.array([1.0, 0.0, 0.0], np.float32)
    head, draws = agent.policy.dist, []
    draw = head.resample
    head.resample = lambda num_envs: (draws.append(num_envs), draw(num_envs))  # counts the draws
    agent.act(obs)  # a deterministic act first: the sampled ones still start with a draw of their own
    sampled = [float(agent.act(obs, deterministic=False)[0]) for _ in range(8)]
    assert draws == [1, 1]  # at the first sampled act and the fifth
    assert len(set(sampled[:4])) == 1 and len(set(sampled[4:])) == 1 and sampled[0] != sampled[4]
    agent.reset()
    assert float(agent.act(obs, deterministic=False)[0]) not in sampled  # new episodes, new matrices
    assert len({float(agent.act(obs)[0]) for _ in range(3)}) == 1
    draws.clear()
    envs = build_envs(agent.config, 1, torch.device("cpu"))
    try:
        run_episodes(agent.policy, envs, 1, deterministic=True, seed=0)
        assert draws == []  # the deterministic replay (and training's evaluations) leave the matrices alone
        run_episodes(agent.policy, envs, 1, deterministic=False, seed=0)
        assert draws == [1] * 50  # Pendulum's 200 steps, a draw every 4
    finally:
        envs.close()
