"""Seeds of a run's streams of episodes (training, evaluation, replays, videos) never coincide."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from a2c_ppo.arguments import resolve
from a2c_ppo.distributed import DistContext
from a2c_ppo.trainer import Trainer
from tests.helpers import local_run_flags


@pytest.mark.parametrize("env_steps", [0, 1_000_000, 2_000_000, 3_000_000])
def test_a_resume_at_a_round_budget_does_not_start_evaluations_episodes(tmp_path, env_steps):
    """A resume that cannot restore its envs' states starts new episodes ``env_steps`` in; at
    1,000,000 steps they were seeded as the evaluation envs (``seed + 1,000,000 + i``), at
    2,000,000 and 3,000,000 as replays and videos, so the episodes evaluated were trained on."""
    config = resolve(["--num-processes", "4", "--seed", "3", *local_run_flags(tmp_path)]).config
    trainer = Trainer(config, DistContext(device=torch.device("cpu")))
    try:
        trainer.env_steps = env_steps
        trainer.reset_envs()
        started = trainer.rollouts.obs[0].numpy()
    finally:
        trainer.close()
    for stream in (1_000_000, 2_000_000, 3_000_000):  # evaluation's, replays', videos' offsets
        firsts = np.stack([gym.make("CartPole-v1").reset(seed=3 + stream + i)[0] for i in range(4)])
        assert not (started[:, None] == firsts[None]).all(-1).any(), f"an env starts as stream {stream}'s"
    if env_steps == 0:  # a new run keeps seed + i
        new_run = [gym.make("CartPole-v1").reset(seed=3 + i)[0] for i in range(4)]
        np.testing.assert_array_equal(started, np.stack(new_run))


def test_stream_bases_are_disjoint_for_every_rank_and_resume_point():
    from a2c_ppo import seeds

    envs = 64
    fixed = [seeds.EVALUATION, seeds.REPLAY, seeds.VIDEO]
    for env_steps in [0, 999_999, 1_000_000, 2_000_000 - 64, 3_000_000, 10_000_000]:
        for rank in range(4):
            base = seeds.training_base(5, env_steps, rank, envs) - 5
            assert all(base + envs <= start or start + envs <= base for start in fixed), (env_steps, rank)
