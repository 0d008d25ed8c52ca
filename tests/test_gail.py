"""GAIL's discriminator, its loss, penalty and reward against hand computation (the expert-trajectory
file format: tests/test_trajectories.py)."""

from __future__ import annotations

import io
import math
import threading
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from a2c_ppo.algo.discriminator import discriminator_loss, gradient_penalty
from a2c_ppo.algo.gail import GAIL, METRIC_NAMES, discriminator_epochs
from a2c_ppo.algo.gail_pairs import encode_actions
from a2c_ppo.errors import ConfigError
from a2c_ppo.trajectories import (
    Trajectories,
    describe_space,
)

OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
BOX_ACTIONS = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
DISCRETE_ACTIONS = gym.spaces.Discrete(4)


def episodes(action_space: gym.Space, lengths: tuple[int, ...] = (5, 3, 4), seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for length in lengths:
        if isinstance(action_space, gym.spaces.Discrete):
            actions = rng.integers(0, action_space.n, (length, 1))
        else:
            actions = rng.uniform(-1, 1, (length, 2)).astype(np.float32)
        out.append({"obs": rng.normal(size=(length, 3)), "actions": actions, "rewards": rng.normal(size=length)})
    return out


def expert_set(action_space: gym.Space = BOX_ACTIONS, lengths: tuple[int, ...] = (5, 3, 4)) -> Trajectories:
    """Trajectories as ``load_trajectories`` returns them, without a file."""
    eps = episodes(action_space, lengths)
    actions = np.concatenate([e["actions"] for e in eps])
    return Trajectories(
        obs=torch.from_numpy(np.concatenate([e["obs"] for e in eps]).astype(np.float32)),
        actions=torch.from_numpy(actions.astype(np.float32 if actions.dtype.kind == "f" else np.int64)),
        rewards=torch.from_numpy(np.concatenate([e["rewards"] for e in eps])),
        lengths=torch.tensor(lengths),
        returns=torch.tensor([e["rewards"].sum() for e in eps]),
        env_id="Test-v0",
        spaces={"observation": describe_space(OBS), "action": describe_space(action_space)},
    )


# ---------------------------------------------------------------- loss, penalty, encoding


def test_discriminator_loss_and_accuracies_by_hand():
    expert, policy = torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([[-3.0], [1.0], [0.0]])
    loss, expert_accuracy, policy_accuracy = discriminator_loss(expert, policy)
    softplus = lambda z: math.log1p(math.exp(z))  # noqa: E731  -log(sigmoid(-z))
    by_hand = sum(softplus(-z) for z in (2.0, -1.0, 0.5)) / 3 + sum(softplus(z) for z in (-3.0, 1.0, 0.0)) / 3
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    assert expert_accuracy.item() == pytest.approx(2 / 3)  # 2 and 0.5 are > 0
    assert policy_accuracy.item() == pytest.approx(1 / 3)  # only -3 is < 0; a logit of 0 counts as wrong


def test_gradient_penalty_of_a_linear_discriminator_in_closed_form():
    # f(x) = w.x + b has gradient w at every x_hat: the penalty is lambda (|w| - 1)^2 = 10 * 16.
    linear = nn.Linear(2, 1)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[3.0, 4.0]]))
    expert, policy = torch.randn(5, 2), torch.randn(5, 2)
    penalty = gradient_penalty(linear, expert, policy, lambda_=10.0)
    assert penalty.item() == pytest.approx(160.0)
    penalty.backward()  # d/dw lambda (|w| - 1)^2 = lambda * 2 (|w| - 1) w / |w| = 16 w
    assert torch.allclose(linear.weight.grad, 16.0 * torch.tensor([[3.0, 4.0]]))
    assert linear.bias.grad is None  # the penalty does not depend on the bias


def test_gradient_penalty_interpolates_with_the_generators_alpha():
    # f(x) = |x|^2 / 2 has gradient x_hat itself, so the penalty shows where x_hat lies.
    expert, policy = torch.randn(4, 3), torch.randn(4, 3)
    penalty = gradient_penalty(
        lambda x: 0.5 * x.pow(2).sum(1, keepdim=True), expert, policy, 2.0, torch.Generator().manual_seed(7)
    )
    alpha = torch.rand(4, 1, generator=torch.Generator().manual_seed(7))
    mixed = alpha * expert + (1 - alpha) * policy
    assert penalty.item() == pytest.approx(2.0 * (mixed.norm(dim=1) - 1).pow(2).mean().item(), rel=1e-6)


