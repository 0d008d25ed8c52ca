"""Running mean / variance with the parallel (Chan et al.) merge formula.

Data-parallel training keeps one ``RunningMeanStd`` per rank. Between two synchronisations
each rank's statistics also include its own batches since the last one (as in a single
process); at a synchronisation every rank contributes the moments of those batches and all
ranks end with the statistics of everything every rank has seen (``sync_payload`` /
``apply_sync``; the all-reduce in between is ``a2c_ppo.distributed.sync_running_stats``).
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np

Moments = TypeVar("Moments", float, np.ndarray)


def merge_moments(
    count_a: float, mean_a: Moments, m2_a: Moments, count_b: float, mean_b: Moments, m2_b: Moments
) -> tuple[float, Moments, Moments]:
    """Count, mean and sum of squared deviations (m2) of the union of two samples (arrays of
    the same shape, or Python floats)."""
    total = count_a + count_b
    if total == 0:
        return 0.0, mean_a, m2_a
    delta = mean_b - mean_a
    weight_b = count_b / total  # Python floats: one array op fewer per term
    mean = mean_a + delta * weight_b
    m2 = m2_a + m2_b + delta * delta * (count_a * weight_b)
    return total, mean, m2


class RunningMeanStd:
    """Mean and variance of a stream of batches of shape ``(B, *shape)``.

    Batches are merged with the parallel-variance formula, so the statistics equal
    ``np.mean`` / ``np.var`` (population variance) of everything seen so far, up to the
    tiny prior count ``epsilon`` that keeps the first update well defined.
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = float(epsilon)
        self._mark_synced()

    def _mark_synced(self) -> None:
        """Remember the current statistics as the last synchronised ones."""
        self._synced = (self.count, self.mean.copy(), self.var * self.count)

    def update(self, batch: np.ndarray) -> None:
        """Merge ``batch (B, *shape)`` in. This runs on every env step, so it is written for the
        few rows of one step: a dozen numpy calls, and none for a batch of one row's m2."""
        batch = np.asarray(batch, dtype=np.float64)
        batch_count = batch.shape[0]
        if batch_count == 0:
            return
        batch_mean = batch[0] if batch_count == 1 else np.add.reduce(batch, axis=0) / batch_count
        total = self.count + batch_count
        delta = batch_mean - self.mean
        # merge_moments' formula, inlined: the weights are Python floats, one array op fewer per term
        m2 = self.var * self.count + delta * delta * (self.count * batch_count / total)
        if batch_count > 1:
            deviations = batch - batch_mean
            m2 += np.add.reduce(deviations * deviations, axis=0)
        self.mean = self.mean + delta * (batch_count / total)
        self.var = m2 / total
        self.count = total

    def sync_payload(self) -> np.ndarray:
        """The batches since the last sync as a float64 vector ``[n, S1..., S2...]`` of length
        ``1 + 2 * size``, whose element-wise sum over ranks describes all ranks' batches.

        ``S1 = n (mean - c)`` and ``S2 = m2 + n (mean - c)^2`` are the sums of those batches
        around ``c``, the mean at the last sync, which every rank shares; shifting by it keeps
        the sums small, so recovering the pooled variance from them loses no precision. They
        follow from the statistics now (N, M, M2) and at the last sync (N0, c, M2_0) by
        inverting the merge: ``n = N - N0``, ``S1 = N (M - c)``, ``S2 = M2 - M2_0 + N (M - c)^2``.
        """
        synced_count, synced_mean, synced_m2 = self._synced
        shift = self.mean - synced_mean
        s1 = self.count * shift
        s2 = self.var * self.count - synced_m2 + s1 * shift
        return np.concatenate([[self.count - synced_count], s1.ravel(), s2.ravel()])

    def apply_sync(self, summed: np.ndarray) -> None:
        """Set the statistics to the last synced ones merged with the batches that ``summed``
        (the sum over ranks of ``sync_payload()``) describes."""
        size = self.mean.size
        count = float(summed[0])
        synced_count, synced_mean, synced_m2 = self._synced
        if count > 0:
            offset = summed[1 : 1 + size].reshape(self.mean.shape) / count
            m2 = summed[1 + size :].reshape(self.mean.shape) - count * offset**2
            merged = merge_moments(synced_count, synced_mean, synced_m2, count, synced_mean + offset, m2)
        else:
            merged = self._synced
        self.count, self.mean, m2 = merged
        self.var = m2 / self.count
        self._mark_synced()

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        """ValueError for statistics no data gives (a NaN, a negative variance or count): a
        file's numbers would otherwise surface as the env's non-finite observations."""
        mean = np.asarray(state["mean"], dtype=np.float64).reshape(self.mean.shape)
        var = np.asarray(state["var"], dtype=np.float64).reshape(self.var.shape)
        count = float(state["count"])
        if not (np.isfinite(mean).all() and np.isfinite(var).all() and (var >= 0).all()):
            raise ValueError("a mean or variance is not finite, or a variance is negative")
        if not (math.isfinite(count) and count > 0):
            raise ValueError(f"the count is {count}, not a positive number")
        self.mean, self.var, self.count = mean, var, count
        self._mark_synced()
