"""A2C: the update's gradient in closed form, sequence-mode evaluation, flags, end to end."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from a2c_ppo.algo import A2C, make_rmsprop
from a2c_ppo.algo.common import evaluate_rollout
from a2c_ppo.arguments import parse_args
from a2c_ppo.model import CNNBase, MLPBase, Policy
from tests.helpers import BOX_OBS, output_flags, progress_rows, rollout_from_policy, run_main


class LinearBase(nn.Module):
    """Actor features = the observation itself; the critic is one linear layer."""

    is_recurrent = False
    recurrent_hidden_state_size = 1

    def __init__(self, num_inputs: int) -> None:
        super().__init__()
        self.critic_linear = nn.Linear(num_inputs, 1)
        self.output_size = num_inputs

    def forward(self, inputs, rnn_hxs, masks):
        x = inputs.float()
        return self.critic_linear(x), x, rnn_hxs


def linear_softmax_policy(num_actions: int = 3) -> Policy:
    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(num_actions), base=LinearBase(4))
    with torch.no_grad():  # non-trivial action probabilities
        policy.dist.linear.weight.normal_(0.0, 0.5)
        policy.dist.linear.bias.normal_(0.0, 0.5)
        policy.base.critic_linear.bias.fill_(0.3)
    return policy


def params(policy: Policy) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in policy.named_parameters()}


@pytest.mark.parametrize("norm_adv", [False, True])
def test_a2c_gradient_equals_the_closed_form_for_a_linear_softmax_policy(norm_adv):
    policy = linear_softmax_policy()
    rollouts = rollout_from_policy(policy, BOX_OBS, gym.spaces.Discrete(3), T=6, N=3)
    value_coef, entropy_coef = 0.5, 0.05
    # Plain SGD with lr 1: the applied step is exactly minus the gradient.
    sgd = torch.optim.SGD(policy.parameters(), lr=1.0)
    agent = A2C(
        policy, sgd, value_loss_coef=value_coef, entropy_coef=entropy_coef, max_grad_norm=None, norm_adv=norm_adv
    )

    with torch.no_grad():
        B = 18
        X = rollouts.obs[:-1].reshape(B, 4)
        a = rollouts.actions.reshape(B)
        R = rollouts.returns.reshape(B)
        adv = R - rollouts.value_preds[:-1].reshape(B)
        if norm_adv:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        W, b = policy.dist.linear.weight.clone(), policy.dist.linear.bias.clone()
        w, c = policy.base.critic_linear.weight.reshape(4).clone(), policy.base.critic_linear.bias.clone()
        p = torch.softmax(X @ W.t() + b, dim=1)
        log_p = p.log()
        onehot = nn.functional.one_hot(a, 3).float()
        H = -(p * log_p).sum(1)
        v = X @ w + c
        # d/dlogits of -mean(adv * log p_a) and of -entropy_coef * mean(H)
        dZ = -(adv[:, None] / B) * (onehot - p) + (entropy_coef / B) * p * (log_p + H[:, None])
        dv = -value_coef * (R - v) / B  # d/dv of value_coef * 0.5 * mean((R - v)^2)
        expected = {
            "dist.linear.weight": dZ.t() @ X,
            "dist.linear.bias": dZ.sum(0),
            "base.critic_linear.weight": (dv @ X).reshape(1, 4),
            "base.critic_linear.bias": dv.sum().reshape(1),
        }
        expected_metrics = {
            "policy_loss": -(adv * log_p[torch.arange(B), a]).mean().item(),
            "value_loss": 0.5 * (R - v).pow(2).mean().item(),
            "entropy": H.mean().item(),
        }

    before = params(policy)
    metrics = agent.update(rollouts)
    after = params(policy)
    for name, grad in expected.items():
        torch.testing.assert_close(before[name] - after[name], grad, atol=1e-6, rtol=1e-5)
    for name, value in expected_metrics.items():
        assert metrics[name] == pytest.approx(value, rel=1e-5, abs=1e-7)
    assert metrics["grad_norm"] == pytest.approx(torch.cat([g.reshape(-1) for g in expected.values()]).norm().item())
    assert {"explained_variance", "num_gradient_steps"} <= set(metrics)
    assert "approx_kl" not in metrics and "clipfrac" not in metrics


def test_make_rmsprop_passes_its_hyper_parameters_and_a2c_clips_the_gradient_norm():
    policy = linear_softmax_policy()
    rmsprop = make_rmsprop(policy.parameters(), lr=7e-4, eps=1e-4, alpha=0.95)
    group = rmsprop.param_groups[0]
    assert (group["lr"], group["alpha"], group["eps"]) == (7e-4, 0.95, 1e-4)

    sgd = torch.optim.SGD(policy.parameters(), lr=1.0)
    agent = A2C(policy, sgd, value_loss_coef=0.5, entropy_coef=0.0, max_grad_norm=1e-3)
    rollouts = rollout_from_policy(policy, BOX_OBS, gym.spaces.Discrete(3), T=6, N=3)
    before = params(policy)
    agent.update(rollouts)
    step = torch.cat([(before[n] - p.detach()).reshape(-1) for n, p in policy.named_parameters()])
    assert step.norm().item() == pytest.approx(1e-3, rel=1e-4)


def small_policy(kind: str, action_space: gym.Space) -> tuple[Policy, gym.spaces.Box]:
    torch.manual_seed(0)
    if kind == "cnn":
        obs_space = gym.spaces.Box(0, 255, (2, 36, 36), np.uint8)
        return Policy(obs_space, action_space, base=CNNBase((2, 36, 36), hidden_size=16)), obs_space
    recurrent = kind.startswith("recurrent")
    rnn_type = "lstm" if kind == "recurrent-lstm" else "gru"
    return Policy(
        BOX_OBS, action_space, base=MLPBase(4, hidden_size=16, recurrent=recurrent, rnn_type=rnn_type)
    ), BOX_OBS


def image_rollout(policy: Policy, obs_space: gym.spaces.Box, action_space: gym.Space, T: int, N: int):
    """Like rollout_from_policy, for uint8 images."""
    from a2c_ppo.distributions import action_shape
    from a2c_ppo.storage import RolloutStorage

    g = torch.Generator().manual_seed(0)
    dim, dtype = action_shape(action_space)
    storage = RolloutStorage(
        T, N, obs_space.shape, dim, dtype, policy.recurrent_hidden_state_size, obs_dtype=torch.uint8
    )
    frame = lambda: torch.randint(0, 256, (N, *obs_space.shape), generator=g, dtype=torch.uint8)  # noqa: E731
    storage.obs[0].copy_(frame())
    for t in range(T):
        with torch.no_grad():
            value, action, log_prob, hxs = policy.act(
                storage.obs[t], storage.recurrent_hidden_states[t], storage.masks[t]
            )
        storage.insert(
            obs=frame(),
            recurrent_hidden_states=hxs,
            actions=action,
            action_log_probs=log_prob,
            value_preds=value,
            rewards=torch.randn(N, 1, generator=g),
            terminated=torch.rand(N, 1, generator=g) < 0.2,
            truncated=torch.zeros(N, 1, dtype=torch.bool),
            bootstrap_values=torch.zeros(N, 1),
        )
    storage.compute_returns(torch.zeros(N, 1), use_gae=True, gamma=0.99, gae_lambda=0.95)
    return storage


@pytest.mark.parametrize("kind", ["mlp", "recurrent-gru", "recurrent-lstm", "cnn"])
def test_whole_batch_evaluation_reproduces_the_rollout_and_updates(kind):
    """Evaluating all T*N samples at once (sequence mode for recurrent policies) gives the
    values and log-probs the policy produced step by step while acting."""
    action_space = gym.spaces.Discrete(3)
    policy, obs_space = small_policy(kind, action_space)
    if kind == "cnn":
        rollouts = image_rollout(policy, obs_space, action_space, T=4, N=2)
    else:
        rollouts = rollout_from_policy(policy, obs_space, action_space, T=8, N=3)
    with torch.no_grad():
        values, dist = evaluate_rollout(policy, rollouts)
        log_probs, entropy = dist.log_probs(rollouts.actions.reshape(len(values), -1)), dist.entropy()
    torch.testing.assert_close(values, rollouts.value_preds[:-1].reshape(-1, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(log_probs, rollouts.action_log_probs.reshape(-1, 1), atol=1e-5, rtol=1e-5)
    assert entropy.shape == (values.shape[0],)

    agent = A2C(policy, make_rmsprop(policy.parameters(), 1e-2, 1e-5, 0.99), value_loss_coef=0.5, entropy_coef=0.01)
    before = params(policy)
    metrics = agent.update(rollouts)
    assert all(np.isfinite(metrics[k]) for k in ("policy_loss", "value_loss", "entropy"))
    changed = {n for n, p in policy.named_parameters() if not torch.equal(before[n], p.detach())}
    if kind.startswith("recurrent"):
        assert any(n.startswith("base.rnn.") for n in changed)
    assert "dist.linear.weight" in changed and "base.critic_linear.weight" in changed


def test_a2c_with_a_gaussian_policy_updates_log_std():
    policy, _ = small_policy("mlp", gym.spaces.Box(-1, 1, (2,), np.float32))
    rollouts = rollout_from_policy(policy, BOX_OBS, gym.spaces.Box(-1, 1, (2,), np.float32), T=5, N=4)
    before = params(policy)
    rmsprop = make_rmsprop(policy.parameters(), 1e-2, 1e-5, 0.99)
    A2C(policy, rmsprop, value_loss_coef=0.5, entropy_coef=0.01).update(rollouts)
    assert not torch.equal(before["dist.log_std.bias"], policy.dist.log_std.bias.detach())


def test_per_algorithm_defaults_and_refusals(capsys):
    a2c = parse_args(["--algo", "a2c"])
    acktr = parse_args(["--algo", "acktr"])
    ppo = parse_args([])
    assert (a2c.lr, a2c.num_steps, a2c.norm_adv) == (7e-4, 5, False)
    assert (acktr.lr, acktr.num_steps, acktr.norm_adv) == (0.25, 20, False)
    assert ppo.norm_adv is True
    assert parse_args(["--algo", "a2c", "--norm-adv"]).norm_adv is True
    for argv, words in [
        (["--algo", "acktr", "--recurrent-policy"], "does not support --recurrent-policy"),
        (["--algo", "a2c", "--num-mini-batch", "4"], "--num-mini-batch only applies to --algo ppo"),
        (["--algo", "acktr", "--ppo-epoch", "3"], "--ppo-epoch only applies to --algo ppo"),
        (["--algo", "a2c", "--target-kl", "0.01"], "--target-kl only applies to --algo ppo"),
        (["--algo", "acktr", "--eps", "1e-3"], "--eps only applies to --algo ppo or a2c"),  # K-FAC has no epsilon
    ]:
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert words in capsys.readouterr().err
    parse_args(["--algo", "a2c", "--recurrent-policy"])  # recurrent A2C is fine


@pytest.mark.parametrize("algo", ["a2c", "acktr"])
def test_main_trains_and_resumes_end_to_end(tmp_path, algo):
    flags = ["--algo", algo, *"--num-processes 2 --num-steps 5 --log-interval 2 --vec-env sync".split()]
    flags += output_flags(tmp_path)
    out = run_main(*flags, "--num-env-steps", "40")
    assert f"Training {algo} on CartPole-v1: 4 updates of 10 steps" in out and "Updates 4/4, timesteps 40" in out
    checkpoint = tmp_path / "models" / algo / "CartPole-v1.pt"
    assert checkpoint.is_file()
    rows = [r for r in progress_rows(tmp_path / "runs") if r.get("losses/policy_loss")]
    assert [int(r["env_steps"]) for r in rows] == [20, 40]
    assert all(r["losses/value_loss"] and r["losses/entropy"] for r in rows)
    # the optimizer state (RMSprop / K-FAC factors) loads back with weights_only=True
    out = run_main("--resume", str(checkpoint), "--num-env-steps", "60", *output_flags(tmp_path / "resumed"))
    assert "Updates 6/6, timesteps 60" in out


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
def test_our_optimizers_step_exactly_like_torch_without_importing_dynamo(kind):
    """Run in a fresh interpreter: torch._dynamo must stay out, and the steps equal torch's
    (PPO's FlatAdam against torch's single-tensor Adam, A2C's RMSprop against torch's)."""
    code = f"""
import sys, torch
from a2c_ppo.algo.flat_params import FlatAdam, FlatParameters
from a2c_ppo.algo.optimizers import make_rmsprop
torch.manual_seed(0)
ours = [torch.nn.Parameter(torch.randn(7)), torch.nn.Parameter(torch.randn(2, 3))]
theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
start = [p.detach().clone() for p in ours]
adam = "{kind}" == "adam"
a = FlatAdam(FlatParameters(ours), 1e-2, 1e-5) if adam else make_rmsprop(ours, 1e-2, 1e-5, 0.9)
for i in range(6):
    a.flat.grad.copy_(torch.sin(a.flat.data * i))
    a.step()
dynamo = "torch._dynamo" in sys.modules
if adam:
    b = torch.optim.Adam(theirs, lr=1e-2, eps=1e-5, foreach=False)
else:
    b = torch.optim.RMSprop(theirs, lr=1e-2, eps=1e-5, alpha=0.9, foreach=True)
for i in range(6):
    for p in theirs:
        p.grad = torch.sin(p.detach() * i)
    b.step()
same = all(torch.equal(x, y) for x, y in zip(ours, theirs))
print(dynamo, same, all(bool((x != x0).all()) for x, x0 in zip(ours, start)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "True"]