def test_encode_actions_one_hot_and_box():
    discrete = describe_space(gym.spaces.Discrete(3, start=1))
    assert encode_actions(torch.tensor([[1], [3]]), discrete).tolist() == [[1, 0, 0], [0, 0, 1]]
    multi = describe_space(gym.spaces.MultiDiscrete([2, 3]))
    assert encode_actions(torch.tensor([[1, 0], [0, 2]]), multi).tolist() == [[0, 1, 1, 0, 0], [1, 0, 0, 0, 1]]
    box = torch.tensor([[0.5, -0.25]])
    assert torch.equal(encode_actions(box, describe_space(BOX_ACTIONS)), box)


def test_warm_up_epochs_as_the_reference():
    assert [discriminator_epochs(u) for u in (0, 9, 10, 11)] == [100, 100, 5, 5]


def test_gail_needs_vector_observations():
    expert = expert_set()
    image = replace(expert, spaces={**expert.spaces, "observation": describe_space(gym.spaces.Box(0, 1, (2, 2)))})
    with pytest.raises(ConfigError, match="vector observations"):
        GAIL(image)


# ---------------------------------------------------------------- reward


def test_reward_is_the_logit_normalised_by_the_running_return_std():
    torch.manual_seed(0)
    gail = GAIL(expert_set())
    T, N, gamma = 3, 2, 0.9
    obs, actions = torch.randn(T, N, 3), torch.rand(T, N, 2) * 2 - 1
    masks = torch.ones(T, N, 1)
    masks[1, 1] = 0.0  # env 1's episode ended at step 0: obs[1, 1] starts a new one
    with torch.no_grad():
        logits = gail.discriminator(gail.pairs(obs.view(T * N, 3), actions.view(T * N, 2))).view(T, N).double()
        sig = torch.sigmoid(logits)
        assert torch.allclose(sig.log() - (1 - sig).log(), logits)  # the reference's formula is the logit
    rewards = gail.reward(obs, actions, masks, gamma)
    assert rewards.shape == (T, N, 1)

    # By hand, as baselines' RunningMeanStd: mean 0, var 1, count 1e-4, one batch of N per step.
    mean, var, count = 0.0, 1.0, 1e-4
    ret = np.zeros(N)
    for t in range(T):
        ret = gamma * masks[t, :, 0].numpy() * ret + logits[t].numpy()
        batch_mean, batch_var = ret.mean(), ret.var()
        delta, total = batch_mean - mean, count + N
        mean, var = mean + delta * N / total, (var * count + batch_var * N + delta**2 * count * N / total) / total
        count = total
        expected = logits[t].numpy() / np.sqrt(var + 1e-8)
        assert np.allclose(rewards[t, :, 0].numpy(), expected, rtol=1e-5), t
    assert torch.allclose(gail.running_return, torch.from_numpy(ret))

    # A second rollout continues the running return and the statistics.
    more = gail.reward(obs[:1], actions[:1], torch.ones(1, N, 1), gamma)
    ret = gamma * ret + logits[0].numpy()
    delta, total = ret.mean() - mean, count + N
    var = (var * count + ret.var() * N + delta**2 * count * N / total) / total
    assert np.allclose(more[0, :, 0].numpy(), logits[0].numpy() / np.sqrt(var + 1e-8), rtol=1e-5)


def test_the_reset_rows_of_a_next_step_env_stay_out_of_the_return_statistics():
    """Rows that are no transitions (``rollouts.valid`` False) leave the statistics as a batch of
    the other rows would; a step of reset rows only leaves them as they were."""
    torch.manual_seed(0)
    obs, actions, masks = torch.randn(2, 2, 3), torch.rand(2, 2, 2), torch.ones(2, 2, 1)
    valid = torch.tensor([[[True], [False]], [[False], [False]]])
    gail, alone = GAIL(expert_set()), GAIL(expert_set())
    alone.discriminator.load_state_dict(gail.discriminator.state_dict())
    gail.reward(obs, actions, masks, 0.9, valid)
    with torch.no_grad():
        logit = gail.discriminator(gail.pairs(obs[0, :1], actions[0, :1])).item()
    alone._merge_returns(torch.tensor([[logit]], dtype=torch.float64))
    expected = (alone.ret_count, alone.ret_mean, alone.ret_var)  # the logit of 1 row, not 4: rounding
    assert (gail.ret_count, gail.ret_mean, gail.ret_var) == pytest.approx(expected, rel=1e-5)


