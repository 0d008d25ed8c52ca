"""Value targets over a running std of the returns (``--norm-value``).

The critic learns ``R / sigma`` where ``sigma = sqrt(Var[R] + 1e-8)`` is the std of every
return computed so far; the advantages stay in reward units. This is Tianshou's
``reward_normalization`` for its policy-gradient family (``a2c.py``'s ``process_fn``: values
scaled back by ``sigma``, GAE on the env's rewards, the returns divided by the ``sigma`` before
this rollout's returns update it, the mean not subtracted) and rl_games' ``normalize_value``
without the mean. ``--norm-reward`` instead scales the rewards themselves, which shrinks the
advantages too: against an entropy bonus tuned for reward-unit advantages, the policy's
std then grows without bound (Tianshou's MuJoCo A2C settings, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from a2c_ppo.algo.common import Reducer
from a2c_ppo.distributed import sync_running_stats
from a2c_ppo.envs.running_stats import RunningMeanStd
from a2c_ppo.storage import RolloutStorage

#: Added to the returns' variance before the square root (Tianshou's ``_eps``).
VARIANCE_EPS = 1e-8


class ValueNormalizer:
    """The running variance of the returns, and the rollout's returns in the critic's units.

    ``stats_from`` ``returns``: the variance of the returns the rollouts compute (Tianshou's).
    Their bootstrap values are the critic's outputs times ``sigma``, so a critic's error feeds
    back into ``sigma``: with 5-step rollouts on Hopper it grew from about 30 to 1,500 within
    50k steps (docs/BENCHMARKS.md). ``rewards``: the variance of each env's running discounted
    sum of rewards (what ``--norm-reward`` scales by), which the critic does not touch.
    """

    def __init__(self, stats_from: str = "returns", gamma: float = 0.99) -> None:
        self.stats = RunningMeanStd()
        self.stats_from, self.gamma = stats_from, gamma
        self.running: torch.Tensor | None = None  # (N, 1) each env's discounted reward sum (``rewards``)

    @property
    def scale(self) -> float:
        """``sigma``: a critic's output times this is a value in reward units."""
        return math.sqrt(float(self.stats.var) + VARIANCE_EPS)

    def compute_returns(
        self,
        rollouts: RolloutStorage,
        next_value: torch.Tensor,
        returns: Callable[[torch.Tensor], None],
        reducer: Reducer | None,
    ) -> None:
        """``returns(next_value)`` (``RolloutStorage.compute_returns`` bound to its settings) on
        the critic's outputs (``value_preds``, ``bootstrap_values``, ``next_value``: (T+1, N, 1),
        (T, N, 1), (N, 1)) scaled to reward units; then the statistics take the returns (of all
        ranks) and ``returns``, ``value_preds`` and ``bootstrap_values`` are in the critic's units,
        by the ``sigma`` the rollout acted with. ``rollouts.value_scale`` keeps it for the advantages."""
        sigma = self.scale
        rollouts.value_preds.mul_(sigma)
        rollouts.bootstrap_values.mul_(sigma)
        returns(next_value * sigma)
        seen = rollouts.returns if self.stats_from == "returns" else self._discounted_rewards(rollouts)
        rows = seen if rollouts.valid is None else seen[rollouts.valid]
        self.stats.update(rows.reshape(-1).double().cpu().numpy())
        sync_running_stats([self.stats], reducer)
        rollouts.returns.div_(sigma)
        rollouts.value_preds.div_(sigma)
        rollouts.bootstrap_values.div_(sigma)
        rollouts.value_scale = sigma

    def _discounted_rewards(self, rollouts: RolloutStorage) -> torch.Tensor:
        """(T, N, 1): each env's discounted sum of rewards after each step, restarting where an
        episode starts (``masks`` 0), carried over from rollout to rollout in ``running``."""
        running = self.running
        if running is None or running.shape != rollouts.rewards[0].shape:
            running = torch.zeros_like(rollouts.rewards[0])
        sums = torch.empty_like(rollouts.rewards)
        for t in range(rollouts.rewards.shape[0]):
            running = self.gamma * running * rollouts.masks[t] + rollouts.rewards[t]
            sums[t] = running
        self.running = running
        return sums

    def state_dict(self) -> dict[str, Any]:
        """The statistics, and each env's running sum where they come from the rewards."""
        state = self.stats.state_dict()
        return state if self.running is None else {**state, "running": self.running.reshape(-1).tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats.load_state_dict(state)
        running = state.get("running")
        self.running = None if running is None else torch.as_tensor(running, dtype=torch.float32).reshape(-1, 1)
