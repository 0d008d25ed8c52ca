"""``--norm-value``: the critic's units against reward units, by hand, and its exact resume."""

from __future__ import annotations

import functools
import importlib.util
import math

import pytest
import torch

from a2c_ppo.algo.common import rollout_advantages
from a2c_ppo.arguments import resolve
from a2c_ppo.errors import ConfigError
from a2c_ppo.storage import RolloutStorage
from a2c_ppo.value_norm import ValueNormalizer
from tests.helpers import assert_exact_resume


def _rollout(truncated_first: bool) -> RolloutStorage:
    """T=2, N=1: rewards 1, 2; the critic says 1, 2 and 3 after the rollout; 5 for the final
    observation of a truncation at the first step."""
    r = RolloutStorage(2, 1, (1,), 1)
    r.rewards[:, 0, 0] = torch.tensor([1.0, 2.0])
    r.value_preds[:2, 0, 0] = torch.tensor([1.0, 2.0])
    if truncated_first:
        r.truncated[0, 0, 0] = True
        r.bootstrap_values[0, 0, 0] = 5.0
    return r


@pytest.mark.parametrize(
    ("truncated_first", "raw_returns"),
    [
        # sigma 2: values 2, 4, next 6; gamma 0.5, lambda 0.5: delta1 = 2 + 0.5 * 6 - 4 = 1,
        # delta0 = 1 + 0.5 * 4 - 2 = 1; A1 = 1, A0 = 1 + 0.25 * 1 = 1.25; R = A + V: 3.25, 5
        (False, [3.25, 5.0]),
        # truncated at step 0: A0 = 1 + 0.5 * V(final obs) - 2 = 1 + 0.5 * 10 - 2 = 4, none from step 1
        (True, [6.0, 5.0]),
    ],
)
def test_returns_and_advantages_come_from_values_in_reward_units(truncated_first, raw_returns):
    normalizer = ValueNormalizer()
    normalizer.stats.var[...] = 4.0  # sigma = 2 (and 1e-8 under the root)
    sigma = math.sqrt(4.0 + 1e-8)
    r = _rollout(truncated_first)
    returns = functools.partial(r.compute_returns, use_gae=True, gamma=0.5, gae_lambda=0.5)
    normalizer.compute_returns(r, torch.tensor([[3.0]]), returns, None)
    raw = torch.tensor(raw_returns)
    # the critic's targets: the returns over the sigma the rollout acted with (not the updated one)
    torch.testing.assert_close(r.returns[:, 0, 0], raw / sigma)
    torch.testing.assert_close(r.value_preds[:, 0, 0], torch.tensor([1.0, 2.0, 3.0]))
    assert r.bootstrap_values[0, 0, 0].item() == pytest.approx(5.0 if truncated_first else 0.0)
    # the advantages in reward units: raw returns less the values times sigma (1.25 and 1 untruncated)
    torch.testing.assert_close(rollout_advantages(r, False)[:, 0, 0], raw - torch.tensor([1.0, 2.0]) * sigma)
    assert r.value_scale == sigma
    # then the statistics took the raw returns (after a prior of count 1e-4)
    assert normalizer.stats.mean == pytest.approx(raw.mean().item(), rel=1e-3)
    assert normalizer.stats.var == pytest.approx(raw.var(unbiased=False).item(), rel=1e-2)
    assert normalizer.scale == pytest.approx(math.sqrt(normalizer.stats.var + 1e-8))


def test_without_it_the_advantages_are_returns_less_values():
    r = _rollout(False)
    r.compute_returns(torch.tensor([[3.0]]), use_gae=True, gamma=0.5, gae_lambda=1.0)
    # R1 = 2 + 0.5 * 3 = 3.5, R0 = 1 + 0.5 * 3.5 = 2.75
    torch.testing.assert_close(rollout_advantages(r, False)[:, 0, 0], torch.tensor([1.75, 1.5]))


def test_the_statistics_are_in_the_checkpoint_and_the_resume_is_exact(tmp_path):
    flags = ["--algo", "a2c", "--env-name", "Pendulum-v1", "--norm-value", "--no-norm-reward", "--num-processes", "2",
             "--num-steps", "16", "--no-use-linear-lr-decay", "--save-interval", "1", "--vec-env", "sync",
             "--precision", "fp32", "--overlap", "off"]  # fmt: skip

    stats = assert_exact_resume(tmp_path, flags, 320)["algorithm"]["value_norm"]
    assert stats["count"] > 100 and stats["var"] > 1.0  # Pendulum's returns: hundreds below zero


def test_it_replaces_the_reward_scaling_of_a_preset_or_entry_unless_that_is_typed(tmp_path):
    def norm_reward(*flags: str) -> bool:
        argv = ["--env-name", "HalfCheetah-v5", "--log-dir", str(tmp_path), *flags]
        return resolve(argv).config.norm_reward

    assert norm_reward() and not norm_reward("--norm-value")  # the entry's (the zoo's normalize=True)
    assert norm_reward("--preset", "mujoco") and not norm_reward("--preset", "mujoco", "--norm-value")
    assert norm_reward("--norm-value", "--norm-reward")


