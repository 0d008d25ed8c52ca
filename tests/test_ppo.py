"""PPO update: the first minibatch sees the rollout policy itself; metrics and early stop."""

import math

import gymnasium as gym
import pytest
import torch

import a2c_ppo.algo.ppo as ppo_module
from a2c_ppo.algo import PPO
from a2c_ppo.algo.ppo import ratio_metrics
from a2c_ppo.model import Policy
from tests.helpers import BOX_OBS, rollout_from_policy

PPO_KWARGS = dict(clip_param=0.2, ppo_epoch=4, num_mini_batch=4, value_loss_coef=0.5, entropy_coef=0.01, lr=3e-3)


@pytest.mark.parametrize("action_space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))], ids=["discrete", "box"])
def test_first_minibatch_has_ratio_one_and_no_clipping(action_space):
    torch.manual_seed(0)
    policy = Policy(BOX_OBS, action_space)
    rollouts = rollout_from_policy(policy, BOX_OBS, action_space)
    agent = PPO(policy, **PPO_KWARGS)
    seen = []
    original = agent.losses

    def spy(batch):
        with torch.no_grad():
            _, log_probs, _, _ = policy.evaluate_actions(
                batch.obs, batch.recurrent_hidden_states, batch.masks, batch.actions
            )
        seen.append(((log_probs - batch.old_action_log_probs).exp(), original(batch)))
        return seen[-1][1]

    agent.losses = spy  # type: ignore[method-assign]
    metrics = agent.update(rollouts)
    first_ratio, first_losses = seen[0]
    torch.testing.assert_close(first_ratio, torch.ones_like(first_ratio), atol=1e-6, rtol=0)
    first_metrics = ratio_metrics(first_losses["log_ratio"], agent.clip_param)
    assert first_metrics["clipfrac"].item() == 0.0
    assert abs(first_metrics["approx_kl"].item()) < 1e-7
    # later minibatches see a changed policy
    assert not torch.allclose(seen[-1][0], torch.ones_like(seen[-1][0]))
    assert set(metrics) >= {"policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "explained_variance"}
    assert metrics["num_gradient_steps"] == 16
    assert all(math.isfinite(v) for v in metrics.values())


def test_target_kl_stops_the_update_early():
    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(3))
    rollouts = rollout_from_policy(policy, BOX_OBS, gym.spaces.Discrete(3))
    agent = PPO(policy, **PPO_KWARGS, target_kl=1e-9)
    metrics = agent.update(rollouts)
    # the first minibatch has KL 0 and steps; the second already exceeds 1e-9 and stops
    assert metrics["num_gradient_steps"] == 1


def test_update_reduces_the_loss_on_fixed_data():
    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(3))
    rollouts = rollout_from_policy(policy, BOX_OBS, gym.spaces.Discrete(3))
    agent = PPO(policy, **{**PPO_KWARGS, "ppo_epoch": 10})
    first = agent.update(rollouts)
    second = agent.update(rollouts)
    assert second["value_loss"] < first["value_loss"]


def count_item_calls(monkeypatch) -> list[int]:
    """Count ``Tensor.item`` calls (host syncs) from here on."""
    calls: list[int] = []
    original = torch.Tensor.item

    def item(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    return calls


@pytest.mark.parametrize("target_kl", [None, 10.0])
def test_update_syncs_with_the_host_only_for_the_kl_check(monkeypatch, target_kl):
    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(3))
    rollouts = rollout_from_policy(policy, BOX_OBS, gym.spaces.Discrete(3))
    agent = PPO(policy, **PPO_KWARGS, target_kl=target_kl)
    calls = count_item_calls(monkeypatch)
    metrics = agent.update(rollouts)
    # the metrics come back in one .tolist(); with target_kl, one KL check per minibatch
    assert len(calls) == (0 if target_kl is None else 16)
    assert set(metrics) == {
        "policy_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "clipfrac",
        "grad_norm",
        "explained_variance",
        "num_gradient_steps",
    }
    assert all(isinstance(v, float) for v in metrics.values())


def test_non_finite_rewards_show_in_the_metrics():
    """The loop stops on non-finite metrics: a NaN return must reach the losses and grad_norm."""
    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(3))
    rollouts = rollout_from_policy(policy, BOX_OBS, gym.spaces.Discrete(3))
    rollouts.returns[3, 1] = float("nan")
    metrics = PPO(policy, **PPO_KWARGS).update(rollouts)
    assert not math.isfinite(metrics["value_loss"]) and not math.isfinite(metrics["grad_norm"])


def test_grad_norm_is_the_mean_pre_clip_norm(monkeypatch):
    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(3))
    rollouts = rollout_from_policy(policy, BOX_OBS, gym.spaces.Discrete(3))
    agent = PPO(policy, **{**PPO_KWARGS, "ppo_epoch": 1, "num_mini_batch": 2})
    norms = []
    original = ppo_module.clip_flat_gradient

    def spy(grad, max_norm):
        norms.append(original(grad, max_norm).item())
        return torch.tensor(norms[-1])

    monkeypatch.setattr(ppo_module, "clip_flat_gradient", spy)
    metrics = agent.update(rollouts)
    assert len(norms) == 2 and max(norms) > agent.max_grad_norm  # clipping was active
    assert metrics["grad_norm"] == pytest.approx(sum(norms) / 2, rel=1e-6)


@pytest.mark.parametrize("scope", ["rollout", "minibatch"])
def test_advantages_are_standardised_over_the_rollout_or_each_minibatch(scope):
    """Each minibatch's advantages as the loss sees them, against ``(A - mean) / (std + 1e-8)``
    computed by hand (unbiased std) over the whole rollout or over that minibatch's rows."""
    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(3))
    rollouts = rollout_from_policy(policy, BOX_OBS, gym.spaces.Discrete(3))
    raw_all = (rollouts.returns - rollouts.value_preds[:-1]).reshape(-1).tolist()
    agent = PPO(policy, **{**PPO_KWARGS, "ppo_epoch": 1}, norm_adv=True, norm_adv_scope=scope)
    seen = []
    original = agent.losses
    agent.losses = lambda batch: seen.append(batch) or original(batch)  # type: ignore[method-assign]
    agent.update(rollouts)

    def by_hand(values: list[float], over: list[float]) -> list[float]:
        mean = sum(over) / len(over)
        std = math.sqrt(sum((x - mean) ** 2 for x in over) / (len(over) - 1))
        return [(x - mean) / (std + 1e-8) for x in values]

    assert len(seen) == 4
    for batch in seen:
        raw = (batch.returns - batch.value_preds).reshape(-1).tolist()  # the rows' advantages
        expected = by_hand(raw, raw_all if scope == "rollout" else raw)
        torch.testing.assert_close(batch.advantages.reshape(-1), torch.tensor(expected), atol=1e-5, rtol=1e-5)
        if scope == "minibatch":
            assert abs(batch.advantages.mean().item()) < 1e-6
