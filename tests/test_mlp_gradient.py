"""The hand-written backward pass of the MLP policy equals autograd's gradient of PPO's loss."""

import copy

import gymnasium as gym
import pytest
import torch

from a2c_ppo.algo import PPO
from a2c_ppo.algo.flat_params import FlatParameters
from a2c_ppo.algo.mlp_gradient import MLPGradient, applies
from a2c_ppo.algo.ppo import ppo_losses
from a2c_ppo.model import Policy, make_policy
from a2c_ppo.storage import Minibatch
from tests.helpers import BOX_OBS, rollout_from_policy

CLIP = 0.2
HEADS = {"categorical": gym.spaces.Discrete(3), "gaussian": gym.spaces.Box(-1.0, 1.0, (2,))}


def spread_batch(policy: Policy, space: gym.Space, rows: int = 64) -> Minibatch:
    """A minibatch whose ratios fall inside, below and above the clip range (advantages of
    both signs), whose value changes fall inside and outside theirs, and with rows where the
    ratio is exactly 1 (min's tie)."""
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(rows, 4, generator=g)
    with torch.no_grad():
        values, actions, log_probs, _ = policy.act(obs, torch.zeros(rows, 1), torch.ones(rows, 1))
    shift = torch.randn(rows, 1, generator=g) * 0.4
    shift[: rows // 4] = 0.0  # ratio 1: inside the clip range, min's arguments equal
    return Minibatch(
        obs=obs,
        recurrent_hidden_states=torch.zeros(rows, 1),
        actions=actions,
        value_preds=values + torch.randn(rows, 1, generator=g) * 0.3,
        returns=torch.randn(rows, 1, generator=g),
        masks=torch.ones(rows, 1),
        old_action_log_probs=log_probs + shift,
        advantages=torch.randn(rows, 1, generator=g),
    )


def autograd_gradient(policy: Policy, batch: Minibatch, clip_value_loss: bool, entropy_coef: float) -> torch.Tensor:
    values, log_probs, entropy, _ = policy.evaluate_actions(
        batch.obs, batch.recurrent_hidden_states, batch.masks, batch.actions
    )
    losses = ppo_losses(batch, values, log_probs, CLIP, clip_value_loss)
    loss = losses["policy_loss"] + 0.5 * losses["value_loss"] - entropy_coef * entropy.mean()
    policy.zero_grad()
    loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in policy.parameters()])


@pytest.mark.parametrize("entropy_coef", [0.0, 0.01])
@pytest.mark.parametrize("clip_value_loss", [True, False])
@pytest.mark.parametrize("head", list(HEADS))
def test_hand_gradient_equals_autograd(head, clip_value_loss, entropy_coef):
    torch.manual_seed(0)
    space = HEADS[head]
    policy = Policy(BOX_OBS, space)
    with torch.no_grad():  # a log-std away from 0, so its terms are not trivially 1
        for p in policy.parameters():
            if p.dim() == 1:
                p.normal_(0.0, 0.3)
    batch = spread_batch(policy, space)
    ratio = (policy.evaluate_actions(batch.obs, None, None, batch.actions)[1] - batch.old_action_log_probs).exp()
    assert (ratio < 1 - CLIP).any() and (ratio > 1 + CLIP).any() and (ratio == 1).any()
    reference = copy.deepcopy(policy)
    expected = autograd_gradient(reference, batch, clip_value_loss, entropy_coef)

    flat = FlatParameters(policy.parameters())
    flat.grad.fill_(123.0)  # overwritten, not accumulated
    hand = MLPGradient(policy)
    fwd = hand.forward(batch.obs, batch.actions)
    losses = ppo_losses(batch, fwd.values, fwd.log_probs, CLIP, clip_value_loss, derivatives=True)
    hand.backward(fwd, 0.5 * losses["d_values"], losses["d_log_probs"], entropy_coef / len(batch.obs))
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(flat.grad, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("head", list(HEADS))
def test_ppo_update_by_hand_equals_the_autograd_update(head):
    """A whole update (4 epochs, so later minibatches have ratios away from 1): the same
    parameters and metrics either way, to rounding."""
    torch.manual_seed(0)
    space = HEADS[head]
    policy = Policy(BOX_OBS, space)
    reference = copy.deepcopy(policy)
    rollouts = rollout_from_policy(policy, BOX_OBS, space, T=32)
    kwargs = dict(clip_param=CLIP, ppo_epoch=4, num_mini_batch=4, value_loss_coef=0.5, entropy_coef=0.01, lr=3e-3)
    agent, autograd_agent = PPO(policy, **kwargs), PPO(reference, **kwargs)
    assert agent.hand_gradient is not None
    autograd_agent.hand_gradient = None
    torch.manual_seed(1)
    metrics = agent.update(rollouts)
    torch.manual_seed(1)
    expected = autograd_agent.update(rollouts)
    assert expected["clipfrac"] > 0
    for (name, p), q in zip(policy.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=name)
    assert metrics == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_applies_only_to_feed_forward_tanh_mlps():
    assert applies(make_policy(BOX_OBS, gym.spaces.Discrete(2)))
    assert not applies(make_policy(BOX_OBS, gym.spaces.Discrete(2), recurrent=True))
    assert not applies(make_policy(BOX_OBS, gym.spaces.MultiBinary(3)))
    assert not applies(make_policy(gym.spaces.Box(0, 255, (4, 84, 84), "uint8"), gym.spaces.Discrete(4)))
    with pytest.raises(ValueError, match="non-recurrent tanh MLPBase"):
        MLPGradient(make_policy(BOX_OBS, gym.spaces.Discrete(2), recurrent=True))
