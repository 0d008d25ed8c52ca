"""What runs after every update: the one extension point of the training loop.

A callback is any callable taking an ``UpdateInfo``; returning ``False`` stops the run cleanly
after this update (its checkpoint is saved). The console / TensorBoard / CSV logger and the
periodic evaluation are callbacks too (``LogCallback``, ``EvalCallback``): a user's callback
sees exactly what they see; so are the best model (``BestModelCallback``) and the videos
(``video.VideoCallback``). Under torchrun every rank calls its callbacks; the run stops when
a callback on any rank asks to.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from a2c_ppo.checkpoint import set_raw_rng_state
from a2c_ppo.config import RunConfig
from a2c_ppo.distributed import DistContext, check_in_sync, pooled_means
from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.logger import LEADING_COLUMNS, Logger, format_duration, summary
from a2c_ppo.model import Policy


@dataclass
class UpdateInfo:
    """The state of a run after one update, as callbacks see it.

    ``metrics``: the update's floats, as the algorithm returns them (``policy_loss``,
    ``value_loss``, ``entropy``, ``approx_kl``, ...) plus ``learning_rate``, ``rollout_SPS``
    (this update's env stepping and acting), ``SPS`` (since the loop started) and, with
    ``--norm-value``, ``value_scale``.
    ``returns`` / ``lengths``: the last episodes' true returns and lengths (this rank's);
    ``mean_return`` their mean, ``None`` until an episode has finished. ``record(name, value)``
    logs a value of one's own at this update; ``save(path)`` writes its checkpoint.
    """

    update: int
    num_updates: int
    env_steps: int
    total_env_steps: int
    metrics: dict[str, float]
    returns: list[float]
    lengths: list[int]
    config: RunConfig
    policy: Policy
    extras: dict[str, Any] = field(default_factory=dict)  # what callbacks leave for later ones
    recorded: dict[str, float] = field(default_factory=dict)  # record()'s values, logged after the callbacks
    saver: Callable[[str], None] | None = field(default=None, repr=False)  # save()'s writer: the run's checkpointer

    @property
    def last(self) -> bool:
        return self.update == self.num_updates

    @property
    def mean_return(self) -> float | None:
        """The mean of ``returns``; ``None`` before any episode has finished (a bare
        ``np.mean(info.returns)`` is then NaN, and ``NaN < 200`` is False: a stop)."""
        return float(np.mean(self.returns)) if self.returns else None

    def save(self, path: str) -> str:
        """Write this update's checkpoint to ``path`` (its folders made), a file ``load`` and
        ``--resume`` take, as the run's own checkpoints (rank 0 writes); returns ``path``."""
        if self.saver is None:
            raise RuntimeError("save: only the callbacks of a run can save its checkpoint")
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        self.saver(path)
        return path

    def record(self, name: str, value: float) -> None:
        """Log ``value`` under ``name`` (a TensorBoard tag such as ``"custom/reward_rate"``, a
        progress.csv column) at this update's env steps; rank 0's are written."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"record: the name must be a non-empty str, got {name!r}")
        if name in LEADING_COLUMNS or name.startswith(OWN_TAGS):
            raise ValueError(
                f"record: {name!r} is a value the run logs itself; give yours another name (e.g. 'custom/{name}')."
            )
        try:
            self.recorded[name] = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"record: {name!r} takes a number, got {value!r}") from None


Callback = Callable[[UpdateInfo], "bool | None"]

#: The TensorBoard tags the run logs itself (LogCallback, EvalCallback), closed to ``record``.
OWN_TAGS = ("charts/", "losses/", "eval/")


class LogCallback:
    """Every ``log_interval`` updates (and the last): the console line, TensorBoard and CSV
    (rank 0 writes; every rank joins the all-reduce of the episode statistics). The progress
    bar after every update."""

    def __init__(self, logger: Logger | None, ctx: DistContext, log_interval: int, synced: Sequence[Any] = ()) -> None:
        """``synced``: modules besides the policy that every rank must hold alike (GAIL's
        discriminator), checked with it."""
        self.logger, self.ctx, self.log_interval, self.synced = logger, ctx, log_interval, list(synced)

    def __call__(self, info: UpdateInfo) -> None:
        if self.logger is not None:
            self.logger.progress(info.env_steps)
        if self._due(info):
            self._log(info)

    def on_stop(self, info: UpdateInfo) -> None:
        """A callback stopped the run after ``info``'s update: log it, unless its row is written."""
        if not self._due(info):
            self._log(info)

    def _due(self, info: UpdateInfo) -> bool:
        return info.update % self.log_interval == 0 or info.last

    def _log(self, info: UpdateInfo) -> None:
        episodes = pooled_means([info.returns, info.lengths], self.ctx.reducer())
        for module in (info.policy, *self.synced):
            check_in_sync(module, self.ctx, f"after update {info.update}")
        if self.logger is None:
            return
        metrics = dict(info.metrics)
        charts = ("SPS", "rollout_SPS", "learning_rate", "value_scale")  # value_scale: --norm-value's sigma
        scalars = {f"charts/{name}": metrics.pop(name) for name in charts if name in metrics}
        scalars.update({f"losses/{name}": value for name, value in metrics.items()})
        if episodes is not None:
            scalars["charts/episodic_return"], scalars["charts/episodic_length"] = episodes
        self.logger.scalars(info.env_steps, scalars, update=info.update)
        sps = info.metrics["SPS"]
        eta = (info.total_env_steps - info.env_steps) / max(sps, 1e-9)
        whose = "rank 0's " if self.ctx.is_distributed else ""  # TensorBoard's are every rank's
        self.logger.print(
            f"Updates {info.update}/{info.num_updates}, timesteps {info.env_steps}, SPS {sps:.0f}, "
            f"ETA {format_duration(eta)} | {summary(info.returns, whose)}"
        )


