"""Policy heads: the lean act path samples the same distributions evaluate_actions scores,
and log-probs match the formulas."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from a2c_ppo.distributions import Categorical, categorical_entropy, categorical_sample, log_softmax, masked_logits
from a2c_ppo.draws import StepDraws, _active, normal_draws, uniform_draws
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
        policy.dist.log_std.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    obs, action = torch.randn(4, 5), torch.randn(4, 3)
    _, log_prob, entropy, _ = policy.evaluate_actions(obs, torch.zeros(4, 1), torch.ones(4, 1), action)
    _, features, _ = policy.base(obs, None, None)
    mean, log_std = policy.dist.mean(features), policy.dist.log_std.bias
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


def torch_distribution(kind: str, logits: torch.Tensor, log_std: torch.Tensor | None = None):
    """The reference torch.distributions object (with argument validation) for a head's outputs."""
    if kind == "discrete":
        return torch.distributions.Categorical(logits=logits)
    if kind == "box":
        return torch.distributions.Independent(torch.distributions.Normal(logits, log_std.exp()), 1)
    return torch.distributions.Independent(torch.distributions.Bernoulli(logits=logits), 1)


@pytest.mark.parametrize("kind", ["discrete", "box", "multibinary"])
def test_act_and_evaluate_paths_match_torch_distributions(kind):
    """The lean act path's samples and log-probs, and the distribution that minibatches are
    scored with (log-probs and entropies; the Gaussian's is computed directly), against the
    reference torch.distributions objects."""
    torch.manual_seed(0)
    head = Policy(OBS_SPACE, ACTION_SPACES[kind]).dist
    with torch.no_grad():
        if kind == "box":
            head.log_std.bias.copy_(torch.tensor([0.5, -1.0, 0.2]))
        x = torch.randn(64, 64)
        action, log_prob = head.act(x, deterministic=False)
        dist = head(x)
        params = head.mean(x) if kind == "box" else head.linear(x)
        reference = torch_distribution(kind, params, head.log_std.bias if kind == "box" else None)
        expected = reference.log_prob(action.squeeze(-1) if kind == "discrete" else action)
        torch.testing.assert_close(log_prob, expected.unsqueeze(-1), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(dist.log_probs(action), expected.unsqueeze(-1), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(dist.entropy(), reference.entropy(), atol=1e-5, rtol=1e-5)


def test_lean_multidiscrete_log_prob_is_the_sum_over_dimensions():
    torch.manual_seed(0)
    head = Policy(OBS_SPACE, ACTION_SPACES["multidiscrete"]).dist
    with torch.no_grad():
        head.linear.weight.normal_()
        x = torch.randn(16, 64)
        action, log_prob = head.act(x, deterministic=False)
        chunks = torch.split(head.linear(x), [2, 3, 4], dim=-1)
        expected = sum(torch.distributions.Categorical(logits=c).log_prob(a) for c, a in zip(chunks, action.unbind(-1)))
    torch.testing.assert_close(log_prob, expected.unsqueeze(-1))


def test_lean_samples_have_the_distribution_statistics():
    """Categorical frequencies and Gaussian mean / std of 20000 draws from fixed parameters."""
    torch.manual_seed(0)
    categorical = Policy(OBS_SPACE, gym.spaces.Discrete(3)).dist
    gaussian = Policy(OBS_SPACE, gym.spaces.Box(-1, 1, (2,), np.float32)).dist
    n = 20000
    with torch.no_grad():
        categorical.linear.weight.zero_()
        categorical.linear.bias.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
        action, _ = categorical.act(torch.zeros(n, 64), deterministic=False)
        freq = torch.bincount(action.squeeze(-1), minlength=3).float() / n
        torch.testing.assert_close(freq, torch.tensor([0.2, 0.3, 0.5]), atol=0.015, rtol=0)

        gaussian.mean.weight.zero_()
        gaussian.mean.bias.copy_(torch.tensor([1.0, -2.0]))
        gaussian.log_std.bias.copy_(torch.log(torch.tensor([0.5, 2.0])))
        action, _ = gaussian.act(torch.zeros(n, 64), deterministic=False)
        torch.testing.assert_close(action.mean(0), torch.tensor([1.0, -2.0]), atol=0.05, rtol=0)
        torch.testing.assert_close(action.std(0), torch.tensor([0.5, 2.0]), atol=0, rtol=0.03)
        mode, mode_log_prob = gaussian.act(torch.zeros(1, 64), deterministic=True)
        torch.testing.assert_close(mode, torch.tensor([[1.0, -2.0]]))
        expected = torch.distributions.Normal(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0]))
        torch.testing.assert_close(mode_log_prob, expected.log_prob(mode).sum(-1, keepdim=True))


@pytest.mark.parametrize("kind", ACTION_SPACES)
def test_act_is_deterministic_for_a_seed_and_carries_no_graph(kind):
    policy = Policy(OBS_SPACE, ACTION_SPACES[kind])
    obs, hxs, masks = torch.randn(8, 5), torch.zeros(8, 1), torch.ones(8, 1)
    outputs = []
    for _ in range(2):
        torch.manual_seed(3)
        outputs.append(policy.act(obs, hxs, masks))
    for first, second in zip(*outputs):
        assert torch.equal(first, second) and not first.requires_grad


# ----------------------------------------------------------------------------- StepDraws


