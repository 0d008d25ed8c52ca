"""The fast path: numpy acting and PPO's and A2C's hand-written gradients compute what Policy.act and
autograd compute, behind one gate, with one sampling rule."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from a2c_ppo.algo import A2C, PPO
from a2c_ppo.algo.a2c_acktr import a2c_losses
from a2c_ppo.algo.flat_params import FlatParameters
from a2c_ppo.algo.hand_gradient import HandGradient
from a2c_ppo.algo.ppo import AutogradGradient, ppo_losses
from a2c_ppo.fastpath import MAX_FUSED_WIDTH, MAX_NUMPY_WIDTH, NumpyActor, acting_function, fast_mlp, why_not_fast
from a2c_ppo.model import MLPBase, Policy, make_policy
from a2c_ppo.storage import Minibatch
from tests.helpers import BOX_OBS, rollout_from_policy

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (7,), np.float32)
ACTION_SPACES = {"discrete": gym.spaces.Discrete(3), "box": gym.spaces.Box(-1.0, 1.0, (4,), np.float32)}
CLIP = 0.2
HEADS = {"categorical": gym.spaces.Discrete(3), "gaussian": gym.spaces.Box(-1.0, 1.0, (2,))}


def _policy(kind: str, activation: str = "tanh", **base_kwargs) -> Policy:
    torch.manual_seed(0)
    base = MLPBase(7, activation=activation, **base_kwargs) if base_kwargs or activation != "tanh" else None
    policy = Policy(OBS_SPACE, ACTION_SPACES[kind], base=base)
    with torch.no_grad():
        for p in policy.parameters():  # away from the near-zero initial head
            p.normal_(0.0, 0.3)
    return policy


def _actor(policy: Policy, deterministic: bool = False) -> NumpyActor:
    parts = fast_mlp(policy)
    assert parts is not None
    return NumpyActor(parts, deterministic)


def _inputs(n: int = 6):
    return torch.randn(n, 7), torch.zeros(n, 1), torch.ones(n, 1)


# ----------------------------------------------------------------------------- acting in numpy


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("kind", ACTION_SPACES)
def test_deterministic_outputs_equal_policy_act(kind, activation):
    policy = _policy(kind, activation)
    obs, hxs, masks = _inputs()
    expected = policy.act(obs, hxs, masks, deterministic=True)
    got = _actor(policy, deterministic=True)(obs, hxs, masks)
    for name, e, g in zip(("value", "action", "log_prob", "rnn_hxs"), expected, got):
        assert g.dtype == e.dtype and g.shape == e.shape, name
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("kind", ACTION_SPACES)
def test_one_sampling_rule_the_same_seed_gives_the_same_actions_on_either_path(kind):
    policy = _policy(kind)
    obs, hxs, masks = _inputs(256)
    torch.manual_seed(5)
    expected = [policy.act(obs[:rows], hxs[:rows], masks[:rows]) for rows in (256, 1, 1, 256)]
    torch.manual_seed(5)
    actor = _actor(policy)  # its third and fourth calls draw into the buffers of its first two
    got = [actor(obs[:rows], hxs[:rows], masks[:rows]) for rows in (256, 1, 1, 256)]
    for expected_step, got_step in zip(expected, got):
        assert torch.equal(got_step[1], expected_step[1]) if kind == "discrete" else True
        for e, g in zip(expected_step, got_step):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ACTION_SPACES)
def test_an_actor_first_called_in_inference_mode_acts_outside_it_too(kind):
    """The rollout acts under inference mode, evaluation and replays may not: the draws' buffer
    made by the first call must take the second call's draws."""
    actor = _actor(_policy(kind))
    obs, hxs, masks = _inputs(4)
    with torch.inference_mode():
        actor(obs, hxs, masks)
    assert actor(obs, hxs, masks)[1].shape[0] == 4


