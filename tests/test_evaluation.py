"""Evaluation (``evaluation.evaluate``) by hand: true returns under normalised rewards, the run's
statistics loaded and frozen, each env's share of the episodes, a recurrent state restarted at
every episode, deterministic actions."""

from __future__ import annotations

import numpy as np
import torch

from a2c_ppo.envs import make_vec_envs
from a2c_ppo.envs.frames import EnvRecipe
from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.evaluation import evaluate


class AlwaysOne(torch.nn.Module):
    """Takes action 1 and records what it was given; its one-number "recurrent state" counts the
    steps since its mask last was 0."""

    recurrent_hidden_state_size = 1

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]] = []

    def act(self, obs, rnn_hxs, masks, deterministic=False):
        self.calls.append((obs.clone(), rnn_hxs.clone(), masks.clone(), deterministic))
        return None, torch.ones(len(obs), 1, dtype=torch.long), None, rnn_hxs * masks + 1


def test_evaluation_reports_true_returns_with_the_runs_statistics_frozen():
    # CounterEnv: obs [t, noise, last action], reward t + action, terminated at t = 3
    recipe = EnvRecipe(kwargs={"terminate_at": 3})
    envs = TorchVecEnv(make_vec_envs("tests.envs_for_tests:CounterEnv", 2, norm_obs=True, norm_reward=True,
                                     vec_env="sync", recipe=recipe))  # fmt: skip
    try:
        state = envs.envs.state_dict()  # the run's statistics: t's mean 1 and variance 4; returns' std 0.01
        state["obs_rms"] = {"mean": [1.0, 0.0, 0.0], "var": [4.0, 1.0, 1.0], "count": 50.0}
        state["ret_rms"] = {"mean": 0.0, "var": 1e-4, "count": 50.0}
        policy = AlwaysOne()
        returns = evaluate(policy, envs, 3, seed=7, normalization=state)
        # each episode: (1 + 1) + (2 + 1) + (3 + 1) = 9, though every scaled reward clipped at 10
        assert returns == [9.0, 9.0, 9.0]
        frozen = envs.envs.state_dict()
        assert (frozen["obs_rms"], frozen["ret_rms"]) == (state["obs_rms"], state["ret_rms"])
        # env 0 plays 2 episodes, env 1 one: 6 steps
        assert len(policy.calls) == 6 and all(deterministic for *_, deterministic in policy.calls)
        t = torch.stack([obs[:, 0] for obs, *_ in policy.calls])  # normalised: (t - 1) / 2
        torch.testing.assert_close(t[:, 0], torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0, 2.0]).sub(1).div(2))
        masks = torch.stack([m[:, 0] for _, _, m, _ in policy.calls])
        np.testing.assert_array_equal(masks[:, 0].numpy(), [0, 1, 1, 0, 1, 1])  # each episode starts anew
        states = torch.stack([h[:, 0] for _, h, _, _ in policy.calls])
        np.testing.assert_array_equal(states[:, 0].numpy(), [0, 1, 2, 3, 1, 2])  # restarted by the mask
    finally:
        envs.close()
