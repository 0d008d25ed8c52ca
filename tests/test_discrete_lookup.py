"""Discrete observation parts enter the MLP towers' first layer as its weight's columns: the
numbers a one-hot times the weight gives, without the (B, n) one-hot."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from a2c_ppo.algo.kfac import KFACOptimizer
from a2c_ppo.encoders import LOOKUP_MIN_WIDTH, ObservationEncoder, OneHot
from a2c_ppo.model import Policy
from a2c_ppo.observations import obs_from_numpy


def layer(weight: list[list[float]], bias: list[float]) -> nn.Linear:
    linear = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight))
        linear.bias.copy_(torch.tensor(bias))
    return linear


W = [[0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0, 9.0]]
B = [100.0, 200.0]


@pytest.mark.parametrize(
    ("space", "obs", "expected"),
    [
        # Discrete(5, start=-2): classes -2 and 2 are columns 0 and 4
        (gym.spaces.Discrete(5, start=-2), torch.tensor([-2, 2]), [[100.0, 205.0], [104.0, 209.0]]),
        # MultiDiscrete([2, 3], start=[0, 1]): (1, 3) sets columns 1 and 2 + 2 = 4
        (gym.spaces.MultiDiscrete([2, 3], start=[0, 1]), torch.tensor([[1, 3]]), [[105.0, 215.0]]),
        # a Discrete(3) part "a" (columns 0-2) before a Box(2,) part "b" (columns 3, 4): a = 1, b = (1, 2)
        (
            gym.spaces.Dict({"a": gym.spaces.Discrete(3), "b": gym.spaces.Box(-9, 9, (2,))}),
            {"a": torch.tensor([1]), "b": torch.tensor([[1.0, 2.0]])},
            [[1.0 + 3.0 + 2 * 4.0 + 100.0, 6.0 + 8.0 + 2 * 9.0 + 200.0]],
        ),
    ],
    ids=["discrete", "multidiscrete", "dict"],
)
def test_a_discrete_part_adds_its_classes_columns_by_hand(space, obs, expected):
    from a2c_ppo.observations import TensorDict

    encoder = ObservationEncoder(space)
    obs = TensorDict(obs) if isinstance(obs, dict) else obs
    linear = layer(W, B)
    torch.testing.assert_close(encoder.linear(encoder.encode(obs), linear), torch.tensor(expected))
    torch.testing.assert_close(linear(encoder(obs)), torch.tensor(expected))  # the one-hot's product


SPACES = {
    "discrete": gym.spaces.Discrete(100),
    "shifted": gym.spaces.Discrete(70, start=-3),
    "multidiscrete": gym.spaces.MultiDiscrete([[300, 40], [5, 2]], start=[[1, 0], [0, -2]]),
    "dict": gym.spaces.Dict(
        {
            "a": gym.spaces.Box(-1, 1, (3,)),
            "b": gym.spaces.MultiBinary(2),
            "c": gym.spaces.Discrete(500),
            "d": gym.spaces.Box(0, 255, (1, 6, 6), np.uint8),
            "e": gym.spaces.MultiDiscrete([20, 3]),
        }
    ),
}


def batch(space: gym.Space, rows: int) -> object:
    space.seed(0)
    samples = [space.sample() for _ in range(rows)]
    if isinstance(space, gym.spaces.Dict):
        return obs_from_numpy({key: np.stack([s[key] for s in samples]) for key in space.spaces}, space)
    return obs_from_numpy(np.stack(samples), space)


def outputs_and_gradients(policy: Policy, obs: object) -> list[torch.Tensor]:
    rows = 12
    hxs, masks = torch.zeros(rows, 1), torch.ones(rows, 1)
    actions = torch.arange(rows).remainder(3)[:, None]
    value, log_prob, entropy, _ = policy.evaluate_actions(obs, hxs, masks, actions)  # type: ignore[arg-type]
    policy.zero_grad()
    (value.pow(2).mean() - log_prob.mean() - 0.1 * entropy.mean()).backward()
    return [value, log_prob, entropy, *(p.grad.clone() for p in policy.parameters())]  # type: ignore[union-attr]


@pytest.mark.parametrize("name", list(SPACES))
def test_lookup_and_one_hot_give_the_same_outputs_and_gradients(name):
    """The same weights and observations through the lookup and through the one-hots (which a
    hooked first layer still takes, as K-FAC needs its inputs): outputs and every gradient."""
    space = SPACES[name]
    torch.manual_seed(0)
    policy = Policy(space, gym.spaces.Discrete(3))
    assert policy.base.encoder.lookup_pays  # (narrower ones take the one-hots)
    obs = batch(space, 12)
    lookup = outputs_and_gradients(policy, obs)
    hooks = [tower[0].register_forward_hook(lambda *args: None) for tower in (policy.base.actor, policy.base.critic)]
    one_hot = outputs_and_gradients(policy, obs)
    for hook in hooks:
        hook.remove()
    assert len(lookup) == len(one_hot) == 3 + len(list(policy.parameters()))
    for a, b in zip(lookup, one_hot):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_wide_discrete_observation_builds_no_one_hot(monkeypatch):
    """A Discrete(200000) observation: acting and the update never make a (B, 200000) one-hot
    (which trained at about 5 steps a second on 1 GB)."""
    space = gym.spaces.Discrete(200_000)
    torch.manual_seed(0)
    policy = Policy(space, gym.spaces.Discrete(2))

    def refused(self, x):
        raise AssertionError("a one-hot was built")

    monkeypatch.setattr(OneHot, "forward", refused)
    obs = torch.tensor([0, 199_999, 7])
    hxs, masks = torch.zeros(3, 1), torch.ones(3, 1)
    value, action, _, _ = policy.act(obs, hxs, masks)
    critic = policy.base.critic
    with torch.no_grad():  # by hand: the first layer's columns 0, 199999 and 7, then the rest of the tower
        hidden = torch.tanh(critic[2](torch.tanh(critic[0].weight[:, obs].t() + critic[0].bias)))
        torch.testing.assert_close(value, policy.base.critic_linear(hidden))
    _, log_prob, _, _ = policy.evaluate_actions(obs, hxs, masks, action)
    log_prob.sum().backward()
    grad = policy.base.actor[0].weight.grad
    assert grad is not None and set(grad.abs().sum(0).nonzero().flatten().tolist()) <= {0, 7, 199_999}


@pytest.mark.parametrize(
    ("space", "lookup"),
    [
        (gym.spaces.Discrete(LOOKUP_MIN_WIDTH), True),
        (gym.spaces.Discrete(LOOKUP_MIN_WIDTH - 1), False),
        (gym.spaces.MultiDiscrete([2 * LOOKUP_MIN_WIDTH, LOOKUP_MIN_WIDTH]), True),  # 192 columns for two 1s
        # 128 columns for 64 1s: gathering 64 columns a row made a PPO update 6x slower than the product
        (gym.spaces.MultiDiscrete([2] * LOOKUP_MIN_WIDTH), False),
        (gym.spaces.Dict({"a": gym.spaces.Discrete(100), "b": gym.spaces.MultiDiscrete([3] * 20)}), False),
    ],
    ids=["discrete", "narrow", "two-wide", "many-narrow", "dict-narrow"],
)
def test_the_lookup_is_taken_where_the_one_hots_are_wide_for_the_ones_they_set(space, lookup, monkeypatch):
    """Columns of the one-hots per 1 they set, not their width in all, decides: many narrow
    parts (each row gathering a column per part) keep the one-hots."""
    torch.manual_seed(0)
    policy = Policy(space, gym.spaces.Discrete(2))
    calls: list[bool] = []
    linear = ObservationEncoder.linear
    monkeypatch.setattr(ObservationEncoder, "linear", lambda *args: calls.append(True) or linear(*args))
    policy.act(batch(space, 3), torch.zeros(3, 1), torch.ones(3, 1))
    assert bool(calls) is lookup


def test_k_fac_still_records_the_first_layers_inputs():
    """ACKTR's K-FAC hooks every Linear: its first layers run as modules, on the one-hots."""
    torch.manual_seed(0)
    policy = Policy(gym.spaces.Discrete(LOOKUP_MIN_WIDTH), gym.spaces.Discrete(2))
    optimizer = KFACOptimizer(policy)
    obs = torch.tensor([0, 3, 4])
    with optimizer.recording():
        policy.evaluate_actions(obs, torch.zeros(3, 1), torch.ones(3, 1), torch.zeros(3, 1, dtype=torch.long))
    first = policy.base.actor[0]
    assert first in optimizer._captured
    torch.testing.assert_close(optimizer._captured[first][0], torch.eye(LOOKUP_MIN_WIDTH)[[0, 3, 4]])