@pytest.mark.parametrize("kind", ACTION_SPACES)
def test_sampled_log_prob_is_what_evaluate_actions_scores(kind):
    policy = _policy(kind)
    obs, hxs, masks = _inputs(64)
    value, action, log_prob, _ = _actor(policy)(obs, hxs, masks)
    with torch.no_grad():
        value2, log_prob2, _, _ = policy.evaluate_actions(obs, hxs, masks, action)
    torch.testing.assert_close(log_prob, log_prob2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(value, value2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("numpy_path", [True, False])
def test_categorical_samples_have_the_policy_frequencies(numpy_path):
    policy = _policy("discrete")
    obs = torch.randn(1, 7).expand(20000, 7).contiguous()
    hxs, masks = torch.zeros(20000, 1), torch.ones(20000, 1)
    torch.manual_seed(0)
    _, action, _, _ = _actor(policy)(obs, hxs, masks) if numpy_path else policy.act(obs, hxs, masks)
    with torch.no_grad():
        _, features, _ = policy.base(obs[:1], None, None)
        probs = torch.softmax(policy.dist.linear(features), -1)[0]
    freq = torch.bincount(action.squeeze(-1), minlength=3).float() / 20000
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)


def test_acts_with_the_parameters_it_was_built_with():
    """A snapshot (the rollout builds one per rollout, after the update): a new one sees an
    in-place optimizer step, a load and a zeroed policy."""
    policy = _policy("box")
    obs, hxs, masks = _inputs()
    before = _actor(policy, deterministic=True)(obs, hxs, masks)[0].clone()
    with torch.no_grad():
        policy.base.critic_linear.bias.add_(1.0)  # an in-place step, as the optimizer takes
    torch.testing.assert_close(_actor(policy, deterministic=True)(obs, hxs, masks)[0], before + 1.0)
    policy.load_state_dict({k: torch.zeros_like(v) for k, v in policy.state_dict().items()})
    assert _actor(policy, deterministic=True)(obs, hxs, masks)[0].abs().sum() == 0


@pytest.mark.parametrize("kind", ACTION_SPACES)
def test_the_fused_stack_computes_what_the_separate_towers_compute(kind):
    """Up to MAX_FUSED_WIDTH both towers and heads run as one block-diagonal stack; wider ones
    run apart. Both equal policy.act, and the fused actor is the one built for a 64-wide policy."""
    for hidden in (MAX_FUSED_WIDTH, MAX_FUSED_WIDTH + 32):
        torch.manual_seed(0)
        policy = Policy(OBS_SPACE, ACTION_SPACES[kind], base=MLPBase(7, hidden_size=hidden))
        actor = _actor(policy, deterministic=True)
        assert (actor.fused is not None) == (hidden <= MAX_FUSED_WIDTH)
        obs, hxs, masks = _inputs()
        for e, g in zip(policy.act(obs, hxs, masks, deterministic=True), actor(obs, hxs, masks)):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hidden", [MAX_FUSED_WIDTH, MAX_FUSED_WIDTH + 32])
@pytest.mark.parametrize("kind", ACTION_SPACES)
def test_a_refreshed_actor_acts_with_the_parameters_an_update_wrote(kind, hidden):
    """The trainer builds its actor once and refreshes it after each update, which changes
    the parameters in place: before the refresh the fused copies (and the log-std) are the old
    parameters', after it every output is the new policy's."""
    torch.manual_seed(0)
    policy = Policy(OBS_SPACE, ACTION_SPACES[kind], base=MLPBase(7, hidden_size=hidden))
    actor = _actor(policy, deterministic=True)
    obs, hxs, masks = _inputs()
    before = actor(obs, hxs, masks)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p), alpha=0.3)
    expected = policy.act(obs, hxs, masks, deterministic=True)
    if actor.fused is not None:
        torch.testing.assert_close(actor(obs, hxs, masks)[0], before[0])  # the copies are stale
    actor.refresh()
    for e, g in zip(expected, actor(obs, hxs, masks)):  # the log-prob reads the log-std's copy
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- the gate


