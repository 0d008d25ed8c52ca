"""FlatParameters: one buffer for PPO's parameters and one for their gradients."""

import copy

import gymnasium as gym
import pytest
import torch
import torch.nn as nn

from a2c_ppo.algo import PPO
from a2c_ppo.algo.flat_params import FlatParameters, clip_flat_gradient
from a2c_ppo.algo.ppo import ppo_losses
from a2c_ppo.model import Policy
from tests.helpers import BOX_OBS, rollout_from_policy


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def test_parameters_keep_their_values_and_become_views_of_one_buffer():
    net = _net()
    before = copy.deepcopy(net.state_dict())
    flat = FlatParameters(net.parameters())
    for name, value in net.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    start, end = flat.data.data_ptr(), flat.data.data_ptr() + flat.data.numel() * flat.data.element_size()
    assert all(start <= p.data_ptr() < end for p in net.parameters())
    net.load_state_dict({k: torch.zeros_like(v) for k, v in before.items()})  # copies in place
    assert flat.data.abs().sum() == 0


def test_backward_accumulates_the_whole_gradient_into_the_flat_buffer():
    net, reference = _net(), _net()
    flat = FlatParameters(net.parameters())
    x = torch.randn(5, 3)
    for _ in range(2):  # the second pass accumulates, as autograd does
        net(x).pow(2).sum().backward()
        reference(x).pow(2).sum().backward()
    expected = torch.cat([p.grad.reshape(-1) for p in reference.parameters()])
    torch.testing.assert_close(flat.grad, expected)
    flat.zero_grad()
    assert flat.grad.abs().sum() == 0


def test_zero_grad_reattaches_a_gradient_something_replaced():
    net = _net()
    flat = FlatParameters(net.parameters())
    for p in net.parameters():
        p.grad = None  # what optimizer.zero_grad(set_to_none=True) would do
    flat.zero_grad()
    net(torch.randn(5, 3)).sum().backward()
    assert flat.grad.abs().sum() > 0


@pytest.mark.parametrize("max_norm", [0.01, 100.0, None])
def test_clip_flat_gradient_is_clip_grad_norm(max_norm):
    net, reference = _net(), _net()
    flat = FlatParameters(net.parameters())
    x = torch.randn(5, 3)
    net(x).pow(2).sum().backward()
    reference(x).pow(2).sum().backward()
    norm = clip_flat_gradient(flat.grad, max_norm)
    if max_norm is None:
        expected_norm = nn.utils.get_total_norm([p.grad for p in reference.parameters()])
    else:
        expected_norm = nn.utils.clip_grad_norm_(reference.parameters(), max_norm)
    torch.testing.assert_close(norm, expected_norm)
    torch.testing.assert_close(flat.grad, torch.cat([p.grad.reshape(-1) for p in reference.parameters()]))


def test_ppo_step_on_flat_parameters_equals_per_parameter_adam():
    """One PPO minibatch step: the flat buffers give the parameters torch's per-tensor Adam and
    clip_grad_norm_ give, so flattening changes the speed and nothing else."""
    torch.manual_seed(0)
    space = gym.spaces.Discrete(3)
    policy = Policy(BOX_OBS, space)
    reference = copy.deepcopy(policy)
    rollouts = rollout_from_policy(policy, BOX_OBS, space)
    kwargs = dict(clip_param=0.2, ppo_epoch=1, num_mini_batch=1, value_loss_coef=0.5, entropy_coef=0.01, lr=1e-2)
    agent = PPO(policy, **kwargs, max_grad_norm=0.1, norm_adv=False)
    torch.manual_seed(1)
    agent.update(rollouts)

    torch.manual_seed(1)  # the same minibatch permutation
    batch = next(rollouts.feed_forward_generator(rollouts.returns - rollouts.value_preds[:-1], 1))
    values, log_probs, entropy, _ = reference.evaluate_actions(
        batch.obs, batch.recurrent_hidden_states, batch.masks, batch.actions
    )
    losses = ppo_losses(batch, values, log_probs, 0.2, True)
    loss = losses["policy_loss"] + 0.5 * losses["value_loss"] - 0.01 * entropy.mean()
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2, eps=1e-5)
    loss.backward()
    assert nn.utils.clip_grad_norm_(reference.parameters(), 0.1) > 0.1  # clipping is active
    optimizer.step()
    for (name, p), q in zip(policy.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
