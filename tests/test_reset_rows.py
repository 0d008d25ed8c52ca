"""A next-step vector env's reset rows: recurrent PPO keeps them in its sequences (the recurrence
steps through them) but nothing of theirs reaches the update; minibatches and rollouts of reset
rows only train nothing, alone or beside other ranks.

A next-step env's reset row follows an episode's last step (mask 0: the state restarts on it) and
is itself marked terminated (mask 0 after it), so nothing it holds, its observation included, may
change the parameters an update leaves. A row that is a transition must change them, or the test
could not fail.
"""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import pytest
import torch

from a2c_ppo.algo import A2C, PPO
from a2c_ppo.algo.optimizers import make_rmsprop
from a2c_ppo.model import Policy
from a2c_ppo.storage import RolloutStorage
from tests.helpers import BOX_OBS

T, N = 8, 2
ENDS_AT, RESET_ROW = 2, 3  # env 0's episode ends at step 2; step 3 is the env's reset row


def next_step_storage(policy: Policy, seed: int = 0) -> RolloutStorage:
    """A rollout of ``policy`` where env 0 ends an episode at step ``ENDS_AT`` and its next row is
    a reset row, laid out as the rollout loop lays out a next-step env's (see ``envs/native.py``)."""
    g = torch.Generator().manual_seed(seed)
    storage = RolloutStorage(T, N, BOX_OBS.shape, 1, torch.long, policy.recurrent_hidden_state_size)
    storage.obs[0].copy_(torch.randn(N, *BOX_OBS.shape, generator=g))
    for t in range(T):
        with torch.no_grad():
            value, action, log_prob, hxs = policy.act(
                storage.obs[t], storage.recurrent_hidden_states[t], storage.masks[t]
            )
        terminated = torch.tensor([[t in (ENDS_AT, RESET_ROW)], [t == 5]])
        storage.insert(obs=torch.randn(N, *BOX_OBS.shape, generator=g), recurrent_hidden_states=hxs, actions=action,
                       action_log_probs=log_prob, value_preds=value, rewards=torch.randn(N, 1, generator=g),
                       terminated=terminated, truncated=torch.zeros(N, 1, dtype=torch.bool),
                       bootstrap_values=torch.zeros(N, 1))  # fmt: skip
        if t == RESET_ROW:
            storage.mark_dummy(t, torch.tensor([[True], [False]]))
            storage.rewards[t, 0] = 0.0
    return storage


def updated_parameters(policy: Policy, storage: RolloutStorage, **ppo: object) -> torch.Tensor:
    """The parameters one PPO update (2 epochs of 2 minibatches of one sequence) leaves."""
    policy = copy.deepcopy(policy)
    storage = copy.deepcopy(storage)
    with torch.no_grad():
        next_value = policy.get_value(storage.obs[-1], storage.recurrent_hidden_states[-1], storage.masks[-1])
    storage.compute_returns(next_value, use_gae=True, gamma=0.99, gae_lambda=0.95)
    agent = PPO(policy, clip_param=0.2, ppo_epoch=2, num_mini_batch=2, value_loss_coef=0.5, entropy_coef=0.01,
                lr=1e-2, **ppo)  # type: ignore[arg-type]  # fmt: skip
    torch.manual_seed(0)
    metrics = agent.update(storage)
    assert all(value == value for value in metrics.values()), metrics  # no NaN: no mean over nothing
    return torch.cat([p.detach().flatten() for p in policy.parameters()])


def scrambled(storage: RolloutStorage, t: int, n: int) -> RolloutStorage:
    """``storage`` with every field of row (t, n) the policy and the update read changed."""
    other = copy.deepcopy(storage)
    other.obs[t, n] += 5.0
    other.actions[t, n] = 1 - other.actions[t, n]
    other.action_log_probs[t, n] -= 3.0
    other.value_preds[t, n] += 7.0
    other.rewards[t, n] += 11.0
    return other


