"""NumpyActor: the rollout's numpy twin of Policy.act for small MLP policies."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from a2c_ppo.model import Policy
from a2c_ppo.numpy_actor import MAX_HIDDEN, NumpyActor, acting_function, numpy_actor_applies

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (7,), np.float32)
ACTION_SPACES = {"discrete": gym.spaces.Discrete(3), "box": gym.spaces.Box(-1.0, 1.0, (4,), np.float32)}


def _policy(kind: str, **base_kwargs) -> Policy:
    torch.manual_seed(0)
    policy = Policy(OBS_SPACE, ACTION_SPACES[kind], base_kwargs=base_kwargs)
    with torch.no_grad():
        for p in policy.parameters():  # away from the near-zero initial head
            p.normal_(0.0, 0.3)
    return policy


def _inputs(n: int = 6):
    return torch.randn(n, 7), torch.zeros(n, 1), torch.ones(n, 1)


@pytest.mark.parametrize("kind", ACTION_SPACES)
def test_deterministic_outputs_equal_policy_act(kind):
    policy = _policy(kind)
    obs, hxs, masks = _inputs()
    expected = policy.act(obs, hxs, masks, deterministic=True)
    got = NumpyActor(policy, deterministic=True)(obs, hxs, masks)
    for name, e, g in zip(("value", "action", "log_prob", "rnn_hxs"), expected, got):
        assert g.dtype == e.dtype and g.shape == e.shape, name
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5, msg=name)


def test_gaussian_draws_the_same_noise_as_policy_act():
    policy = _policy("box")
    obs, hxs, masks = _inputs()
    torch.manual_seed(5)
    expected = policy.act(obs, hxs, masks)
    torch.manual_seed(5)
    got = NumpyActor(policy)(obs, hxs, masks)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ACTION_SPACES)
def test_sampled_log_prob_is_what_evaluate_actions_scores(kind):
    policy = _policy(kind)
    obs, hxs, masks = _inputs(64)
    value, action, log_prob, _ = NumpyActor(policy)(obs, hxs, masks)
    with torch.no_grad():
        value2, log_prob2, _, _ = policy.evaluate_actions(obs, hxs, masks, action)
    torch.testing.assert_close(log_prob, log_prob2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(value, value2, rtol=1e-5, atol=1e-5)


def test_categorical_samples_have_the_policy_frequencies():
    policy = _policy("discrete")
    obs = torch.randn(1, 7).expand(20000, 7).contiguous()
    torch.manual_seed(0)
    _, action, _, _ = NumpyActor(policy)(obs, torch.zeros(20000, 1), torch.ones(20000, 1))
    with torch.no_grad():
        _, features, _ = policy.base(obs[:1], None, None)
        probs = torch.softmax(policy.dist.linear(features), -1)[0]
    freq = torch.bincount(action.squeeze(-1), minlength=3).float() / 20000
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)


def test_follows_parameter_updates_without_being_rebuilt():
    policy = _policy("box")
    actor = NumpyActor(policy, deterministic=True)
    obs, hxs, masks = _inputs()
    before = actor(obs, hxs, masks)[0].clone()
    with torch.no_grad():
        policy.base.critic_linear.bias.add_(1.0)  # an in-place step, as the optimizer takes
    torch.testing.assert_close(actor(obs, hxs, masks)[0], before + 1.0)
    policy.load_state_dict({k: torch.zeros_like(v) for k, v in policy.state_dict().items()})
    assert actor(obs, hxs, masks)[0].abs().sum() == 0


def test_applies_only_to_small_feed_forward_mlps_on_the_cpu():
    assert numpy_actor_applies(_policy("box"))
    assert not numpy_actor_applies(_policy("box", recurrent=True))
    assert not numpy_actor_applies(_policy("box", hidden_size=MAX_HIDDEN * 2))
    assert not numpy_actor_applies(Policy(OBS_SPACE, gym.spaces.MultiDiscrete([2, 3])))
    recurrent = _policy("discrete", recurrent=True)
    obs, hxs, masks = torch.randn(2, 7), torch.zeros(2, recurrent.recurrent_hidden_state_size), torch.ones(2, 1)
    torch.manual_seed(0)
    expected = recurrent.act(obs, hxs, masks)
    torch.manual_seed(0)
    for e, g in zip(expected, acting_function(recurrent)(obs, hxs, masks)):  # falls back to policy.act
        torch.testing.assert_close(g, e)