def test_the_statistics_can_come_from_each_envs_discounted_rewards():
    """``--value-norm-stats rewards``: the std is over each env's running discounted sum of
    rewards, restarted where an episode starts and carried over rollouts; not the returns."""
    normalizer = ValueNormalizer("rewards", gamma=0.5)
    first, second = RolloutStorage(2, 2, (1,), 1), RolloutStorage(2, 2, (1,), 1)
    first.rewards[:, :, 0] = torch.tensor([[1.0, 4.0], [2.0, 8.0]])
    first.masks[1, 1, 0] = 0.0  # env 1's second step starts a new episode
    second.rewards[:, :, 0] = torch.tensor([[2.0, 2.0], [0.0, 0.0]])
    second.masks[1, 0, 0] = 0.0
    for r in (first, second):
        returns = functools.partial(r.compute_returns, use_gae=True, gamma=0.5, gae_lambda=0.5)
        normalizer.compute_returns(r, torch.full((2, 1), 100.0), returns, None)  # bootstraps do not count
    # env 0: 1, 0.5 + 2 = 2.5, 1.25 + 2 = 3.25, new episode: 0; env 1: 4, new episode 8, 4 + 2 = 6, 3
    sums = torch.tensor([1.0, 4.0, 2.5, 8.0, 3.25, 6.0, 0.0, 3.0], dtype=torch.float64)
    assert normalizer.stats.mean == pytest.approx(sums.mean().item(), rel=1e-4)
    assert normalizer.stats.var == pytest.approx(sums.var(unbiased=False).item(), rel=1e-3)
    assert normalizer.running is not None and normalizer.running[:, 0].tolist() == [0.0, 3.0]
    restored = ValueNormalizer("rewards", gamma=0.5)
    restored.load_state_dict(normalizer.state_dict())
    assert restored.running is not None and torch.equal(restored.running, normalizer.running)


def test_rewards_statistics_resume_exactly_and_need_norm_value(tmp_path):
    flags = ["--env-name", "Pendulum-v1", "--algo", "a2c", "--num-processes", "2", "--num-steps", "5", "--norm-value",
             "--value-norm-stats", "rewards", "--no-use-linear-lr-decay", "--save-interval", "1",
             "--precision", "fp32", "--overlap", "off"]  # fmt: skip
    halfway = assert_exact_resume(tmp_path, flags, 200)
    assert "running" in halfway["algorithm"]["value_norm"]
    with pytest.raises(ConfigError, match="add --norm-value or drop --value-norm-stats"):
        resolve(["--env-name", "Pendulum-v1", "--value-norm-stats", "rewards", "--log-dir", str(tmp_path)])


@pytest.mark.skipif(importlib.util.find_spec("mujoco") is None, reason="needs mujoco")
def test_an_entrys_statistics_go_with_a_typed_no_norm_value(tmp_path):
    # HalfCheetah-v5's A2C entry takes --norm-value with the rewards' statistics
    flags = ["--env-name", "HalfCheetah-v5", "--algo", "a2c", "--log-dir", str(tmp_path)]
    config = resolve(flags).config
    assert config.norm_value and config.value_norm_stats == "rewards"
    config = resolve([*flags, "--no-norm-value"]).config
    assert not config.norm_value and config.value_norm_stats == "returns"
    with pytest.raises(ConfigError, match="add --norm-value or drop --value-norm-stats"):
        resolve([*flags, "--no-norm-value", "--value-norm-stats", "rewards"])


def test_new_episodes_restart_each_envs_discounted_rewards(tmp_path):
    """``reset_envs`` starts new episodes (a run's start, a resume that cannot restore the envs'
    states): each env's running discounted sum of rewards (``rewards`` statistics), restored from
    the checkpoint, must restart with them, as VecNormalize's running returns do; it went on
    from the old episodes' sums."""
    from a2c_ppo.distributed import DistContext
    from a2c_ppo.trainer import Trainer
    from tests.helpers import local_run_flags

    flags = ["--env-name", "Pendulum-v1", "--algo", "a2c", "--norm-value", "--value-norm-stats", "rewards",
             "--gamma", "0.5", "--num-processes", "2", "--num-steps", "3", "--vec-env", "sync"]  # fmt: skip
    trainer = Trainer(resolve([*flags, *local_run_flags(tmp_path)]).config, DistContext(device=torch.device("cpu")))
    try:
        trainer.reset_envs()
        trainer.collect()
        trainer.train_policy()
        normalizer = trainer.value_normalizer
        assert normalizer is not None and normalizer.running is not None and (normalizer.running < -0.1).all()
        trainer.reset_envs()
        trainer.collect()  # 3 steps of Pendulum's 200-step episodes: none ends
        rewards = trainer.rollouts.rewards[:, :, 0]
        by_hand = 0.25 * rewards[0] + 0.5 * rewards[1] + rewards[2]  # from 0 at the new episodes' start
        torch.testing.assert_close(normalizer.running[:, 0], by_hand)
    finally:
        trainer.close()


def test_a_resume_cannot_switch_where_the_statistics_come_from(tmp_path):
    """A resume with another --value-norm-stats was taken: the running std of the returns went on
    over discounted reward sums (started at 0 mid-episode), or the other way round, under a
    critic that learned in the first one's units."""
    from a2c_ppo.session import launch
    from tests.helpers import local_run_flags

    flags = ["--env-name", "Pendulum-v1", "--algo", "a2c", "--num-processes", "2", "--num-steps", "5", "--norm-value",
             "--num-env-steps", "10"]  # fmt: skip
    for stats, other in [("returns", "rewards"), ("rewards", "returns")]:
        saved = launch(resolve([*flags, "--value-norm-stats", stats, *local_run_flags(tmp_path / stats)]))
        with pytest.raises(ConfigError, match=f"std of the {stats} .* with --value-norm-stats {other}"):
            resolve(["--resume", saved.checkpoint, "--num-env-steps", "20", "--value-norm-stats", other])
        typed_again = resolve(["--resume", saved.checkpoint, "--num-env-steps", "20", "--value-norm-stats", stats])
        assert typed_again.config.value_norm_stats == stats