@pytest.mark.parametrize(
    "ppo",
    [{}, {"norm_adv_scope": "minibatch"}, {"variant": "kl-penalty", "kl_target": 0.01}, {"norm_adv": False}],
    ids=["clip", "per-minibatch-advantages", "kl-penalty", "raw-advantages"],
)
def test_a_reset_row_changes_nothing_a_transition_does(ppo):
    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(2), base_kwargs={"recurrent": True, "hidden_size": 8})
    storage = next_step_storage(policy)
    assert storage.masks[RESET_ROW, 0] == 0 and storage.masks[RESET_ROW + 1, 0] == 0
    reference = updated_parameters(policy, storage, **ppo)
    torch.testing.assert_close(updated_parameters(policy, scrambled(storage, RESET_ROW, 0), **ppo), reference)
    for row in [(RESET_ROW, 1), (ENDS_AT, 0), (RESET_ROW + 1, 0)]:  # transitions, either side of it
        assert not torch.allclose(updated_parameters(policy, scrambled(storage, *row), **ppo), reference), row


def test_minibatches_name_their_transitions():
    storage = RolloutStorage(4, 2, (3,), 1, torch.long)
    storage.obs[:-1] = torch.arange(8, dtype=torch.float32).view(4, 2, 1).expand(4, 2, 3)
    storage.mark_dummy(1, torch.tensor([[True], [False]]))
    storage.mark_dummy(3, torch.tensor([[True], [False]]))
    rows = []
    for batch in storage.recurrent_generator(torch.zeros(4, 2, 1), 2, chunk_length=2):
        assert batch.transitions is not None
        rows += batch.obs[batch.transitions, 0].tolist()
        assert batch.loss_rows().actions.shape == (len(batch.transitions), 1)
    assert sorted(rows) == [0, 1, 3, 4, 5, 7]  # rows 2 and 6: env 0's steps 1 and 3
    # chunks of one step: env 0's reset rows make minibatches with nothing to train on
    batches = list(storage.recurrent_generator(torch.zeros(4, 2, 1), 8, chunk_length=1))
    assert sorted(len(b.transitions) for b in batches) == [0, 0, 1, 1, 1, 1, 1, 1]
    assert [b.empty for b in batches].count(True) == 2


def one_step_update(
    storage: RolloutStorage, policy: Policy, reducer=None, num_mini_batch: int = 2, **ppo: object
) -> dict[str, float]:
    with torch.no_grad():
        next_value = policy.get_value(storage.obs[-1], storage.recurrent_hidden_states[-1], storage.masks[-1])
    storage.compute_returns(next_value, use_gae=True, gamma=0.99, gae_lambda=0.95)
    agent = PPO(policy, clip_param=0.2, ppo_epoch=2, num_mini_batch=num_mini_batch, value_loss_coef=0.5,
                entropy_coef=0.01, lr=1e-2, reducer=reducer, **ppo)  # type: ignore[arg-type]  # fmt: skip
    return agent.update(storage)


def reset_rows_only(policy: Policy, num_envs: int = 2) -> RolloutStorage:
    """One step of envs that all ended on the step before: no row to train on."""
    storage = RolloutStorage(1, num_envs, BOX_OBS.shape, 1, torch.long, policy.recurrent_hidden_state_size)
    storage.terminated[0] = True
    storage.mark_dummy(0, torch.ones(num_envs, 1, dtype=torch.bool))
    return storage