class RecordedValues:
    """After the callbacks: the values they ``record``ed, into the update's TensorBoard step
    and progress.csv row (rank 0 only)."""

    def __init__(self, logger: Logger | None) -> None:
        self.logger = logger

    def __call__(self, info: UpdateInfo) -> None:
        if self.logger is not None and info.recorded:
            self.logger.scalars(info.env_steps, info.recorded, update=info.update)


class EvalCallback:
    """Every ``eval_interval`` updates and after the budget's last: the mean true return of
    ``eval_episodes`` deterministic episodes on separate envs with the run's normalisation
    statistics frozen (rank 0 only)."""

    def __init__(
        self,
        logger: Logger,
        make_envs: Callable[[], TorchVecEnv],
        normalization: Callable[[], dict[str, Any] | None],
        seed: int,
    ) -> None:
        self.logger, self.make_envs, self.normalization, self.seed = logger, make_envs, normalization, seed
        self.envs: TorchVecEnv | None = None

    def __call__(self, info: UpdateInfo) -> None:
        from a2c_ppo.envs.subproc import EnvWorkerError
        from a2c_ppo.evaluation import evaluate, left_out

        config = info.config
        if not config.eval_interval or (info.update % config.eval_interval and not info.last):
            return
        try:
            if self.envs is None:
                self.envs = self.make_envs()
            returns = evaluate(info.policy, self.envs, config.eval_episodes, self.seed, self.normalization())
        except EnvWorkerError as exc:  # named as the evaluation's: its "env 0" is not a training env
            exc.args = (f"the evaluation's {exc}",)
            raise
        cut = left_out(len(returns), config.eval_episodes)
        cut = f" ({cut})" if cut else ""
        if not returns:
            self.logger.print(f"Evaluation: no episode finished, no result this time{cut}")
            return
        mean_return = float(np.mean(returns))
        info.extras["eval/mean_return"] = mean_return
        self.logger.scalars(info.env_steps, {"eval/mean_return": mean_return}, update=info.update)
        episodes = f"{len(returns)} episode{'s' * (len(returns) > 1)}"
        self.logger.print(f"Evaluation over {episodes}: mean return {mean_return:.1f}{cut}")

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()


class BestModelCallback:
    """After each evaluation (``EvalCallback``'s ``eval/mean_return``: it must come first) whose
    mean return beats the best so far (``best``), ``save(mean_return)`` writes this update's
    checkpoint as the best model (rank 0 only)."""

    def __init__(self, logger: Logger, save: Callable[[float], None], path: str, best: float) -> None:
        self.logger, self.save, self.path, self.best = logger, save, path, best

    def __call__(self, info: UpdateInfo) -> None:
        mean_return = info.extras.get("eval/mean_return")
        if mean_return is None or mean_return <= self.best:
            return
        self.save(mean_return)
        self.best = mean_return
        self.logger.print(f"Best model so far (mean return {mean_return:.1f}) saved to {self.path}")


class LearningCurve:
    """``(env steps, mean true return of the last episodes)`` after every update that has one."""

    def __init__(self) -> None:
        self.points: list[tuple[int, float]] = []

    def __call__(self, info: UpdateInfo) -> None:
        if info.mean_return is not None:
            self.points.append((info.env_steps, info.mean_return))


class Stopwatch:
    """Env steps per second since the loop started (``SPS``), for the update's metrics."""

    def __init__(self, env_steps: int) -> None:
        self.start_time, self.start_steps = time.monotonic(), env_steps

    def sps(self, env_steps: int) -> float:
        return (env_steps - self.start_steps) / max(time.monotonic() - self.start_time, 1e-9)


def own_draws(callbacks: Sequence[Callback], states: Callable[[], tuple[Any, ...]]) -> Callback:
    """The user's ``callbacks`` as one, after which the generators (torch's, CUDA's, numpy's,
    Python's) are put back in ``states()``, those the update ended with (``raw_rng_state``), as
    its checkpoint holds them: what a callback draws (a sampled evaluation, a diagnostic) leaves
    the run's numbers alone, so the run trains as it would without it and a resume continues
    exactly. (Putting back costs some 45 us an update, paid only with callbacks of one's own.)"""

    def call(info: UpdateInfo) -> bool | None:
        try:
            return False if run_callbacks(callbacks, info) else None
        finally:
            set_raw_rng_state(states())

    return call


def run_callbacks(callbacks: Sequence[Callback], info: UpdateInfo) -> bool:
    """Call each callback in order; whether one asked to stop: returned ``False`` (or numpy's,
    as ``np.mean(info.returns) < 200`` gives: NaN, a stop, before any episode has finished;
    ``info.mean_return`` is ``None`` then). Anything else goes on: ``None`` (a callback without
    a ``return``), a number, an array."""
    stop = False
    for callback in callbacks:
        answer = callback(info)
        stop = (isinstance(answer, (bool, np.bool_)) and not answer) or stop
    return stop
