"""The training loop: envs -> storage -> algorithm -> model.

``Trainer`` holds one run's pieces and trains one update at a time, in the order it runs:
collect a rollout (``rollout.py``), compute its returns (``storage.py``), update the policy
(``algo/``), check that everything is finite. ``loop`` repeats that and, after each update,
records the checkpoint boundary (``checkpointer.py``) and runs the callbacks (``callbacks.py``:
the console / TensorBoard / CSV log, evaluation, the user's); ``run`` builds it all and turns
every way a run can end into a saved checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from a2c_ppo import console
from a2c_ppo.algo.common import Optimizer, set_learning_rate
from a2c_ppo.builders import build_envs, make_agent, policy_for, seed_everything, select_device
from a2c_ppo.callbacks import Callback, EvalCallback, LearningCurve, LogCallback, Stopwatch, UpdateInfo, run_callbacks
from a2c_ppo.checkpoint import first_non_finite
from a2c_ppo.checkpointer import Checkpointer
from a2c_ppo.config import RunConfig
from a2c_ppo.distributed import DistContext, any_rank, broadcast_module, sync_running_stats
from a2c_ppo.distributions import action_shape
from a2c_ppo.envs import VecNormalize, check_env_id
from a2c_ppo.errors import NonFiniteError, WriteFailedError
from a2c_ppo.files import LOCK_NAME, RunLock, copy_atomically
from a2c_ppo.logger import Logger, summary
from a2c_ppo.observations import copy_obs, obs_layout
from a2c_ppo.paths import claim_run_dir, latest_checkpoint_path, run_checkpoint_path
from a2c_ppo.rollout import collect_rollout
from a2c_ppo.signals import StopSignals
from a2c_ppo.storage import RolloutStorage

EVAL_SEED_OFFSET = 1_000_000  # eval envs never share seeds with training envs
EPISODE_WINDOW = 10  # episodes in the console's and TensorBoard's running return


@dataclass
class TrainResult:
    checkpoint: str
    env_steps: int
    # (env steps, mean true return of the last 10 episodes) after every update
    history: list[tuple[int, float]] = field(default_factory=list)


class Trainer:
    """One run's pieces (policy, algorithm, envs, storage) and one update's steps."""

    def __init__(self, config: RunConfig, ctx: DistContext) -> None:
        self.ctx = ctx
        self.batch = config.batch_size * ctx.world_size  # env steps of all ranks per update
        self.num_updates = config.num_env_steps // self.batch
        # The policy exists before the envs: the overlap choice times one of its steps.
        observation_space, action_space = check_env_id(config.env_name, config.action_masks)
        self.policy = policy_for(config, observation_space, action_space).to(ctx.device)
        self.agent = make_agent(config, self.policy, ctx.reducer())
        self.envs = build_envs(config, config.num_processes, ctx.device, policy=self.policy)
        # Record the choices auto made, so that a resumed run makes the same ones.
        workers = getattr(self.envs.envs.unwrapped, "num_workers", 0)
        self.config = config = config.replace(overlap="on" if self.envs.overlap else "off",
                                              vec_env="subproc" if workers else "sync")  # fmt: skip
        action_dim, action_dtype = action_shape(self.envs.action_space)
        self.rollouts = RolloutStorage(
            config.num_steps,
            config.num_processes,
            obs_layout(self.envs.observation_space),
            action_dim,
            action_dtype,
            self.policy.recurrent_hidden_state_size,
            recurrent_chunk_length=config.recurrent_chunk_length,
        ).to(ctx.device)
        self.returns: deque = deque(maxlen=EPISODE_WINDOW)
        self.lengths: deque = deque(maxlen=EPISODE_WINDOW)
        self.update, self.env_steps = 0, 0

    @property
    def optimizer(self) -> Optimizer:
        return self.agent.optimizer

    @property
    def normalizer(self) -> VecNormalize | None:
        return self.envs.envs if isinstance(self.envs.envs, VecNormalize) else None

    def reset_envs(self) -> None:
        """Start new episodes; env ``i`` of rank ``r`` is seeded ``seed + env_steps + r * N + i``."""
        seed = self.config.seed + self.env_steps + self.ctx.rank * self.config.num_processes
        copy_obs(self.rollouts.obs[0], self.envs.reset(seed=seed))

    def learning_rate(self) -> float:
        """Linear decay over the run's final budget (``--num-env-steps`` of this invocation)."""
        if not self.config.use_linear_lr_decay:
            return self.config.lr
        return self.config.lr * (1.0 - self.update / self.num_updates)

    def collect(self) -> float:
        """Fill the storage with a rollout and its returns; this rank's rollout SPS."""
        config, r = self.config, self.rollouts
        start = time.perf_counter()
        try:
            episodes = collect_rollout(
                self.policy, self.envs, r, config.use_proper_time_limits, config.fast_path == "auto"
            )
        except NonFiniteError as exc:  # raised by the env adapter, which knows no update
            raise NonFiniteError(f"{exc} (in the rollout of update {self.update + 1})") from None
        rollout_sps = config.batch_size / max(time.perf_counter() - start, 1e-9)
        if self.normalizer is not None:  # every rank normalises with the statistics of all ranks' data
            sync_running_stats(self.normalizer.statistics(), self.ctx.reducer())
        for ret, length in episodes:
            self.returns.append(ret)
            self.lengths.append(length)
        with torch.no_grad():
            next_value = self.policy.get_value(r.obs[-1], r.recurrent_hidden_states[-1], r.masks[-1])
        r.compute_returns(next_value, config.use_gae, config.gamma, config.gae_lambda)
        return rollout_sps

    def train_policy(self) -> dict[str, float]:
        """Update the policy on the collected rollout at this update's learning rate; its metrics."""
        lr = self.learning_rate()
        set_learning_rate(self.optimizer, lr)
        metrics = self.agent.update(self.rollouts)
        self.rollouts.after_update()
        self.update += 1
        self.env_steps += self.batch
        self.check_finite(metrics)
        return {**metrics, "learning_rate": lr}

    def check_finite(self, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            if not np.isfinite(value) and name != "explained_variance":
                raise NonFiniteError(f"the {name.replace('_', ' ')} is not finite at update {self.update}")
        bad = first_non_finite(self.policy.state_dict())
        if bad is not None:
            raise NonFiniteError(f"model parameter {bad!r} is not finite after update {self.update}")

    def close(self) -> None:
        self.envs.close()


def run(
    config: RunConfig,
    *,
    checkpoint: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
    signals: StopSignals | None = None,
    ctx: DistContext | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train as ``config`` says (continuing ``checkpoint`` if given), calling ``callbacks``
    after every update; where the checkpoint is and the learning curve. Interrupted,
    EnvWorkerError and other failures are re-raised after the last finished update is saved;
    NonFiniteError saves nothing."""
    ctx = ctx or DistContext(device=select_device(config))
    with contextlib.ExitStack() as stack:
        if ctx.is_main:  # rank 0 alone writes: the run folder is its own, locked while it lives
            run_dir = stack.enter_context(own_run_folder(config.run_dir, resumed=checkpoint is not None))
            config = config.replace(run_dir=run_dir)
        return _run(config, checkpoint, notes, signals or StopSignals(), ctx, callbacks)


@contextlib.contextmanager
def own_run_folder(run_dir: str, resumed: bool) -> Iterator[str]:
    """This run's folder, locked while the run lives: a resumed run's own, else a new one
    (``paths.claim_run_dir``). A new folder the run left empty is removed again."""
    new = not (resumed and os.path.isdir(run_dir))
    if new:
        run_dir = claim_run_dir(run_dir)
    lock = RunLock(run_dir).acquire()
    try:
        yield run_dir
    finally:
        lock.release()
        if new and os.listdir(run_dir) == [LOCK_NAME]:  # the run ended before it wrote anything
            shutil.rmtree(run_dir, ignore_errors=True)


def _run(
    config: RunConfig,
    checkpoint: dict[str, Any] | None,
    notes: Sequence[str],
    signals: StopSignals,
    ctx: DistContext,
    callbacks: Sequence[Callback],
) -> TrainResult:
    if ctx.is_main:  # the first line comes before the envs are built: the user sees at once what runs
        batch = config.batch_size * ctx.world_size
        ranks = f" on {ctx.world_size} ranks" if ctx.world_size > 1 else ""
        console.out.line(
            f"Training {config.algo} on {config.env_name}{ranks}: {config.num_env_steps // batch} updates of "
            f"{batch} steps, run folder {config.run_dir}. " + " ".join(notes)
        )
    seed_everything(config.seed + ctx.rank)
    torch.set_num_threads(config.num_threads)
    trainer = Trainer(config, ctx)
    config = trainer.config
    path = run_checkpoint_path(config.run_dir)
    checkpointer = Checkpointer(path, is_main=ctx.is_main, data_parallel=ctx.world_size > 1, signals=signals)
    curve, logger, evaluator = LearningCurve(), None, None
    try:
        start_notes = start(trainer, checkpointer, checkpoint)
        if ctx.is_main:  # ranks > 0 train in lock step and write nothing
            logger = Logger(
                config.run_dir,
                config.to_dict(),
                total_steps=trainer.num_updates * trainer.batch,
                start_step=trainer.env_steps,
                resume_update=trainer.update if checkpoint is not None else None,
                notes=[*notes, *start_notes],
            )
            logger.print(f"Vector env: {trainer.envs.envs.unwrapped!r}, overlap {config.overlap}.")
            for note in start_notes:
                logger.print(note)
            evaluator = EvalCallback(
                logger,
                lambda: build_envs(config, min(config.num_processes, config.eval_episodes), ctx.device, vec_env="sync"),
                lambda: trainer.normalizer.state_dict() if trainer.normalizer is not None else None,
                seed=config.seed + EVAL_SEED_OFFSET,
            )
        hooks: list[Callback] = [curve, LogCallback(logger, ctx, config.log_interval)]
        hooks += [*([evaluator] if evaluator else []), *callbacks]
        loop(trainer, checkpointer, hooks, signals)
        if logger is not None:
            latest = latest_checkpoint_path(config.save_dir, config.algo, config.env_name)
            copy_atomically(path, latest)
            logger.print(
                f"Done: {trainer.env_steps} env steps, {summary(trainer.returns)}. Checkpoint: {path} "
                f"(copied to {latest}, the latest finished run's)"
            )
    except (NonFiniteError, WriteFailedError):
        raise  # the last good checkpoint stays as it is (another write would fail the same way)
    except BaseException:
        if checkpointer.save(trainer) and logger is not None:
            logger.print(
                f"Checkpoint of update {checkpointer.saved_update} saved to {path} "
                f"(continue with: python main.py --resume {path})."
            )
        raise
    finally:
        trainer.close()
        if evaluator is not None:
            evaluator.close()
        if logger is not None:
            logger.close()
    return TrainResult(path, trainer.env_steps, curve.points)


def start(trainer: Trainer, checkpointer: Checkpointer, checkpoint: dict[str, Any] | None) -> list[str]:
    """Reset the envs, or restore everything from ``checkpoint``; notes for the console."""
    ctx = trainer.ctx
    trainer.reset_envs()
    notes = [] if checkpoint is None else checkpointer.restore(trainer, checkpoint, ctx.rank)
    if checkpoint is not None and ctx.rank > 0:  # the checkpoint holds rank 0's RNG: others draw their own
        seed_everything(trainer.config.seed + ctx.rank + ctx.world_size * trainer.update)
    broadcast_module(trainer.policy, ctx)  # every rank starts from rank 0's parameters
    if checkpoint is None:
        checkpointer.mark_saved(0)  # nothing to save until an update has finished
        checkpointer.capture(trainer)
    return notes


def loop(trainer: Trainer, checkpointer: Checkpointer, callbacks: Sequence[Callback], signals: StopSignals) -> None:
    """The updates from the current one to the last (or until a callback stops the run), each
    followed by its callbacks, and the checkpoints."""
    config, stopwatch = trainer.config, Stopwatch(trainer.env_steps)
    while trainer.update < trainer.num_updates:
        rollout_sps = trainer.collect()
        # An update is never cut in half, and the boundary a save uses moves with the parameters
        # and the update's log row, so that a resumed run neither repeats nor misses a row.
        with signals.deferred():
            metrics = trainer.train_policy()
            checkpointer.capture(trainer)
            metrics.update(rollout_SPS=rollout_sps, SPS=stopwatch.sps(trainer.env_steps))
            info = UpdateInfo(
                update=trainer.update,
                num_updates=trainer.num_updates,
                env_steps=trainer.env_steps,
                total_env_steps=trainer.num_updates * trainer.batch,
                metrics=metrics,
                returns=list(trainer.returns),
                lengths=list(trainer.lengths),
                config=config,
                policy=trainer.policy,
            )
            stop = any_rank(run_callbacks(callbacks, info), trainer.ctx.reducer())
        if stop or trainer.update % config.save_interval == 0 or trainer.update == trainer.num_updates:
            checkpointer.save(trainer)
        if stop:
            return
    checkpointer.save(trainer)  # a resumed run that was already finished