@pytest.mark.parametrize("ppo", [{"target_kl": 0.01}, {"variant": "kl-penalty", "kl_coef": 0.5}], ids=["clip", "kl"])
def test_an_update_of_reset_rows_only_trains_nothing_and_reports_finite_metrics(ppo):
    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(2), base_kwargs={"recurrent": True, "hidden_size": 8})
    before = [p.detach().clone() for p in policy.parameters()]
    metrics = one_step_update(reset_rows_only(policy), policy, **ppo)
    assert metrics.pop("num_gradient_steps") == 0 and math.isnan(metrics.pop("explained_variance"))
    assert all(math.isfinite(value) for value in metrics.values()), metrics  # the NaN guard stops at others
    assert metrics.get("kl_coef", 0.5) == 0.5 and metrics.get("kl", 0.0) == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_ranks_step_together_when_one_has_a_minibatch_of_reset_rows_only():
    """One of rank 0's minibatches (one-row ones) is its reset row alone: it still joins the
    other rank's collectives (the KL check, the gradient) and both end with the same parameters."""
    from tests.test_reducer import in_two_ranks

    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(2), base_kwargs={"recurrent": True, "hidden_size": 8})
    storages = [next_step_storage(policy, seed) for seed in (0, 1)]
    storages[1].valid = None  # rank 1: no reset row
    storages[1].terminated.zero_()
    for storage in storages:
        storage.recurrent_chunk_length = 1

    def work(r: int, reducer) -> tuple[dict[str, float], torch.Tensor]:
        local = copy.deepcopy(policy)
        torch.manual_seed(r)
        metrics = one_step_update(storages[r], local, reducer, T * N, target_kl=10.0)
        return metrics, torch.cat([p.detach().flatten() for p in local.parameters()])

    results = in_two_ranks(work)
    (m0, p0), (m1, p1) = results
    assert m0["num_gradient_steps"] == m1["num_gradient_steps"] == 2 * T * N
    torch.testing.assert_close(p0, p1)


@pytest.mark.parametrize("algo, recurrent", [("a2c", False), ("a2c", True), ("acktr", False)])
def test_a2c_on_reset_rows_only_takes_no_step_and_reports_finite_losses(algo, recurrent):
    from a2c_ppo.algo import A2C, ACKTR, KFACOptimizer
    from a2c_ppo.algo.optimizers import make_rmsprop

    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(2), base_kwargs={"recurrent": recurrent, "hidden_size": 8})
    storage = RolloutStorage(1, 1, BOX_OBS.shape, 1, torch.long, policy.recurrent_hidden_state_size)
    storage.terminated[0] = True
    storage.mark_dummy(0, torch.tensor([[True]]))
    storage.compute_returns(torch.zeros(1, 1), use_gae=True, gamma=0.99, gae_lambda=0.95)
    if algo == "a2c":
        agent: A2C = A2C(policy, make_rmsprop(policy.parameters(), lr=7e-4, eps=1e-5, alpha=0.99),
                         value_loss_coef=0.5, entropy_coef=0.01, max_grad_norm=0.5)  # fmt: skip
    else:
        agent = ACKTR(policy, KFACOptimizer(policy, lr=0.25), value_loss_coef=0.5, entropy_coef=0.01)
    state = copy.deepcopy(agent.optimizer.state_dict())
    metrics = agent.update(storage)
    assert metrics.pop("num_gradient_steps") == 0 and math.isnan(metrics.pop("explained_variance"))
    assert all(value == 0 for value in metrics.values()), metrics
    assert str(agent.optimizer.state_dict()) == str(state)  # no step: RMSprop's averages untouched


@pytest.mark.parametrize("fast_path", [True, False], ids=["hand-gradient", "autograd"])
def test_a2c_ranks_step_together_when_one_has_reset_rows_only(fast_path):
    """Rank 0's one-step rollout is reset rows only: it joins rank 1's collectives with a zero
    gradient (the hand-written pass would divide by its 0 rows) and both keep one policy."""
    from a2c_ppo.algo import A2C
    from a2c_ppo.algo.hand_gradient import HandGradient
    from a2c_ppo.algo.optimizers import make_rmsprop
    from a2c_ppo.fastpath import fast_mlp
    from tests.test_reducer import in_two_ranks

    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(2), base_kwargs={"hidden_size": 8})
    storages = [reset_rows_only(policy), next_step_storage(policy, 1)]
    for storage in storages:
        storage.compute_returns(torch.zeros(2, 1), use_gae=True, gamma=0.99, gae_lambda=0.95)

    def work(r: int, reducer) -> tuple[dict[str, float], torch.Tensor]:
        local = copy.deepcopy(policy)
        parts = fast_mlp(local) if fast_path else None
        agent = A2C(local, make_rmsprop(local.parameters(), lr=7e-4, eps=1e-5, alpha=0.99), value_loss_coef=0.5,
                    entropy_coef=0.01, norm_adv=True, reducer=reducer,
                    gradient=HandGradient(parts) if parts is not None else None)  # fmt: skip
        metrics = agent.update(storages[r])
        return metrics, torch.cat([p.detach().flatten() for p in local.parameters()])

    (m0, p0), (m1, p1) = in_two_ranks(work)
    m0.pop("explained_variance"), m1.pop("explained_variance")  # NaN: rank 0 has no row to explain
    assert m0 == m1 and m0["num_gradient_steps"] == 1 and math.isfinite(m0["policy_loss"])
    torch.testing.assert_close(p0, p1)
    assert not torch.equal(p0, torch.cat([p.detach().flatten() for p in policy.parameters()]))  # rank 1's step


