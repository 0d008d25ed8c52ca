"""RolloutStorage: returns and GAE against hand computation, generator coverage."""

import pytest
import torch

from a2c_ppo.storage import RolloutStorage

GAMMA, LAMBDA = 0.5, 0.5
REWARDS = [1.0, 2.0, 3.0]
VALUES = [1.0, 2.0, 3.0]
NEXT_VALUE = 4.0
FINAL_VALUE = 10.0  # V(final_obs) of the episode truncated at t = 1


def filled_storage(done_at_1: str | None) -> RolloutStorage:
    """T=3, N=1 with the rewards and values above; step 1 ends as ``done_at_1`` says."""
    storage = RolloutStorage(3, 1, (2,), 1)
    for t in range(3):
        storage.insert(
            obs=torch.zeros(1, 2),
            recurrent_hidden_states=torch.zeros(1, 1),
            actions=torch.zeros(1, 1),
            action_log_probs=torch.zeros(1, 1),
            value_preds=torch.tensor([[VALUES[t]]]),
            rewards=torch.tensor([[REWARDS[t]]]),
            terminated=torch.tensor([[t == 1 and done_at_1 == "terminated"]]),
            truncated=torch.tensor([[t == 1 and done_at_1 == "truncated"]]),
            bootstrap_values=torch.tensor([[FINAL_VALUE if t == 1 else 0.0]]),
        )
    return storage


# Hand computation with gamma = lambda = 0.5 (see each case's deltas in the comments).
@pytest.mark.parametrize(
    "done_at_1, expected",
    [
        # deltas 1, 1.5, 2 -> gae 1.5, 2, 2 -> returns = gae + V
        (None, [2.5, 4.0, 5.0]),
        # delta_1 = 2 + 0 - 2 = 0 and nothing flows back from t = 2
        ("terminated", [2.0, 2.0, 5.0]),
        # delta_1 = 2 + 0.5 * V(final) - 2 = 5; gae_0 = 1 + 0.25 * 5
        ("truncated", [3.25, 7.0, 5.0]),
    ],
)
def test_gae_matches_hand_computation(done_at_1, expected):
    storage = filled_storage(done_at_1)
    storage.compute_returns(torch.tensor([[NEXT_VALUE]]), use_gae=True, gamma=GAMMA, gae_lambda=LAMBDA)
    assert storage.returns.view(-1).tolist() == pytest.approx(expected)


@pytest.mark.parametrize(
    "done_at_1, expected",
    [
        # R2 = 3 + 0.5 * 4; R1 = 2 + 0.5 * R2; R0 = 1 + 0.5 * R1
        (None, [3.25, 4.5, 5.0]),
        # R1 = 2 (no bootstrap after a termination)
        ("terminated", [2.0, 2.0, 5.0]),
        # R1 = 2 + 0.5 * V(final_obs), never the value of the reset observation
        ("truncated", [4.5, 7.0, 5.0]),
    ],
)
def test_n_step_returns_match_hand_computation(done_at_1, expected):
    storage = filled_storage(done_at_1)
    storage.compute_returns(torch.tensor([[NEXT_VALUE]]), use_gae=False, gamma=GAMMA, gae_lambda=LAMBDA)
    assert storage.returns.view(-1).tolist() == pytest.approx(expected)


def random_storage(T=16, N=4, seed=0) -> RolloutStorage:
    g = torch.Generator().manual_seed(seed)
    storage = RolloutStorage(T, N, (3,), 2)
    for t in range(T):
        done = torch.rand(N, 1, generator=g)
        storage.insert(
            obs=torch.randn(N, 3, generator=g),
            recurrent_hidden_states=torch.zeros(N, 1),
            actions=torch.full((N, 2), float(t)),
            action_log_probs=torch.randn(N, 1, generator=g),
            value_preds=torch.randn(N, 1, generator=g),
            rewards=torch.randn(N, 1, generator=g),
            terminated=done < 0.1,
            truncated=(done >= 0.1) & (done < 0.2),
            bootstrap_values=torch.randn(N, 1, generator=g),
        )
    return storage


def test_gae_with_lambda_one_equals_n_step_returns():
    storage = random_storage()
    next_value = torch.randn(4, 1)
    storage.compute_returns(next_value, use_gae=True, gamma=0.9, gae_lambda=1.0)
    gae_returns = storage.returns.clone()
    storage.compute_returns(next_value, use_gae=False, gamma=0.9, gae_lambda=1.0)
    torch.testing.assert_close(gae_returns, storage.returns)