class ELUTowers(MLPBase):
    pass


def _elu_policy() -> Policy:
    policy = make_policy(BOX_OBS, gym.spaces.Discrete(2))
    policy.base.actor[1] = nn.ELU()
    return policy


class CustomBase(nn.Module):
    """A user's base: not the MLPBase the fast path knows."""

    is_recurrent, recurrent_hidden_state_size, output_size = False, 1, 8

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 8)
        self.value = nn.Linear(8, 1)

    def forward(self, obs, rnn_hxs, masks):
        x = torch.relu(self.net(obs))
        return self.value(x), x, rnn_hxs


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: make_policy(BOX_OBS, gym.spaces.Discrete(2), recurrent=True), "recurrent"),
        (lambda: make_policy(BOX_OBS, gym.spaces.MultiBinary(3)), "BernoulliHead"),
        (lambda: make_policy(gym.spaces.Box(0, 255, (4, 84, 84), "uint8"), gym.spaces.Discrete(4)), "CNNBase"),
        (_elu_policy, "Tanh, ReLU activations"),
        (lambda: Policy(BOX_OBS, gym.spaces.Discrete(2), base=CustomBase()), "CustomBase"),
        (lambda: Policy(BOX_OBS, gym.spaces.Discrete(2), base=ELUTowers(4)), "ELUTowers"),
        (lambda: make_policy(BOX_OBS, gym.spaces.Discrete(2)).double(), "float32"),
    ],
)
def test_the_one_gate_refuses_what_the_fast_path_does_not_compute(make, reason):
    policy = make()
    assert reason in (why_not_fast(policy) or "") and fast_mlp(policy) is None
    assert not isinstance(acting_function(policy), NumpyActor)  # the run falls back to policy.act
    if reason in ("CNNBase", "float32"):
        return
    x, hxs, masks = torch.randn(3, 4), torch.zeros(3, policy.recurrent_hidden_state_size), torch.ones(3, 1)
    torch.manual_seed(0)
    expected = policy.act(x, hxs, masks)
    torch.manual_seed(0)
    for e, g in zip(expected, acting_function(policy)(x, hxs, masks)):
        torch.testing.assert_close(g, e)


def test_numpy_acting_needs_the_cpu_and_a_small_width_and_can_be_turned_off():
    assert isinstance(acting_function(_policy("box")), NumpyActor)
    assert not isinstance(acting_function(_policy("box"), fast=False), NumpyActor)
    wide = make_policy(OBS_SPACE, ACTION_SPACES["box"], hidden_size=MAX_NUMPY_WIDTH * 2)
    assert fast_mlp(wide) is not None and not isinstance(acting_function(wide), NumpyActor)


# ----------------------------------------------------------------------------- the hand-written gradient


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


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("entropy_coef", [0.0, 0.01])
@pytest.mark.parametrize("clip_value_loss", [True, False])
@pytest.mark.parametrize("head", list(HEADS))
def test_hand_gradient_equals_autograd(head, clip_value_loss, entropy_coef, activation):
    torch.manual_seed(0)
    space = HEADS[head]
    policy = Policy(BOX_OBS, space, base=MLPBase(4, activation=activation))
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
    parts = fast_mlp(policy)
    assert parts is not None
    hand = HandGradient(parts)
    objective = lambda *args, **kwargs: ppo_losses(*args, clip_param=CLIP, clip_value_loss=clip_value_loss, **kwargs)  # noqa: E731
    losses = hand.losses(batch, objective)
    hand.backward(losses, 0.5, entropy_coef)
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
    parts = fast_mlp(policy)
    assert parts is not None
    agent, autograd_agent = PPO(policy, gradient=HandGradient(parts), **kwargs), PPO(reference, **kwargs)
    assert isinstance(autograd_agent.gradient, AutogradGradient)
    torch.manual_seed(1)
    metrics = agent.update(rollouts)
    torch.manual_seed(1)
    expected = autograd_agent.update(rollouts)
    assert expected["clipfrac"] > 0
    for (name, p), q in zip(policy.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=name)
    assert metrics == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_a2c_losses_and_their_derivatives_by_hand():
    batch = Minibatch(*([None] * 4), returns=torch.tensor([[1.0], [1.0]]), masks=None,  # type: ignore[arg-type]
                      old_action_log_probs=None, advantages=torch.tensor([[1.0], [-2.0]]))  # fmt: skip
    losses = a2c_losses(batch, torch.tensor([[0.5], [2.0]]), torch.tensor([[-0.5], [-1.0]]), derivatives=True)
    assert losses["policy_loss"].item() == pytest.approx(-(1 * -0.5 + -2 * -1.0) / 2)  # -mean(A log p)
    assert losses["value_loss"].item() == pytest.approx(0.5 * (0.5**2 + 1.0**2) / 2)  # 0.5 mean (V - R)^2
    torch.testing.assert_close(losses["d_log_probs"], torch.tensor([[-0.5], [1.0]]))  # -A / B
    torch.testing.assert_close(losses["d_values"], torch.tensor([[-0.25], [0.5]]))  # (V - R) / B


