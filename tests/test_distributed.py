"""Two gloo ranks on loopback (spawned processes, no torchrun): gradients, parameters,
normalisation statistics and logging helpers agree with one process on the pooled data."""

from __future__ import annotations

import os
import signal

import gymnasium as gym
import numpy as np
import pytest
import torch

from a2c_ppo.algo import A2C, PPO, make_rmsprop
from a2c_ppo.algo.common import average_gradients
from a2c_ppo.distributed import (
    PeerFailedError,
    broadcast_module,
    check_in_sync,
    module_digest,
    pooled_means,
    process_group,
    resolve_context,
    stop_requests,
    sync_running_stats,
)
from a2c_ppo.envs import make_vec_envs
from a2c_ppo.envs.running_stats import RunningMeanStd
from a2c_ppo.model import Policy
from a2c_ppo.storage import RolloutStorage
from tests.dist_helpers import (
    PID_DIR_VARIABLE,
    RAISE_AT_VARIABLE,
    alive,
    recorded_pids,
    run_ranks,
)
from tests.helpers import BOX_OBS, rollout_from_policy

WORLD = 2
ROWS = 8  # rows of the toy batch per rank
STEPS = 3  # optimizer steps in the parameter test
DISCRETE = gym.spaces.Discrete(3)


def toy_batch(num_rows: int) -> tuple[torch.Tensor, ...]:
    """The same (obs, actions, advantages, returns) on every rank; rank r uses its rows."""
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(num_rows, 4, generator=g)
    actions = torch.randint(0, 3, (num_rows, 1), generator=g)
    return obs, actions, torch.randn(num_rows, 1, generator=g), torch.randn(num_rows, 1, generator=g)


def toy_loss(policy: Policy, rows: slice) -> torch.Tensor:
    obs, actions, advantages, returns = (t[rows] for t in toy_batch(WORLD * ROWS))
    n = obs.shape[0]
    values, log_probs, entropy, _ = policy.evaluate_actions(obs, torch.zeros(n, 1), torch.ones(n, 1), actions)
    return -(log_probs * advantages).mean() + 0.5 * (values - returns).pow(2).mean() - 0.01 * entropy.mean()


def flat_grads(policy: Policy) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in policy.parameters()])


def train_toy(policy: Policy, rows: slice, reducer=None) -> list[str]:
    """STEPS RMSprop steps on ``rows`` of the toy batch; the parameter hash after each."""
    optimizer = make_rmsprop(policy.parameters(), lr=1e-2, eps=1e-5, alpha=0.99)
    hashes = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        toy_loss(policy, rows).backward()
        if reducer is not None:
            average_gradients(list(policy.parameters()), reducer)
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
        optimizer.step()
        hashes.append(module_digest(policy))
    return hashes


def gradient_rank() -> dict:
    ctx = resolve_context(use_cuda=False)
    with process_group(ctx, timeout_s=30):
        torch.manual_seed(100 + ctx.rank)  # different initial parameters on every rank
        policy = Policy(BOX_OBS, DISCRETE)
        before = module_digest(policy)
        broadcast_module(policy, ctx)
        rows = slice(ctx.rank * ROWS, (ctx.rank + 1) * ROWS)
        toy_loss(policy, rows).backward()
        average_gradients(list(policy.parameters()), ctx.reducer())
        grads = flat_grads(policy)
        hashes = train_toy(policy, rows, ctx.reducer())
        params = torch.nn.utils.parameters_to_vector(policy.parameters()).detach()
        check_in_sync(policy, ctx, "after training")
        if ctx.rank == 1:
            with torch.no_grad():
                next(policy.parameters()).view(-1)[0] += 1e-6
        try:
            check_in_sync(policy, ctx, "after a nudge")
            divergence = ""
        except RuntimeError as error:
            divergence = str(error)
    return {"before": before, "grads": grads, "hashes": hashes, "params": params, "divergence": divergence}


