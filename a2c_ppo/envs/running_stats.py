"""Running mean / variance with the parallel (Chan et al.) merge formula.

Data-parallel training keeps one ``RunningMeanStd`` per rank. Between two synchronisations
each rank's statistics also include its own batches since the last one (as in a single
process); at a synchronisation every rank contributes the moments of those batches and all
ranks end with the statistics of everything every rank has seen (``sync_payload`` /
``apply_sync``; the all-reduce in between is ``a2c_ppo.distributed.sync_running_stats``).
"""

from __future__ import annotations

import numpy as np


def merge_moments(
    count_a: float, mean_a: np.ndarray, m2_a: np.ndarray, count_b: float, mean_b: np.ndarray, m2_b: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Count, mean and sum of squared deviations (m2) of the union of two samples."""
    total = count_a + count_b
    if total == 0:
        return 0.0, mean_a, m2_a
    delta = mean_b - mean_a
    weight_b = count_b / total  # Python floats: one array op fewer per term (this runs every env step)
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
        """Start a new since-last-sync accumulator from the current statistics."""
        self._synced = (self.count, self.mean.copy(), self.var * self.count)
        self._unsynced = (0.0, np.zeros_like(self.mean), np.zeros_like(self.mean))

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, dtype=np.float64)
        batch_count = batch.shape[0]
        if batch_count == 0:
            return
        # Plain sums, not np.mean / np.var: their wrappers cost more than the arithmetic on
        # the few rows of one env step.
        batch_mean = batch.sum(axis=0) / batch_count
        if batch_count == 1:
            batch_m2 = np.zeros_like(batch_mean)
        else:
            deviations = batch - batch_mean
            batch_m2 = (deviations * deviations).sum(axis=0)
        self.count, self.mean, m2 = merge_moments(
            self.count, self.mean, self.var * self.count, batch_count, batch_mean, batch_m2
        )
        self.var = m2 / self.count
        self._unsynced = merge_moments(*self._unsynced, batch_count, batch_mean, batch_m2)

    def sync_payload(self) -> np.ndarray:
        """The batches since the last sync as a float64 vector ``[n, S1..., S2...]`` of length
        ``1 + 2 * size``, whose element-wise sum over ranks describes all ranks' batches.

        ``S1 = n (mean - c)`` and ``S2 = m2 + n (mean - c)^2`` are sums around ``c``, the mean
        at the last sync, which every rank shares; shifting by it keeps the sums small, so
        recovering the pooled variance from them loses no precision.
        """
        count, mean, m2 = self._unsynced
        offset = mean - self._synced[1]
        return np.concatenate([[count], (count * offset).ravel(), (m2 + count * offset**2).ravel()])

    def apply_sync(self, summed: np.ndarray) -> None:
        """Set the statistics to the last synced ones merged with the batches that ``summed``
        (the sum over ranks of ``sync_payload()``) describes; starts a new accumulator."""
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
        self.mean = np.asarray(state["mean"], dtype=np.float64).reshape(self.mean.shape)
        self.var = np.asarray(state["var"], dtype=np.float64).reshape(self.var.shape)
        self.count = float(state["count"])
        self._mark_synced()