def test_step_draws_hand_each_block_its_rows_of_one_draw_for_all_rows():
    """Blocks of 2 and 3 rows get exactly ``torch.randn(5, 6)`` and ``torch.rand(5, 1)`` split by
    rows (drawn per block, the 30 normals would come out otherwise), buffers refilled per step,
    and the generator left where the whole-batch draws leave it."""
    torch.manual_seed(0)
    expected = [(torch.randn(5, 6), torch.rand(5, 1)) for _ in range(2)]
    next_after = torch.rand(3)
    torch.manual_seed(0)
    draws = StepDraws(5)
    for normals, uniforms in expected:
        draws.next_step()
        for rows in (slice(0, 2), slice(2, 5)):
            n = rows.stop - rows.start
            with draws.rows(rows):
                torch.testing.assert_close(normal_draws((n, 6)), normals[rows], rtol=0, atol=0)
                torch.testing.assert_close(uniform_draws((n, 1)), uniforms[rows], rtol=0, atol=0)
    torch.testing.assert_close(torch.rand(3), next_after, rtol=0, atol=0)


def test_step_draws_refuse_blocks_that_ask_differently_and_leave_no_block_behind():
    draws = StepDraws(4)
    draws.next_step()
    with draws.rows(slice(0, 2)):
        normal_draws((2, 3))
    with pytest.raises(RuntimeError, match="different kinds"), draws.rows(slice(2, 4)):
        uniform_draws((2, 3))
    with pytest.raises(RuntimeError, match="asked for draws of shape"), draws.rows(slice(2, 4)):
        normal_draws((2, 5))
    assert _active.block is None  # reset on the way out of an error
    draws.next_step()  # a new shape next step: a new buffer, not the old one's rows
    with draws.rows(slice(0, 2)):
        assert normal_draws((2, 5)).shape == (2, 5)
    assert normal_draws((2, 5)).shape == (2, 5) and _active.block is None  # outside a block: torch's own


@pytest.mark.parametrize("xp", [np, torch], ids=["numpy", "torch"])
def test_the_inverse_cdf_never_draws_a_class_of_probability_zero(xp):
    """The smallest k with cdf_k > u: at u = 0 (torch.rand's 0 comes once in 2**24 draws) class 0,
    of probability 0 here, was drawn; u just under a step of the cdf takes that step's class."""
    log_p = log_softmax(xp, xp.asarray([[-200.0, 0.0, 0.0]] * 3, dtype=xp.float32))
    u = xp.asarray([[0.0], [0.49], [0.51]], dtype=xp.float32)
    assert categorical_sample(xp, log_p, u).tolist() == [[1], [1], [2]]


@pytest.mark.parametrize("xp", [np, torch], ids=["numpy", "torch"])
def test_the_largest_uniform_never_draws_a_trailing_class_of_probability_zero(xp):
    """torch.rand's largest value, 1 - 2**-24, against cdfs that rounding leaves a hair under 1:
    without scaling by the total, the last class (probability 0 here) was drawn."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20000, 5)).astype(np.float32)
    logits[:, 3:] = -1e8  # as masked_logits leaves forbidden classes
    log_p = log_softmax(xp, xp.asarray(logits))
    drawn = categorical_sample(xp, log_p, xp.asarray(np.full((20000, 1), 1 - 2**-24, np.float32)))
    assert int(drawn.max()) <= 2


def test_a_logit_of_minus_infinity_leaves_entropy_log_prob_and_kl_finite():
    """A network of one's own can give an allowed class a logit of -inf: p = 0 there, and the
    entropy is the other classes' (0 * -inf would make it NaN). By hand, logits [0, -inf, ln 3]:
    p = (1/4, 0, 3/4), H = -(1/4 ln 1/4 + 3/4 ln 3/4), dH/dz_k = -p_k (ln p_k + H)."""
    logits = torch.tensor([[0.0, -math.inf, math.log(3.0)], [0.0, -math.inf, 0.0]], requires_grad=True)
    dist = Categorical(logits)
    p = torch.tensor([[0.25, 0.0, 0.75], [0.5, 0.0, 0.5]])
    entropy = torch.tensor([-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), math.log(2.0)])
    torch.testing.assert_close(dist.entropy(), entropy)
    Categorical(logits).entropy().sum().backward()
    log_p = torch.log(p).clamp(min=-1e30)  # the p = 0 terms are 0 however low
    torch.testing.assert_close(logits.grad, -p * (log_p + entropy[:, None]))
    logits.grad = None
    action = torch.tensor([[2], [0]])
    log_prob = Categorical(logits).log_probs(action)
    torch.testing.assert_close(log_prob, torch.tensor([[math.log(0.75)], [math.log(0.5)]]))
    log_prob.sum().backward()  # d log p_a / dz = onehot(a) - p
    torch.testing.assert_close(logits.grad, torch.nn.functional.one_hot(action[:, 0], 3) - p)
    assert float(dist.kl_from(dist.params().detach()).detach().abs().max()) == 0.0


def test_entropy_of_minus_infinity_logits_matches_the_masked_entropy():
    """A class of logit -inf adds to the entropy what a masked class adds: nothing."""
    logits = torch.randn(8, 5)
    mask = torch.ones(8, 5, dtype=torch.bool)
    mask[:, [1, 3]] = False
    infinite = logits.masked_fill(~mask, -math.inf)
    masked = Categorical(masked_logits(logits, mask))
    torch.testing.assert_close(Categorical(infinite).entropy(), masked.entropy())
    assert np.isfinite(categorical_entropy(np, log_softmax(np, infinite.numpy()))).all()