def flat_agent(algo: str, policy: Policy, reducer=None, num_mini_batch: int = 2, norm_adv: bool = True) -> PPO | A2C:
    """PPO (FlatAdam) or A2C (FlatRMSprop): optimizers that a zero gradient still moves."""
    if algo == "ppo":
        return PPO(policy, clip_param=0.2, ppo_epoch=2, num_mini_batch=num_mini_batch, value_loss_coef=0.5,
                   entropy_coef=0.01, lr=1e-2, norm_adv=norm_adv, reducer=reducer)  # fmt: skip
    return A2C(policy, make_rmsprop(policy.parameters(), lr=7e-4, eps=1e-5, alpha=0.99), value_loss_coef=0.5,
               entropy_coef=0.01, norm_adv=norm_adv, reducer=reducer)  # fmt: skip


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_no_rank_steps_when_every_ranks_rollout_is_reset_rows_only(algo):
    """As in one process, no rank steps: a zero-gradient step would still advance the step count
    (and move the parameters by Adam's or RMSprop's averages), off the single-process run."""
    from tests.test_reducer import in_two_ranks

    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(2), base_kwargs={"hidden_size": 8})
    before = [p.detach().clone() for p in policy.parameters()]

    def work(r: int, reducer) -> tuple[dict[str, float], Policy, dict]:
        local = copy.deepcopy(policy)
        storage = reset_rows_only(local)
        storage.compute_returns(torch.zeros(2, 1), use_gae=True, gamma=0.99, gae_lambda=0.95)
        agent = flat_agent(algo, local, reducer)
        return agent.update(storage), local, agent.optimizer.state_dict()

    for metrics, local, state in in_two_ranks(work):
        assert state["num_steps"] == 0 and metrics["num_gradient_steps"] == 0
        assert all(torch.equal(a, b) for a, b in zip(before, local.parameters()))


def test_identical_ranks_skip_the_minibatches_of_reset_rows_only_as_one_process():
    """Two identical ranks (``ScaledReducer``) whose one-step chunks put the reset row alone in a
    minibatch on both: the steps of one process and no other, so its parameters (Adam's averages
    move them on a zero gradient) and its Adam state."""
    from tests.test_reducer import ScaledReducer

    torch.manual_seed(0)
    policy = Policy(BOX_OBS, gym.spaces.Discrete(2), base_kwargs={"recurrent": True, "hidden_size": 8})
    storage = next_step_storage(policy)
    storage.recurrent_chunk_length = 1
    with torch.no_grad():
        next_value = policy.get_value(storage.obs[-1], storage.recurrent_hidden_states[-1], storage.masks[-1])
    storage.compute_returns(next_value, use_gae=True, gamma=0.99, gae_lambda=0.95)
    results = []
    for reducer in (None, ScaledReducer(2)):
        local = copy.deepcopy(policy)
        # no norm_adv: two identical ranks change the unbiased std (n - 1 -> 2n - 1)
        agent = flat_agent("ppo", local, reducer, num_mini_batch=T * N, norm_adv=False)
        torch.manual_seed(1)  # the same minibatches
        metrics = agent.update(copy.deepcopy(storage))
        results.append((metrics["num_gradient_steps"], agent.optimizer.state_dict(), local.parameters()))
    (steps, state, params), (reduced_steps, reduced_state, reduced_params) = results
    assert steps == reduced_steps == 2 * (T * N - 1)  # 2 epochs of T * N minibatches, one the reset row alone
    assert state["num_steps"] == reduced_state["num_steps"] == steps
    assert all(torch.equal(a, b) for a, b in zip(params, reduced_params))
