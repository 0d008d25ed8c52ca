"""Policy heads: act and evaluate_actions agree, and log-probs match the formulas."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from a2c_ppo.model import Policy

OBS_SPACE = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
ACTION_SPACES = {
    "discrete": gym.spaces.Discrete(4),
    "box": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
    "multibinary": gym.spaces.MultiBinary(3),
    "multidiscrete": gym.spaces.MultiDiscrete([2, 3, 4]),
}


@pytest.mark.parametrize("kind", ACTION_SPACES)
def test_act_log_prob_equals_evaluate_actions_log_prob(kind):
    torch.manual_seed(0)
    policy = Policy(OBS_SPACE, ACTION_SPACES[kind])
    obs = torch.randn(32, 5)
    hxs, masks = torch.zeros(32, 1), torch.ones(32, 1)
    value, action, log_prob, _ = policy.act(obs, hxs, masks)
    value2, log_prob2, entropy, _ = policy.evaluate_actions(obs, hxs, masks, action)
    assert log_prob.shape == (32, 1) and entropy.shape == (32,) and value.shape == (32, 1)
    torch.testing.assert_close(log_prob, log_prob2)
    torch.testing.assert_close(value, value2)
    space = ACTION_SPACES[kind]
    if kind != "box":  # Gaussian samples are unbounded; the env side clips them
        assert all(space.contains(a.numpy().astype(space.dtype).reshape(space.shape or ())) for a in action)


def test_gaussian_log_prob_and_entropy_match_formula():
    torch.manual_seed(0)
    policy = Policy(OBS_SPACE, ACTION_SPACES["box"])
    with torch.no_grad():
        policy.dist.log_std.copy_(torch.tensor([0.1, -0.2, 0.3]))
    obs, action = torch.randn(4, 5), torch.randn(4, 3)
    _, log_prob, entropy, _ = policy.evaluate_actions(obs, torch.zeros(4, 1), torch.ones(4, 1), action)
    _, features, _ = policy.base(obs, None, None)
    mean, log_std = policy.dist.mean(features), policy.dist.log_std
    expected = (-((action - mean) ** 2) / (2 * torch.exp(2 * log_std)) - log_std - 0.5 * math.log(2 * math.pi)).sum(
        -1, keepdim=True
    )
    torch.testing.assert_close(log_prob, expected)
    expected_entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum().expand(4)
    torch.testing.assert_close(entropy, expected_entropy)


def test_categorical_log_prob_is_log_softmax_and_mode_is_argmax():
    torch.manual_seed(0)
    policy = Policy(OBS_SPACE, ACTION_SPACES["discrete"])
    obs = torch.randn(6, 5)
    _, features, _ = policy.base(obs, None, None)
    logits = policy.dist.linear(features)
    action = torch.tensor([[0], [1], [2], [3], [0], [1]])
    _, log_prob, _, _ = policy.evaluate_actions(obs, torch.zeros(6, 1), torch.ones(6, 1), action)
    torch.testing.assert_close(log_prob, torch.log_softmax(logits, -1).gather(1, action))
    _, det_action, _, _ = policy.act(obs, torch.zeros(6, 1), torch.ones(6, 1), deterministic=True)
    torch.testing.assert_close(det_action, logits.argmax(-1, keepdim=True))