def test_averaged_gradients_and_parameters_equal_one_process_on_the_pooled_batch(tmp_path):
    run = run_ranks(gradient_rank, WORLD, str(tmp_path))
    assert run.exitcodes == [0, 0], run.errors
    r0, r1 = run.results
    assert r0["before"] != r1["before"]  # broadcast had something to do
    torch.manual_seed(100)  # rank 0's initial parameters
    single = Policy(BOX_OBS, DISCRETE)
    toy_loss(single, slice(None)).backward()
    torch.testing.assert_close(r0["grads"], flat_grads(single), rtol=0, atol=1e-5)
    torch.testing.assert_close(r1["grads"], flat_grads(single), rtol=0, atol=1e-5)
    single.zero_grad()
    train_toy(single, slice(None))
    assert r0["hashes"] == r1["hashes"]  # bit-identical on both ranks after every step
    for result in (r0, r1):  # both ranks notice that rank 1's model moved
        assert "diverged after a nudge: the model on rank(s) [1] differs" in result["divergence"]
    torch.testing.assert_close(r0["params"], torch.nn.utils.parameters_to_vector(single.parameters()).detach())


def column_slice(storage: RolloutStorage, start: int, stop: int) -> RolloutStorage:
    """The env columns ``start:stop`` of ``storage`` as a storage of their own."""
    part = RolloutStorage(storage.num_steps, stop - start, (1,), 1)
    for name, value in vars(storage).items():
        if isinstance(value, torch.Tensor):
            setattr(part, name, value[:, start:stop].clone())
    return part


PPO_KWARGS = dict(
    clip_param=0.2, ppo_epoch=2, num_mini_batch=1, value_loss_coef=0.5, entropy_coef=0.01, lr=1e-2, max_grad_norm=0.5
)


def make_agent(algo: str, policy: Policy, reducer=None) -> PPO | A2C:
    if algo == "ppo":
        return PPO(policy, reducer=reducer, **PPO_KWARGS)
    if algo == "ppo_target_kl":  # stops early, on every rank at the same minibatch
        return PPO(policy, reducer=reducer, **{**PPO_KWARGS, "ppo_epoch": 6, "target_kl": 0.002})
    optimizer = make_rmsprop(policy.parameters(), lr=1e-2, eps=1e-5, alpha=0.99)
    return A2C(policy, optimizer, value_loss_coef=0.5, entropy_coef=0.01, norm_adv=True, reducer=reducer)


def agent_rollout() -> tuple[Policy, RolloutStorage]:
    torch.manual_seed(0)
    policy = Policy(BOX_OBS, DISCRETE)
    return policy, rollout_from_policy(policy, BOX_OBS, DISCRETE, T=8, N=4, seed=1)


def agent_rank(algo: str) -> dict:
    ctx = resolve_context(use_cuda=False)
    with process_group(ctx, timeout_s=30):
        policy, rollouts = agent_rollout()
        half = rollouts.num_processes // WORLD
        metrics = make_agent(algo, policy, ctx.reducer()).update(
            column_slice(rollouts, ctx.rank * half, (ctx.rank + 1) * half)
        )
    return {"params": torch.nn.utils.parameters_to_vector(policy.parameters()).detach(), "metrics": metrics}


@pytest.mark.parametrize("algo", ["ppo", "ppo_target_kl", "a2c"])
def test_update_on_two_ranks_equals_one_process_on_the_concatenated_rollout(tmp_path, algo):
    # Full-batch steps (PPO: one minibatch per epoch): the pooled gradient is the mean of the
    # ranks' ones only with global advantage statistics and gradient averaging before the clip.
    run = run_ranks(agent_rank, WORLD, str(tmp_path), algo)
    assert run.exitcodes == [0, 0], run.errors
    policy, rollouts = agent_rollout()
    metrics = make_agent(algo, policy).update(rollouts)
    if algo == "ppo_target_kl":
        assert 1 <= metrics["num_gradient_steps"] < 6
    expected = torch.nn.utils.parameters_to_vector(policy.parameters()).detach()
    # explained_variance is a mean of the ranks' own values, not the pooled one.
    compared = set(metrics) - {"explained_variance"}
    for result in run.results:
        torch.testing.assert_close(result["params"], expected, rtol=0, atol=1e-5)
        assert {name: result["metrics"][name] for name in compared} == pytest.approx(
            {name: metrics[name] for name in compared}, abs=1e-5
        )


# Per rank, per round: batch sizes fed to the observation statistics (0: none that round).
OBS_BATCHES = {0: [[5, 1], [0], [3]], 1: [[7], [0], [0]]}


def stats_data(rank: int, round_: int) -> list[np.ndarray]:
    rng = np.random.default_rng(10 * rank + round_)
    return [rng.normal(1e4 * (1 + rank), [1.0, 5.0, 100.0], size=(n, 3)) for n in OBS_BATCHES[rank][round_]]


