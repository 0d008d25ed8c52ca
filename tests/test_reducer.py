"""The algorithms' data-parallel hooks (``algo.common.Reducer``) with in-process fake reducers.

Two ranks are simulated by two threads running their agents in lockstep, each on half of a
rollout's envs, summing through a barrier: their update must equal one process updating on
the whole rollout (gradients averaged before clipping, global advantage statistics).
"""

from __future__ import annotations

import copy
import threading

import gymnasium as gym
import pytest
import torch

from a2c_ppo.algo import A2C, ACKTR, PPO, KFACOptimizer
from a2c_ppo.algo.common import average_gradients, finish_metrics, rollout_advantages
from a2c_ppo.model import MLPBase, Policy
from a2c_ppo.storage import RolloutStorage
from tests.helpers import BOX_OBS, rollout_from_policy

ACTIONS = gym.spaces.Discrete(3)


class ThreadReducer:
    """Rank ``rank`` of ``world_size`` threads: sums through shared slots and a barrier."""

    def __init__(self, rank: int, slots: list, barrier: threading.Barrier) -> None:
        self.rank, self.slots, self.barrier = rank, slots, barrier
        self.world_size = len(slots)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        self.slots[self.rank] = tensor.clone()
        self.barrier.wait()
        total = sum(self.slots[1:], self.slots[0].clone())  # the same order on every rank
        self.barrier.wait()  # everyone has read the slots before they are overwritten
        return tensor.copy_(total)


class ScaledReducer:
    """A fake group of ``world_size`` identical ranks: the sum is ``world_size`` times the tensor."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.calls: list[int] = []  # numel of every reduced tensor

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        self.calls.append(tensor.numel())
        return tensor.mul_(self.world_size)


class OffsetReducer:
    """A fake 2-rank group whose other rank holds ``other`` in every element."""

    world_size = 2

    def __init__(self, other: float) -> None:
        self.other = other

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.add_(self.other)


def env_slice(storage: RolloutStorage, envs: slice) -> RolloutStorage:
    """The storage of the envs ``envs`` alone (what one rank would have collected)."""
    part = copy.copy(storage)
    for name, value in vars(storage).items():
        if isinstance(value, torch.Tensor):
            setattr(part, name, value[:, envs].clone())
    part.num_processes = part.rewards.shape[1]
    return part


def make_a2c(policy: Policy, reducer=None, norm_adv: bool = True) -> A2C:
    sgd = torch.optim.SGD(policy.parameters(), lr=0.5)
    return A2C(
        policy, sgd, value_loss_coef=0.5, entropy_coef=0.01, max_grad_norm=0.3, norm_adv=norm_adv, reducer=reducer
    )


def make_ppo(policy: Policy, reducer=None, **kwargs) -> PPO:
    return PPO(
        policy,
        clip_param=0.2,
        ppo_epoch=3,
        num_mini_batch=1,
        value_loss_coef=0.5,
        entropy_coef=0.01,
        lr=1e-2,
        max_grad_norm=0.3,
        reducer=reducer,
        **kwargs,
    )


def setup(seed: int = 0) -> tuple[Policy, RolloutStorage]:
    torch.manual_seed(seed)
    policy = Policy(BOX_OBS, ACTIONS, base=MLPBase(4, hidden_size=8))
    return policy, rollout_from_policy(policy, BOX_OBS, ACTIONS, T=6, N=4, seed=seed)


def in_two_ranks(work) -> list:
    """``[work(0, reducer_0), work(1, reducer_1)]``, run in lockstep by two threads that sum
    through ``ThreadReducer``s; a thread's error is raised here."""
    slots: list = [None, None]
    barrier = threading.Barrier(2, timeout=60)
    results: list = [None, None]
    errors: list = []

    def rank(r: int) -> None:
        try:
            results[r] = work(r, ThreadReducer(r, slots, barrier))
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def run_two_ranks(make_agent, policy: Policy, storage: RolloutStorage) -> list[tuple[Policy, dict]]:
    def work(r: int, reducer: ThreadReducer) -> tuple[Policy, dict]:
        local = copy.deepcopy(policy)
        metrics = make_agent(local, reducer).update(env_slice(storage, slice(2 * r, 2 * r + 2)))
        return local, metrics

    return in_two_ranks(work)


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
def test_two_ranks_on_halves_equal_one_process_on_the_whole_rollout(algo):
    """With 1 minibatch, an epoch's loss is the mean over all samples, so averaging the two
    halves' gradients (and standardising advantages with global statistics) must give the
    whole-batch update, through the clipping too (max_grad_norm 0.3 is active here)."""
    make = make_a2c if algo == "a2c" else make_ppo
    policy, storage = setup()
    single = copy.deepcopy(policy)
    single_metrics = make(single).update(storage)
    assert single_metrics["grad_norm"] > 0.3  # clipping matters
    (rank0, metrics0), (rank1, metrics1) = run_two_ranks(make, policy, storage)
    for p, q0, q1 in zip(single.parameters(), rank0.parameters(), rank1.parameters()):
        torch.testing.assert_close(q0, p, atol=1e-5, rtol=1e-5)
        assert torch.equal(q0, q1)  # ranks stay identical
    assert metrics0 == metrics1  # metrics are rank means
    for name in ("policy_loss", "value_loss", "entropy", "grad_norm"):
        assert metrics0[name] == pytest.approx(single_metrics[name], rel=1e-4, abs=1e-6)


