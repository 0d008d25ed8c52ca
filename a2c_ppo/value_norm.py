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
    """The returns' running variance, and the rollout's returns in the critic's units."""

    def __init__(self) -> None:
        self.stats = RunningMeanStd()

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
        rows = rollouts.returns if rollouts.valid is None else rollouts.returns[rollouts.valid]
        self.stats.update(rows.reshape(-1).double().cpu().numpy())
        sync_running_stats([self.stats], reducer)
        rollouts.returns.div_(sigma)
        rollouts.value_preds.div_(sigma)
        rollouts.bootstrap_values.div_(sigma)
        rollouts.value_scale = sigma

    def state_dict(self) -> dict[str, Any]:
        return self.stats.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats.load_state_dict(state)