def test_positive_reward_is_minus_log_one_minus_d_by_hand():
    """-log(1 - D) for D = sigmoid(f) at f = -2, 0, 3: 0.1269, log 2, 3.0486; positive even
    where the logit is negative; its first step normalised by sqrt(var) as the logit's is."""
    gail = GAIL(expert_set(), reward_form="positive")
    with torch.no_grad():  # a constant logit per env: weights 0, the bias set per call
        for p in gail.discriminator.parameters():
            p.zero_()
    rewards = []
    for f in (-2.0, 0.0, 3.0):
        with torch.no_grad():
            gail.discriminator.trunk[-1].bias.fill_(f)
        rewards.append(gail.reward(torch.randn(1, 1, 3), torch.zeros(1, 1, 2), torch.zeros(1, 1, 1), 0.99))
    by_hand = [-math.log(1 - 1 / (1 + math.exp(-f))) for f in (-2.0, 0.0, 3.0)]
    assert by_hand == pytest.approx([0.126928, math.log(2), 3.048587], abs=1e-6)
    # masks 0: every step starts an episode, so G_t = r_t; one env: the batch variance is 0
    mean, var, count = 0.0, 1.0, 1e-4
    for r, expected in zip(rewards, by_hand):
        delta, total = expected - mean, count + 1
        mean, var, count = mean + delta / total, (var * count + delta**2 * count / total) / total, total
        assert r.item() == pytest.approx(expected / math.sqrt(var + 1e-8), rel=1e-5)
        assert r.item() > 0


def test_an_unknown_reward_form_is_refused():
    with pytest.raises(ValueError, match="reward_form"):
        GAIL(expert_set(), reward_form="log")


def test_reward_has_no_overflow_where_the_reference_formula_has_one():
    gail = GAIL(expert_set())
    with torch.no_grad():
        gail.discriminator.trunk[-1].bias.fill_(40.0)  # sigmoid(40) rounds to 1 in float32
    rewards = gail.reward(torch.randn(1, 2, 3), torch.zeros(1, 2, 2), torch.ones(1, 2, 1), 0.99)
    assert torch.isfinite(rewards).all()


# ---------------------------------------------------------------- training