def test_ranks_stop_at_the_same_minibatch_on_the_mean_kl():
    policy, storage = setup()
    results = run_two_ranks(lambda p, r: make_ppo(p, r, target_kl=1e-9), policy, storage)
    assert [m["num_gradient_steps"] for _, m in results] == [1.0, 1.0]
    # a rank's own KL of 0 is not what decides: the group mean of 0 and 1 exceeds 0.1
    agent = make_ppo(copy.deepcopy(policy), OffsetReducer(1.0), target_kl=0.1)
    assert agent._kl_exceeded(torch.tensor(0.0)) and not make_ppo(policy, target_kl=0.1)._kl_exceeded(torch.tensor(0.0))


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
@pytest.mark.parametrize("world_size", [1, 2])
def test_identical_ranks_give_bit_identical_results_to_no_reducer(algo, world_size):
    """world_size 1, or 2 identical ranks (sums doubled, then divided): nothing may change.
    A missing division would double A2C's SGD step (and PPO's reported metrics). (Two
    identical ranks do change the unbiased advantage std, n - 1 -> 2n - 1: no norm_adv there.)"""
    make = make_a2c if algo == "a2c" else make_ppo
    norm_adv = world_size == 1
    policy, storage = setup()
    plain, reduced = copy.deepcopy(policy), copy.deepcopy(policy)
    torch.manual_seed(1)
    plain_metrics = make(plain, None, norm_adv=norm_adv).update(storage)
    reducer = ScaledReducer(world_size)
    torch.manual_seed(1)
    reduced_metrics = make(reduced, reducer, norm_adv=norm_adv).update(storage)
    assert reduced_metrics == plain_metrics
    for p, q in zip(plain.parameters(), reduced.parameters()):
        assert torch.equal(p, q)
    # one flat all-reduce of every gradient (and the count of ranks without rows) per step, one of the metrics
    num_params = sum(p.numel() for p in policy.parameters())
    assert reducer.calls.count(num_params + 1) == plain_metrics["num_gradient_steps"]
    assert reducer.calls[-1] == len(plain_metrics)


def test_gradients_and_metrics_are_divided_by_the_world_size():
    reducer = OffsetReducer(other=3.0)
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    a.grad = torch.tensor([1.0, 5.0])  # b has no gradient: it counts as zeros
    average_gradients([a, b], reducer)
    torch.testing.assert_close(a.grad, torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(b.grad, torch.tensor([1.5]))
    assert finish_metrics({"x": torch.tensor(1.0), "y": torch.tensor(-3.0)}, reducer) == {"x": 2.0, "y": 0.0}


def test_acktr_refuses_a_reducer():
    policy, _ = setup()
    with pytest.raises(ValueError, match="all-reduced K-FAC factors"):
        ACKTR(policy, KFACOptimizer(policy), value_loss_coef=0.5, entropy_coef=0.0, reducer=ScaledReducer(2))


def test_advantage_statistics_count_each_ranks_own_transitions():
    """Ranks of a next-step vector env hold different numbers of transitions (rank 0 a reset row
    here): the standardised advantages are those of one process over the union of them."""
    _, storage = setup(0)
    storage.mark_dummy(1, torch.tensor([[True], [False], [False], [False]]))
    expected = rollout_advantages(storage, True)
    results = in_two_ranks(lambda r, reducer: rollout_advantages(env_slice(storage, slice(2 * r, 2 * r + 2)), True,
                                                                 reducer))  # fmt: skip
    valid = storage.valid
    assert valid is not None
    torch.testing.assert_close(torch.cat(results, dim=1)[valid], expected[valid])
