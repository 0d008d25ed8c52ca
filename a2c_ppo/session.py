"""A whole training run: the update loop, the callbacks and every way it ends.

``run`` claims and locks the run folder (``run_folder.py``), builds a ``Trainer`` (``trainer.py``) and a
``Checkpointer``, and ``loop`` trains update after update; after each one it records the
checkpoint boundary (``checkpointer.py``) and runs the callbacks (``callbacks.py``: the
console / TensorBoard / CSV log, evaluation, the best model, videos, the user's). Every
ending but a non-finite update saves the last finished update.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from a2c_ppo import console, seeds
from a2c_ppo.builders import (
    build_envs,
    replay_vec_env,
    seed_everything,
    select_device,
)
from a2c_ppo.callbacks import (
    BestModelCallback,
    Callback,
    EvalCallback,
    LearningCurve,
    LogCallback,
    RecordedValues,
    Stopwatch,
    UpdateInfo,
    own_draws,
    run_callbacks,
)
from a2c_ppo.checkpoint import resume_command
from a2c_ppo.checkpointer import (
    Checkpointer,
    best_checkpoint_path,
    best_mean_return,
    copy_finished_run,
)
from a2c_ppo.config import RunConfig
from a2c_ppo.distributed import DistContext, broadcast_module, share_refusal, stop_requests
from a2c_ppo.errors import ConfigError, NonFiniteError, NonFiniteRolloutError, RunFolderLostError, WriteFailedError
from a2c_ppo.files import write_atomically
from a2c_ppo.logger import Logger, summary
from a2c_ppo.paths import latest_checkpoint_path, run_checkpoint_path
from a2c_ppo.run_folder import FolderGuard, FolderUse, own_run_folder
from a2c_ppo.signals import Interrupted, StopSignals
from a2c_ppo.tracking import Tracker, start_tracking
from a2c_ppo.trainer import Trainer
from a2c_ppo.video import EpisodeRecorder, VideoCallback

if TYPE_CHECKING:
    from a2c_ppo.resolve import LaunchRequest


@dataclass
class TrainResult:
    """What ``train`` returns: the run's checkpoint (``RUN_DIR/checkpoint.pt``; ``run_dir`` is
    its folder, with the TensorBoard events and progress.csv), the env steps trained, and the
    learning curve: ``(env steps, mean true return of the last 10 episodes)`` after every update
    that had finished an episode by then (empty if none had)."""

    checkpoint: str
    env_steps: int
    history: list[tuple[int, float]] = field(default_factory=list)
    stopped: bool = False  # a callback stopped the run before its budget
    # Ctrl-C or SIGTERM (``Ctrl-C`` / ``SIGTERM``) came after training had ended: the run finished
    # (checkpoint and copies written) all the same; a caller that runs more may stop on it
    late_signal: str | None = None

    @property
    def run_dir(self) -> str:
        return os.path.dirname(self.checkpoint)


def run(
    config: RunConfig,
    *,
    checkpoint: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
    signals: StopSignals | None = None,
    ctx: DistContext | None = None,
    callbacks: Sequence[Callback] = (),
    best_model: bytes | None = None,
    in_place: bool = False,
) -> TrainResult:
    """Train as ``config`` says (continuing ``checkpoint`` if given), calling ``callbacks``
    after every update; where the checkpoint is and the learning curve. ``in_place``: the
    resumed run goes on in its own folder, ``config.run_dir``; else the run claims a new folder
    of that name (or one suffixed, where it is taken). ``best_model``: the resumed run's best
    model (its file's bytes), written into a new run folder as the best so far. Interrupted,
    EnvWorkerError and other failures are re-raised after the last finished update is saved
    (where they cut an update, the last checkpoint written stays);
    so is it after a NonFiniteRolloutError (the envs' NaN: the parameters are still that
    update's); any other NonFiniteError saves nothing."""
    ctx = ctx or DistContext(device=select_device(config))
    tracker: Tracker | None = None
    recorder: EpisodeRecorder | None = None
    use = FolderUse()
    with contextlib.ExitStack() as stack:
        refusal: ConfigError | None = None
        if ctx.is_main:  # rank 0 alone writes: the run folder is its own, locked while it lives
            try:
                run_dir = stack.enter_context(
                    own_run_folder(config.run_dir, in_place=checkpoint is not None and in_place, use=use)
                )
                config = config.replace(run_dir=run_dir)
                # W&B first: a refusal (not logged in, no network) comes before any worker or env step
                tracker = start_tracking(config)
                if tracker is not None:
                    stack.callback(tracker.close)  # a no-op once the run has finished it
                if config.capture_video:  # an env that cannot render is refused before the run's envs start
                    recorder = stack.enter_context(contextlib.closing(EpisodeRecorder.checked(config, ctx.device)))
            except ConfigError as exc:
                refusal = exc
        share_refusal(refusal, ctx)  # under torchrun every rank stops with rank 0, before its envs start
        return _run(config, checkpoint, notes, signals or StopSignals(), ctx, callbacks, tracker, recorder, best_model,
                    use)  # fmt: skip


def _updates_ahead(config: RunConfig, checkpoint: dict[str, Any] | None, batch: int) -> str:
    """The updates a run will train, as ``Checkpointer.restore`` counts a resumed run's: the whole
    updates of ``batch`` steps that fit in what is left of the budget (said where some is left over)."""
    done, steps = (
        (0, 0) if checkpoint is None else (checkpoint["counters"]["update"], checkpoint["counters"]["env_steps"])
    )
    updates = (config.num_env_steps - steps) // batch
    text = f"{updates} update{'s' if updates != 1 else ''} of {batch} steps"
    if done and updates:
        text += f" (update {done + 1})" if updates == 1 else f" (updates {done + 1} to {done + updates})"
    if steps + updates * batch != config.num_env_steps:
        text += f", {steps + updates * batch:,} env steps of --num-env-steps {config.num_env_steps:,}"
    return text


def launch(request: LaunchRequest, **options: Any) -> TrainResult:
    """``run`` what ``request`` says: its config, checkpoint, notes, folder and best model;
    ``options``: ``run``'s others (signals, callbacks, ctx)."""
    return run(request.config, checkpoint=request.checkpoint, notes=request.notes, best_model=request.best_model,
               in_place=request.in_place, **options)  # fmt: skip


def _run(
    config: RunConfig,
    checkpoint: dict[str, Any] | None,
    notes: Sequence[str],
    signals: StopSignals,
    ctx: DistContext,
    callbacks: Sequence[Callback],
    tracker: Tracker | None,
    recorder: EpisodeRecorder | None,
    best_model: bytes | None,
    use: FolderUse,
) -> TrainResult:
    if ctx.is_main:  # the first line comes before the envs are built: the user sees at once what runs
        batch = config.batch_size * ctx.world_size
        ranks = f" on {ctx.world_size} ranks" if ctx.world_size > 1 else ""
        env = config.env_name + (f" {config.env_kwargs}" if config.env_arguments else "")
        console.out.line(
            f"Training {config.algo} on {env}{ranks}: {_updates_ahead(config, checkpoint, batch)}, run folder "
            f"{config.run_dir}. " + " ".join(notes)
        )
    seed_everything(config.seed + ctx.rank)
    torch.set_num_threads(config.num_threads)
    trainer = Trainer(config, ctx)
    config = trainer.config
    path = run_checkpoint_path(config.run_dir)
    checkpointer = Checkpointer(path, is_main=ctx.is_main, data_parallel=ctx.world_size > 1, signals=signals)
    curve, logger, evaluator, trained = LearningCurve(), None, None, False
    best_path = best_checkpoint_path(config.run_dir)
    main_hooks: list[Callback] = []  # rank 0's: evaluation, best model, videos
    first_update: int | None = None  # the update the run starts from, once started
    late: int | None = None  # a signal held through the ending
    try:
        start_notes = start(trainer, checkpointer, checkpoint)
        first_update = trainer.update
        if ctx.is_main:  # ranks > 0 train in lock step and write nothing
            if best_model is not None and not os.path.exists(best_path):  # a resume into a new run folder
                write_atomically(best_path, lambda f: f.write(best_model))
            if tracker is not None:
                tracker.record_config(config)  # with the choices the Trainer made for "auto"
            logger = Logger(
                config.run_dir,
                config.to_dict(),
                total_steps=trainer.total_steps,
                start_step=trainer.env_steps,
                resume_update=trainer.update if checkpoint is not None else None,
                notes=[*notes, *start_notes],
                sinks=[tracker] if tracker is not None else [],
            )
            logger.open_tensorboard()
            logger.print(f"Vector env: {trainer.envs.envs.unwrapped!r}, overlap {config.overlap}.")
            if tracker is not None:
                logger.print(tracker.describe())
            for note in [*trainer.notes, *start_notes]:
                logger.print(note)

            def normalization() -> dict[str, Any] | None:
                return trainer.normalizer.state_dict() if trainer.normalizer is not None else None

            evaluator = EvalCallback(
                logger,
                lambda: build_envs(
                    config, min(config.num_processes, config.eval_episodes), ctx.device, vec_env=replay_vec_env(config)
                ),
                normalization,
                seed=config.seed + seeds.EVALUATION,
            )
            main_hooks.append(evaluator)
            if config.eval_interval:

                def save_best(mean_return: float) -> None:
                    checkpointer.save_copy(trainer, best_path, eval_mean_return=mean_return)

                main_hooks.append(BestModelCallback(logger, save_best, best_path, best_mean_return(best_path)))
            if recorder is not None:
                main_hooks.append(VideoCallback(logger, config, normalization, recorder))
        if ctx.is_main:  # first: no log row, checkpoint or video goes into a folder made again
            main_hooks.insert(0, FolderGuard(config.run_dir))
        synced = [trainer.gail.discriminator] if trainer.gail is not None else []
        log = LogCallback(logger, ctx, config.log_interval, synced)
        users = [own_draws(callbacks, checkpointer.rng)] if callbacks else []
        hooks: list[Callback] = [curve, log, *main_hooks, *users, RecordedValues(logger)]
        # The ending (the last update, or the one a callback stopped after, then the final save,
        # the copies to --save-dir and the last logs) runs in one block that ``loop`` opens: a
        # signal there is held and the run ends as a finished one; a second one stops at once,
        # except inside a save or the pair of copies, which are never cut in half.
        with contextlib.ExitStack() as ending:
            stopped = loop(trainer, checkpointer, hooks, signals, on_stop=log.on_stop, ending=ending)
            trained = True
            if logger is not None:
                if not os.path.isfile(path):  # a finished checkpoint resumed into a new folder: no update ran
                    checkpointer.save_copy(trainer, path)
                latest = latest_checkpoint_path(config.save_dir, config.algo, config.env_name)
                latest_best = copy_finished_run(path, best_path, latest, signals)
                best = f" Best model: {best_path} (copied to {latest_best})." if latest_best else ""
                how = f"Stopped by a callback at update {trainer.update}/{trainer.num_updates}" if stopped else "Done"
                whose = "rank 0's " if ctx.is_distributed else ""
                logger.print(
                    f"{how}: {trainer.env_steps} env steps, {summary(trainer.returns, whose)}. Checkpoint: {path} "
                    f"(copied to {latest}, the latest finished run's).{best}"
                )
                if tracker is not None:  # (its artifacts go to the W&B run, which the logger's close ends)
                    tracker.finish([path, best_path])
                logger.close()  # TensorBoard's last events: a failure to write them is this run's
            late = signals.take_pending()
        if late is not None and ctx.is_main:
            console.out.line(
                f"{Interrupted(late).key} came after training had ended; the run finished as above (its checkpoint "
                "and the copies to --save-dir are written)."
            )
    except BaseException as exc:
        if isinstance(exc, WriteFailedError) and ctx.is_main and not os.path.isdir(config.run_dir):
            raise RunFolderLostError(config.run_dir) from None  # what a write into it met: said as such
        # after a non-finite update the parameters are not those of the last boundary: nothing is saved
        keeps_boundary = not isinstance(exc, NonFiniteError) or isinstance(exc, NonFiniteRolloutError)
        keeps_boundary = keeps_boundary and not isinstance(exc, RunFolderLostError)  # nowhere to keep it
        # a checkpoint that could not be written is not tried again (it would fail the same way); a
        # log that could not be written (TensorBoard, progress.csv, a video) may leave room for it
        failed_write = exc.path if isinstance(exc, WriteFailedError) else None
        if keeps_boundary and failed_write != path:
            try:
                checkpointer.save(trainer)  # (written already where a periodic save came just before)
            except WriteFailedError:
                if failed_write is None:
                    raise
                raise exc from None  # the first failure names the cause; the checkpoint's is its echo
            if logger is not None and checkpointer.saved_update and os.path.isfile(path):
                logger.print(
                    f"Checkpoint of update {checkpointer.saved_update} saved to {path} "
                    + ("(training had finished)." if trained else f"(continue with: {resume_command(config, path)}).")
                )
        if isinstance(exc, WriteFailedError):  # for the message: what is on disk, how far it got
            exc.checkpoint, exc.training_finished = (path if os.path.isfile(path) else None), trained
        # said, and a new folder holding nothing else removed, by ``own_run_folder`` at the end
        use.trained_nothing = ctx.is_main and trainer.update == first_update and not trained
        use.trained_nothing = use.trained_nothing and not isinstance(exc, RunFolderLostError)
        raise
    finally:
        trainer.close()
        if evaluator is not None:
            evaluator.close()
        if logger is not None:
            with contextlib.suppress(WriteFailedError):  # closed above unless another error is on its way
                logger.close()
    return TrainResult(path, trainer.env_steps, curve.points, stopped, None if late is None else Interrupted(late).key)


def start(trainer: Trainer, checkpointer: Checkpointer, checkpoint: dict[str, Any] | None) -> list[str]:
    """Reset the envs, or restore everything from ``checkpoint``; notes for the console."""
    ctx = trainer.ctx
    trainer.reset_envs()
    notes = [] if checkpoint is None else checkpointer.restore(trainer, checkpoint, ctx.rank)
    if checkpoint is not None and ctx.rank > 0:  # the checkpoint holds rank 0's RNG: others draw their own
        seed_everything(trainer.config.seed + ctx.rank + ctx.world_size * trainer.update)
    broadcast_module(trainer.policy, ctx)  # every rank starts from rank 0's parameters
    if trainer.gail is not None:  # and its discriminator, which each rank built under its own seed
        broadcast_module(trainer.gail.discriminator, ctx)
    if checkpoint is None:
        checkpointer.mark_saved(0)  # nothing to save until an update has finished
        checkpointer.capture(trainer)
    elif trainer.update >= trainer.num_updates:
        notes.append(
            f"Nothing to train: the checkpoint has trained the {trainer.num_updates} updates of --num-env-steps "
            f"{trainer.config.num_env_steps:,}; give a larger --num-env-steps (num_env_steps= in Python), the whole "
            "run's budget, to go on."
        )
    return notes


#: Seconds a signal under torchrun waits for the rollout in progress to end (``loop``).
STOP_WAIT_S = 10.0


def loop(
    trainer: Trainer,
    checkpointer: Checkpointer,
    callbacks: Sequence[Callback],
    signals: StopSignals,
    on_stop: Callback | None = None,
    ending: contextlib.ExitStack | None = None,
) -> bool:
    """The updates from the current one to the last (or until a callback stops the run), each
    followed by its callbacks, and the checkpoints; whether a callback stopped it. ``on_stop``
    gets the update a callback stopped after (the log writes its row). ``ending``: where the
    block that holds signals during the run's ending goes, from the last update on (or the
    final save after a callback's stop) until the caller has finished the run and closes it
    (taking the signal held, if any: training has ended); without one, until this returns."""
    with contextlib.ExitStack() as own:
        return _loop(trainer, checkpointer, callbacks, signals, on_stop, own if ending is None else ending)


def _loop(
    trainer: Trainer,
    checkpointer: Checkpointer,
    callbacks: Sequence[Callback],
    signals: StopSignals,
    on_stop: Callback | None,
    ending: contextlib.ExitStack,
) -> bool:
    config, stopwatch = trainer.config, Stopwatch(trainer.env_steps)
    distributed = trainer.ctx.is_distributed
    # Under torchrun a Ctrl-C or SIGTERM waits for the update's end, where every rank learns of
    # it, so that all stop at one update, which rank 0 saves. A second signal, or a rollout that
    # goes on for STOP_WAIT_S more, stops this rank at once: torchrun kills its ranks
    # --shutdown-timeout (30 s) after passing them a signal, and the last update must be saved.
    # The block lasts through the ending (one that comes after the last update's is held).
    if distributed:
        ending.enter_context(signals.deferred(escalate=True, escalate_after=STOP_WAIT_S))
    elif trainer.update >= trainer.num_updates:  # a finished run resumed: its ending alone
        ending.enter_context(signals.deferred(escalate=True))
    while trainer.update < trainer.num_updates:
        rollout_sps = trainer.collect()
        if not distributed and trainer.update + 1 == trainer.num_updates:
            # the last update: once it has finished, the budget is trained, and a signal that
            # came since waits for the final save and the copies (a second stops at once)
            ending.enter_context(signals.deferred(escalate=True))
        # A first signal lets the update and its callbacks finish (a second stops at once: an
        # evaluation can run long); the boundary a save uses moves with the parameters and the
        # update's log row, so that a resumed run neither repeats nor misses a row.
        with signals.deferred(escalate=True):
            with checkpointer.updating():
                metrics = trainer.train_policy()
            checkpointer.capture(trainer)
            metrics.update(rollout_SPS=rollout_sps, SPS=stopwatch.sps(trainer.env_steps))
            info = UpdateInfo(
                update=trainer.update,
                num_updates=trainer.num_updates,
                env_steps=trainer.env_steps,
                total_env_steps=trainer.total_steps,
                metrics=metrics,
                returns=list(trainer.returns),
                lengths=list(trainer.lengths),
                config=config,
                policy=trainer.policy,
                saver=functools.partial(checkpointer.save_copy, trainer),
            )
            asked = run_callbacks(callbacks, info)
            stop, signum = stop_requests(asked, signals.take_pending() if distributed else None,
                                         trainer.ctx.reducer())  # fmt: skip
            if signum is not None and trainer.update < trainer.num_updates:
                signals.stop(signum)  # every rank; the caller saves this update
            if signum is not None:  # the last update: the run finishes, the signal held (above)
                signals.hold(signum)
            if stop and on_stop is not None:
                on_stop(info)
        if stop and not distributed and trainer.update < trainer.num_updates:
            ending.enter_context(signals.deferred(escalate=True))  # its ending, as the last update's
        if stop or trainer.update % config.save_interval == 0 or trainer.update == trainer.num_updates:
            checkpointer.save(trainer)
        if stop:
            return trainer.update < trainer.num_updates
    checkpointer.save(trainer)  # a resumed run that was already finished
    return False