@pytest.mark.parametrize("norm_adv", [False, True])
@pytest.mark.parametrize("head", list(HEADS))
def test_a2c_update_by_hand_equals_the_autograd_update(head, norm_adv):
    """A2C's one step per rollout (clipped): the same parameters and metrics either way. SGD,
    not A2C's RMSprop: RMSprop's first steps are nearly sign(g) * lr / sqrt(1 - alpha), so a
    component whose gradient is zero up to rounding moves either way, and the parameters
    could not be compared; SGD's step is linear in the gradient."""
    torch.manual_seed(0)
    space = HEADS[head]
    policy = Policy(BOX_OBS, space)
    reference = copy.deepcopy(policy)
    rollouts = rollout_from_policy(policy, BOX_OBS, space, T=32)
    kwargs = dict(value_loss_coef=0.5, entropy_coef=0.01, max_grad_norm=0.5, norm_adv=norm_adv)
    parts = fast_mlp(policy)
    assert parts is not None
    agent = A2C(policy, torch.optim.SGD(policy.parameters(), lr=0.05), gradient=HandGradient(parts), **kwargs)
    autograd_agent = A2C(reference, torch.optim.SGD(reference.parameters(), lr=0.05), **kwargs)
    for _ in range(3):  # later updates start from parameters the earlier ones moved
        metrics, expected = agent.update(rollouts), autograd_agent.update(rollouts)
        assert expected["grad_norm"] > 0.5  # the clip is in play
        assert metrics == pytest.approx(expected, rel=1e-4, abs=1e-6)
    for (name, p), q in zip(policy.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=name)


def test_hand_gradient_is_finite_and_autograds_with_a_logit_of_minus_infinity():
    """A class whose logit is -inf (p = 0) adds nothing to the entropy's gradient, by hand as by
    autograd (``probs * log p`` was 0 * -inf = NaN)."""
    torch.manual_seed(0)
    policy = Policy(BOX_OBS, HEADS["categorical"], base=MLPBase(4))
    with torch.no_grad():
        policy.dist.linear.bias[1] = -math.inf
    batch = spread_batch(policy, HEADS["categorical"])
    expected = autograd_gradient(copy.deepcopy(policy), batch, True, 0.01)
    flat = FlatParameters(policy.parameters())
    parts = fast_mlp(policy)
    assert parts is not None
    hand = HandGradient(parts)
    objective = lambda *args, **kwargs: ppo_losses(*args, clip_param=CLIP, clip_value_loss=True, **kwargs)  # noqa: E731
    hand.backward(hand.losses(batch, objective), 0.5, 0.01)
    assert torch.isfinite(expected).all()
    torch.testing.assert_close(flat.grad, expected, rtol=1e-5, atol=1e-7)