def stats_rank() -> dict:
    ctx = resolve_context(use_cuda=False)
    with process_group(ctx, timeout_s=30):
        obs_rms, ret_rms = RunningMeanStd((3,)), RunningMeanStd(())
        after_sync = []
        for round_ in range(len(OBS_BATCHES[0])):
            for batch in stats_data(ctx.rank, round_):
                obs_rms.update(batch)
                ret_rms.update(batch[:, 0] / 1e4)
            sync_running_stats([obs_rms, ret_rms], ctx.reducer())
            after_sync.append((obs_rms.mean, obs_rms.var, obs_rms.count, ret_rms.mean, ret_rms.var))
        returns = [[1.0, 2.0], [10.0]][ctx.rank]
        lengths = [[3.0, 5.0], [40.0]][ctx.rank]
        means = pooled_means([returns, lengths], ctx.reducer())
        nothing = pooled_means([[], []], ctx.reducer())
        stop = (
            stop_requests(ctx.rank == 1, None, ctx.reducer()),
            stop_requests(False, None, ctx.reducer()),
            stop_requests(False, [signal.SIGINT, signal.SIGTERM][ctx.rank], ctx.reducer()),  # SIGTERM's
            stop_requests(False, signal.SIGINT if ctx.rank == 1 else None, ctx.reducer()),
        )
    return {"after_sync": after_sync, "means": means, "nothing": nothing, "stop": stop}


def test_synced_statistics_equal_those_of_the_concatenated_data_and_logging_helpers(tmp_path):
    run = run_ranks(stats_rank, WORLD, str(tmp_path))
    assert run.exitcodes == [0, 0], run.errors
    r0, r1 = run.results
    for a, b in zip(r0["after_sync"], r1["after_sync"]):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)  # identical on every rank
    single_obs, single_ret = RunningMeanStd((3,)), RunningMeanStd(())
    for round_, synced in enumerate(r0["after_sync"]):
        seen = [b for rank in range(WORLD) for b in stats_data(rank, round_)]
        for batch in seen:
            single_obs.update(batch)
            single_ret.update(batch[:, 0] / 1e4)
        np.testing.assert_allclose(synced[0], single_obs.mean, rtol=1e-12)
        np.testing.assert_allclose(synced[1], single_obs.var, rtol=1e-9)
        assert synced[2] == pytest.approx(single_obs.count, rel=1e-12)
        np.testing.assert_allclose(synced[3:], [single_ret.mean, single_ret.var], rtol=1e-9)
    # Sanity: the ranks' data differ, so the synced statistics are not one rank's alone.
    assert abs(r0["after_sync"][0][0][0] - stats_data(0, 0)[0][:, 0].mean()) > 1e3
    for result in (r0, r1):
        assert result["means"] == pytest.approx((13.0 / 3, 48.0 / 3))
        assert result["nothing"] is None
        assert result["stop"] == ((True, None), (False, None), (False, signal.SIGTERM), (False, signal.SIGINT))


def failing_rank(pid_dir: str) -> None:
    """Rank 1's env raises at step 5; rank 0 then waits for it in a collective."""
    ctx = resolve_context(use_cuda=False)
    os.environ[PID_DIR_VARIABLE] = pid_dir
    os.environ[RAISE_AT_VARIABLE] = "5" if ctx.rank == 1 else ""
    with process_group(ctx, timeout_s=5):
        envs = make_vec_envs("tests.dist_helpers:make_pid_env", 2, vec_env="subproc", num_workers=2)
        try:
            envs.reset(seed=ctx.rank * 2)
            for _ in range(8):
                envs.step(envs.action_space.sample())
            stop_requests(False, None, ctx.reducer())
        except PeerFailedError as exc:
            with open(os.path.join(pid_dir, "..", "message.txt"), "w") as f:
                f.write(str(exc))
            raise
        finally:
            envs.close()


def test_a_failing_rank_stops_the_other_within_the_timeout_and_leaves_no_process(tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    run = run_ranks(failing_rank, WORLD, str(tmp_path), str(pid_dir), deadline_s=60)
    assert None not in run.exitcodes, "a rank hung past the deadline"
    assert all(code != 0 for code in run.exitcodes)
    assert len(recorded_pids(str(pid_dir))) >= 4  # each rank's worker processes (and its own)
    assert alive(recorded_pids(str(pid_dir))) == []
    message = (tmp_path / "message.txt").read_text()
    assert message.startswith("rank 0 of 2: an all-reduce failed because another rank stopped")
    assert "\n" not in message