def test_masks_mark_episode_starts_and_after_update_carries_last_slot():
    storage = random_storage()
    done = storage.terminated | storage.truncated
    torch.testing.assert_close(storage.masks[1:], (~done).float())
    last_obs, last_masks = storage.obs[-1].clone(), storage.masks[-1].clone()
    storage.after_update()
    torch.testing.assert_close(storage.obs[0], last_obs)
    torch.testing.assert_close(storage.masks[0], last_masks)


def test_feed_forward_generator_yields_every_sample_once():
    storage = random_storage(T=16, N=4)
    advantages = torch.arange(64, dtype=torch.float32).view(16, 4, 1)
    batches = list(storage.feed_forward_generator(advantages, num_mini_batch=4))
    assert len(batches) == 4 and all(b.advantages.shape == (16, 1) for b in batches)
    seen = torch.cat([b.advantages.view(-1) for b in batches]).sort().values
    torch.testing.assert_close(seen, torch.arange(64, dtype=torch.float32))
    # fields stay aligned: the action of sample (t, n) is t, as is advantages // 4
    for b in batches:
        torch.testing.assert_close(b.actions[:, 0], (b.advantages.view(-1) // 4))


def test_image_observations_keep_their_dtype():
    storage = RolloutStorage(8, 2, (4, 84, 84), 1, torch.long, obs_dtype=torch.uint8)
    assert storage.obs.dtype == torch.uint8


@pytest.mark.parametrize("use_gae", [True, False])
def test_returns_of_many_envs_match_a_per_env_python_loop(use_gae):
    """Random rewards, values and episode ends in 3 envs against a plain per-env loop."""
    g = torch.Generator().manual_seed(0)
    T, N, gamma, lam = 20, 3, 0.9, 0.8
    storage = RolloutStorage(T, N, (1,), 1)
    storage.rewards.copy_(torch.randn(T, N, 1, generator=g))
    storage.value_preds[:-1].copy_(torch.randn(T, N, 1, generator=g))
    storage.bootstrap_values.copy_(torch.randn(T, N, 1, generator=g))
    ends = torch.rand(T, N, 1, generator=g)
    storage.terminated.copy_(ends < 0.15)
    storage.truncated.copy_((ends >= 0.15) & (ends < 0.3))
    next_value = torch.randn(N, 1, generator=g)
    storage.compute_returns(next_value, use_gae, gamma, lam)
    for n in range(N):
        r, v = storage.rewards[:, n, 0].tolist(), storage.value_preds[:, n, 0].tolist()
        term, trunc = storage.terminated[:, n, 0].tolist(), storage.truncated[:, n, 0].tolist()
        boot = storage.bootstrap_values[:, n, 0].tolist()
        expected = [0.0] * T
        carry = 0.0 if use_gae else next_value[n, 0].item()
        for t in reversed(range(T)):
            v_next = 0.0 if term[t] else boot[t] if trunc[t] else v[t + 1]
            ended = term[t] or trunc[t]
            if use_gae:
                carry = r[t] + gamma * v_next - v[t] + (0.0 if ended else gamma * lam * carry)
                expected[t] = carry + v[t]
            else:
                carry = r[t] + gamma * (v_next if ended else carry)
                expected[t] = carry
        torch.testing.assert_close(storage.returns[:, n, 0], torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_insert_writes_into_a_tensor_that_replaced_one_of_the_storage():
    """``insert`` writes through cached numpy views; replacing a tensor (as ``to`` does)
    must send the next insert to the new tensor, not the old one."""
    storage = filled_storage(None)  # inserts have built the cache
    old_rewards = storage.rewards
    storage.rewards = torch.full_like(old_rewards, -1.0)
    storage.insert(
        obs=torch.ones(1, 2),
        recurrent_hidden_states=torch.zeros(1, 1),
        actions=torch.zeros(1, 1),
        action_log_probs=torch.zeros(1, 1),
        value_preds=torch.zeros(1, 1),
        rewards=torch.tensor([[7.0]]),
        terminated=torch.tensor([[True]]),
        truncated=torch.tensor([[False]]),
        bootstrap_values=torch.zeros(1, 1),
    )
    assert storage.rewards[0, 0, 0] == 7.0 and old_rewards[0, 0, 0] == REWARDS[0]
    assert storage.obs[1, 0, 0] == 1.0 and storage.masks[1, 0, 0] == 0.0  # slot t + 1, mask 0 after an end