def blobs(n: int, centre: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return centre + 0.5 * torch.randn(n, 3, generator=generator), (
        centre / 3 + 0.3 * torch.randn(n, 2, generator=generator)
    ).clamp(-1, 1)


def test_discriminator_separates_two_gaussian_blobs():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    expert_obs, expert_actions = blobs(256, 1.0, g)
    expert = replace(expert_set(), obs=expert_obs, actions=expert_actions, lengths=torch.tensor([256]))
    gail = GAIL(expert, seed=2)
    policy_obs, policy_actions = blobs(256, -1.0, g)
    metrics = gail.update(policy_obs, policy_actions, epochs=60, batch_size=64)  # 240 Adam steps
    assert set(metrics) == set(METRIC_NAMES)
    with torch.no_grad():
        test_expert, test_policy = gail.pairs(*blobs(500, 1.0, g)), gail.pairs(*blobs(500, -1.0, g))
        _, expert_accuracy, policy_accuracy = discriminator_loss(
            gail.discriminator(test_expert), gail.discriminator(test_policy)
        )
    assert expert_accuracy > 0.9 and policy_accuracy > 0.9


def test_expert_observations_pass_through_the_normalizer():
    seen = []

    def normalizer(obs: torch.Tensor) -> torch.Tensor:
        seen.append(obs.shape)
        return obs * 0.0

    gail = GAIL(expert_set())  # 12 expert rows
    gail.update(torch.randn(20, 3), torch.zeros(20, 2), epochs=2, batch_size=5, obs_normalizer=normalizer)
    assert seen == [(5, 3)] * 4  # min(20, 12) // 5 = 2 minibatches of 5 per epoch


def test_state_dict_resume_continues_bit_identically():
    torch.manual_seed(0)
    first = GAIL(expert_set(), seed=3)
    policy_obs, policy_actions = torch.randn(16, 3), torch.rand(16, 2)
    obs, actions, masks = torch.randn(4, 2, 3), torch.rand(4, 2, 2), torch.ones(4, 2, 1)
    first.update(policy_obs, policy_actions, epochs=2, batch_size=4)
    first.reward(obs, actions, masks, 0.99)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = GAIL(expert_set(), seed=99)  # another init and generator, replaced by the state
    resumed.load_state_dict(torch.load(buffer, weights_only=True))

    results = []
    for gail in (first, resumed):
        metrics = gail.update(policy_obs, policy_actions, epochs=3, batch_size=4)
        results.append(
            (metrics, gail.reward(obs, actions, masks, 0.99), [p.clone() for p in gail.discriminator.parameters()])
        )
    assert results[0][0] == results[1][0]
    assert torch.equal(results[0][1], results[1][1])
    assert all(torch.equal(a, b) for a, b in zip(results[0][2], results[1][2]))
    # a rank > 0 of a resumed run keeps its own minibatch generator (seed + rank), not rank 0's
    rank_one = GAIL(expert_set(), seed=4)
    rank_one.load_state_dict(first.state_dict(), keep_generator=True)
    assert torch.equal(rank_one.generator.get_state(), torch.Generator().manual_seed(4).get_state())
    assert not torch.equal(rank_one.generator.get_state(), first.generator.get_state())


class ScaledReducer:
    """``world_size`` identical ranks: the sum is ``world_size`` times the tensor."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.calls: list[int] = []

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        self.calls.append(tensor.numel())
        return tensor.mul_(self.world_size)


def test_reducer_averages_the_gradient_in_one_flat_all_reduce_per_step():
    results, reducer = [], ScaledReducer(2)
    for red in (None, reducer):
        torch.manual_seed(0)
        gail = GAIL(expert_set(), reducer=red)
        metrics = gail.update(
            torch.randn(12, 3, generator=torch.Generator().manual_seed(1)), torch.zeros(12, 2), epochs=3, batch_size=4
        )
        results.append((metrics, [p.detach().clone() for p in gail.discriminator.parameters()]))
    # Identical ranks: the average is the local gradient (x2 then /2 is exact), as without a reducer.
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))
    params = sum(p.numel() for p in gail.discriminator.parameters())
    # the minibatch counts, 3 epochs x 3 minibatches (each with the count of ranks without rows), the metrics
    assert reducer.calls == [2] + [params + 1] * 9 + [len(METRIC_NAMES)]


class ThreadReducer:
    """Rank ``rank`` of len(slots) threads summing through shared slots and a barrier."""

    def __init__(self, rank: int, slots: list, barrier: threading.Barrier) -> None:
        self.rank, self.slots, self.barrier, self.world_size = rank, slots, barrier, len(slots)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        self.slots[self.rank] = tensor.clone()
        self.barrier.wait()
        total = sum(self.slots[1:], self.slots[0].clone())
        self.barrier.wait()
        return tensor.copy_(total)


def test_reward_statistics_pool_the_envs_of_all_ranks():
    T, N = 3, 4
    obs, actions, masks = torch.randn(T, N, 3), torch.rand(T, N, 2), torch.ones(T, N, 1)
    masks[1, 0] = 0.0
    torch.manual_seed(0)
    whole = GAIL(expert_set())
    expected = whole.reward(obs, actions, masks, 0.9)
    slots, barrier, out = [None, None], threading.Barrier(2), [None, None]
    ranks = []
    for rank in range(2):
        torch.manual_seed(0)  # the same discriminator on every rank
        ranks.append(GAIL(expert_set(), reducer=ThreadReducer(rank, slots, barrier)))

    def run(rank: int) -> None:
        half = slice(2 * rank, 2 * rank + 2)
        out[rank] = ranks[rank].reward(obs[:, half], actions[:, half], masks[:, half], 0.9)

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert torch.allclose(torch.cat(out, 1), expected, rtol=1e-6)
    # (float32 logits of 2 and of 4 rows may differ in the last bit: hence no exact equality)
    assert ranks[0].ret_var == pytest.approx(whole.ret_var, rel=1e-6)
    assert ranks[0].ret_var == ranks[1].ret_var and ranks[0].ret_mean == ranks[1].ret_mean


def test_a_resume_with_another_number_of_envs_restarts_the_running_return():
    """A resume with another --num-processes starts new episodes (storage slot 0's masks 0): the
    running return of the checkpoint's envs restarts for the new ones; before, the first
    update raised ValueError (a traceback, after a rollout)."""
    torch.manual_seed(0)
    gail = GAIL(expert_set())
    gail.reward(torch.randn(2, 2, 3), torch.rand(2, 2, 2), torch.ones(2, 2, 1), 0.9)  # 2 envs
    restored = GAIL(expert_set())
    restored.load_state_dict(gail.state_dict())
    obs, actions = torch.randn(1, 3, 3), torch.rand(1, 3, 2)
    restored.reward(obs, actions, torch.zeros(1, 3, 1), 0.9)  # 3 envs, each starting an episode
    with torch.no_grad():
        logits = restored.discriminator(restored.pairs(obs.view(3, 3), actions.view(3, 2))).view(3).double()
    assert restored.running_return is not None
    torch.testing.assert_close(restored.running_return, logits)  # the first step's reward alone
