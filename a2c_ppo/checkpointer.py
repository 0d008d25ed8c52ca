"""A run's checkpoints: capture the state at the end of each finished update, restore a run
from a checkpoint, write the checkpoint of the last finished update.

At the end of every update the trainer calls ``capture`` (env states, normalisation
statistics, RNG, episode windows), so that whatever stops the run later (Ctrl-C, SIGTERM, an
env that fails), ``save`` writes the state of the last finished update, and ``--resume``
continues from it exactly where the env states could be captured. ``save_copy`` writes the
same checkpoint elsewhere: the best model, ``RUN_DIR/best.pt``. The file format is
``checkpoint.py``'s.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from a2c_ppo.algo.common import Optimizer
from a2c_ppo.checkpoint import load_checkpoint, raw_rng_state, rng_payload, save_checkpoint, set_rng_state
from a2c_ppo.config import RunConfig
from a2c_ppo.envs.normalize import VecNormalize
from a2c_ppo.envs.snapshot import UnsupportedEnvState, UntrustedEnvState, get_snapshots, set_snapshots
from a2c_ppo.envs.subproc import EnvWorkerError
from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.errors import ConfigError
from a2c_ppo.files import FileLock, copy_atomically, write_failed
from a2c_ppo.model import Policy
from a2c_ppo.observations import TensorDict, copy_obs
from a2c_ppo.paths import RUN_CHECKPOINT
from a2c_ppo.signals import StopSignals
from a2c_ppo.storage import RolloutStorage

#: The best model of a run (``--eval-interval``), inside its run folder.
BEST_CHECKPOINT = "best.pt"


def best_checkpoint_path(run_dir: str) -> str:
    """``RUN_DIR/best.pt``: the checkpoint of the run's best evaluation."""
    return os.path.join(run_dir, BEST_CHECKPOINT)


def best_copy_path(latest: str) -> str:
    """``SAVE_DIR/ALGO/ENV.best.pt`` for ``SAVE_DIR/ALGO/ENV.pt``: the latest finished run's best model."""
    return os.path.splitext(latest)[0] + ".best.pt"


def copy_finished_run(checkpoint: str, best: str, latest: str, signals: StopSignals) -> str | None:
    """Copy a finished run's checkpoint to ``latest`` (``SAVE_DIR/ALGO/ENV.pt``) and its best
    model ``best``, where it has one, to ``best_copy_path(latest)`` (else an older run's there is
    removed), as one step: under a lock on the pair (``.ENV.pt.lock`` beside it, removed again),
    so that two runs of one env and algorithm finishing at once leave one run's pair, never one
    run's checkpoint beside the other's best model; and never cut by a signal, which is held
    until both are written (one that comes while another run holds the lock is held too; a
    second one there raises, where the caller's block escalates). The best model's copy, or None."""
    lock = FileLock(os.path.join(os.path.dirname(latest), f".{os.path.basename(latest)}.lock"))
    try:
        lock.acquire(wait=True)
    except OSError as exc:  # --save-dir cannot hold the lock (not a folder, read-only): nor the copies
        raise write_failed(latest, exc) from None
    try:
        with signals.deferred():
            copy_atomically(checkpoint, latest)
            latest_best = best_copy_path(latest)
            # an older run's best model is not this run's: removed first, so that a failed copy
            # below (disk full) leaves this run's checkpoint alone, not beside another run's
            with contextlib.suppress(FileNotFoundError):
                os.remove(latest_best)
            if os.path.isfile(best):
                copy_atomically(best, latest_best)
                return latest_best
            return None
    finally:
        lock.release()


def best_mean_return(path: str) -> float:
    """The evaluation mean return a best model at ``path`` holds (-inf where there is none yet);
    ConfigError for a damaged one (run before anything starts: ``resolve`` checks a resumed run's)."""
    if not os.path.isfile(path):
        return -math.inf
    remedy = "move it away to resume without it."
    value = load_checkpoint(path, what="the best model", remedy=remedy)["counters"].get("eval_mean_return", -math.inf)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"the best model {path!r} is damaged: its evaluation mean return is {value!r}; {remedy}")
    return float(value)


def resumed_best_model(resume: str, checkpoint: dict[str, Any]) -> bytes | None:
    """The bytes of the best model that goes with checkpoint ``resume`` (``RUN_DIR/best.pt``
    beside a run's checkpoint, ``SAVE_DIR/ALGO/ENV.best.pt`` beside its copy, or ``resume``
    itself when it is a best model), where there is one: a resume into a new run folder starts
    from it, not from the first evaluation after the resume. Read now, once: a run of the same
    env finishing meanwhile rewrites the copies. A best model of another run (another seed, env
    or algorithm, or from after the checkpoint) is left behind; a damaged one is refused."""
    if "eval_mean_return" in checkpoint["counters"]:
        path = resume
    elif os.path.basename(resume) == RUN_CHECKPOINT:
        path = best_checkpoint_path(os.path.dirname(resume))
    else:
        path = best_copy_path(resume)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        data = f.read()
    with tempfile.TemporaryDirectory() as folder:  # the loader reads files: these bytes, checked
        copy = os.path.join(folder, "best.pt")
        with open(copy, "wb") as f:
            f.write(data)
        try:
            best = load_checkpoint(copy, remedy="move it away to resume without it.")
            best_mean_return(copy)  # its evaluation's return is a number
        except ConfigError as exc:  # its words, naming the file the user has
            named = f"the best model {path!r} of --resume"
            message = str(exc).replace(f"checkpoint {copy!r}", named).replace(f"the best model {copy!r}", named)
            raise ConfigError(message) from None
    same_run = all(best["config"].get(key) == checkpoint["config"][key] for key in ("env_name", "algo", "seed"))
    before = best["counters"]["update"] <= checkpoint["counters"]["update"]
    return data if same_run and before and "eval_mean_return" in best["counters"] else None


class Run(Protocol):
    """What a checkpoint holds of a training run (``trainer.Trainer`` is one)."""

    update: int
    env_steps: int
    num_updates: int  # the update the run ends after
    total_steps: int  # the env steps it ends at
    batch: int  # env steps of all ranks per update

    @property
    def config(self) -> RunConfig: ...

    @property
    def policy(self) -> Policy: ...

    @property
    def optimizer(self) -> Optimizer: ...

    @property
    def envs(self) -> TorchVecEnv: ...

    @property
    def rollouts(self) -> RolloutStorage: ...

    @property
    def returns(self) -> deque: ...

    @property
    def lengths(self) -> deque: ...

    @property
    def normalizer(self) -> VecNormalize | None: ...

    def algorithm_state(self) -> dict[str, Any]: ...

    def load_algorithm_state(self, state: dict[str, Any]) -> None: ...

    def reset_envs(self) -> None: ...


@dataclass
class Boundary:
    """The state of a run at the end of its last finished update: what a checkpoint saves."""

    update: int
    env_steps: int
    rng: tuple[Any, ...]  # raw_rng_state(): converted when a checkpoint is written
    normalization: dict[str, Any] | None
    env_states: Any  # the envs' snapshots, or None where they cannot be captured
    returns: list[float]
    lengths: list[int]
    algorithm: dict[str, Any]  # the algorithm's own state (copied: the run goes on)


class Checkpointer:
    """Checkpoints of one run at ``path``; only the main process (rank 0) writes."""

    def __init__(self, path: str, *, is_main: bool, data_parallel: bool, signals: StopSignals) -> None:
        self.path = path
        self.is_main = is_main
        self.signals = signals
        self.boundary: Boundary | None = None
        self.saved_update = -1
        # An update that ended in an error left the parameters and the optimizer somewhere
        # between two boundaries: no checkpoint may hold them (see ``updating``).
        self.cut_update = False
        # Why the envs' states are not captured (a resume under torchrun starts new episodes).
        self.env_state_error: str | None = "a data-parallel run" if data_parallel else None

    def capture(self, run: Run) -> None:
        """Record the state at the end of the current update. An env worker that died meanwhile
        still leaves the update recorded (without env states), then raises."""
        try:
            env_states = self._env_states(run)
        except EnvWorkerError:
            self.boundary = self._boundary(run, None)
            raise
        self.boundary = self._boundary(run, env_states)

    def rng(self) -> tuple[Any, ...]:
        """The generators' states (``raw_rng_state``) the last finished update ended with."""
        assert self.boundary is not None  # captured after every update, before its callbacks
        return self.boundary.rng

    def _boundary(self, run: Run, env_states: list[Any] | None) -> Boundary:
        return Boundary(
            update=run.update,
            env_steps=run.env_steps,
            rng=raw_rng_state(),
            normalization=run.normalizer.state_dict() if run.normalizer is not None else None,
            env_states=env_states,
            returns=list(run.returns),
            lengths=list(run.lengths),
            algorithm=copy.deepcopy(run.algorithm_state()),
        )

    def _env_states(self, run: Run) -> list[Any] | None:
        """Every env's snapshot, or None (for good, after the first failure) where unsupported."""
        if self.env_state_error is not None:
            return None
        try:
            return get_snapshots(run.envs.envs)
        except UnsupportedEnvState as exc:
            self.env_state_error = str(exc)
            return None

    def restore(self, run: Run, checkpoint: dict[str, Any], rank: int) -> list[str]:
        """Put ``checkpoint`` into ``run`` (``rank`` > 0 keeps its own RNG); notes for the console."""
        notes = []
        saved_threads = checkpoint["config"].get("num_threads")
        if saved_threads not in (None, run.config.num_threads):  # torch splits CPU sums by thread count
            notes.append(
                f"Resume is not exact: the run trained with --num-threads {saved_threads} and this one has "
                f"{run.config.num_threads}; torch's CPU sums then round apart in the last bits."
            )
        run.policy.load_state_dict(checkpoint["model"])
        run.optimizer.load_state_dict(checkpoint["optimizer"])
        run.load_algorithm_state(checkpoint.get("algorithm") or {})
        counters = checkpoint["counters"]
        run.update, run.env_steps = counters["update"], counters["env_steps"]
        # the updates left are counted in this run's batch, which a resume may have changed
        updates_left = (run.config.num_env_steps - run.env_steps) // run.batch
        run.num_updates, run.total_steps = run.update + updates_left, run.env_steps + updates_left * run.batch
        state = checkpoint["resume_state"]
        if run.normalizer is not None and checkpoint["normalization"]:
            run.normalizer.load_state_dict(checkpoint["normalization"])
        # The checkpoint holds rank 0's env states only: under torchrun every rank starts anew.
        saved_obs = TensorDict(state["obs"]) if isinstance(state["obs"], dict) else state["obs"]
        saved_envs = len(next(iter(saved_obs.values())) if isinstance(saved_obs, dict) else saved_obs)
        exact = (
            self.env_state_error is None and state["env_states"] is not None and saved_envs == run.config.num_processes
        )
        why = self.env_state_error or state["why_not_exact"]
        if exact:
            try:
                set_snapshots(run.envs.envs, state["env_states"])
            except (EnvWorkerError, ValueError, TypeError, KeyError) as exc:  # the first line: no worker traceback
                if getattr(exc, "error_type", type(exc).__name__) != UntrustedEnvState.__name__:
                    raise ConfigError(
                        f"the checkpoint's env states do not fit these envs ({str(exc).splitlines()[0]}); it is "
                        "damaged or was not written by this a2c_ppo for this env. Use another checkpoint, or start a "
                        "new run without it."
                    ) from None
                exact, why = False, str(exc).splitlines()[0]  # its text is not put into the envs
        if exact:
            r = run.rollouts
            copy_obs(r.obs[0], saved_obs)
            r.recurrent_hidden_states[0].copy_(state["recurrent_hidden_states"])
            r.masks[0].copy_(state["masks"])
        else:
            run.reset_envs()
            if why:
                notes.append(f"Resume is not exact: the envs' states were not restored ({why}); they start new "
                             "episodes.")  # fmt: skip
            else:
                notes.append(
                    f"Resume is not exact: the checkpoint holds the states of {saved_envs} envs and this run has "
                    f"{run.config.num_processes}; they start new episodes."
                )
        run.returns.extend(state["returns"])
        run.lengths.extend(state["lengths"])
        if rank == 0:  # the checkpoint holds rank 0's RNG: other ranks draw their own
            set_rng_state(checkpoint["rng"])
        self.saved_update = run.update
        self.capture(run)
        return notes

    @contextlib.contextmanager
    def updating(self) -> Iterator[None]:
        """The block moves the parameters past the boundary (an update). An error inside it (a
        second Ctrl-C, a network of one's own that raises) leaves them partly updated, under the
        boundary's counters: ``save`` then writes nothing, and the last checkpoint written stays."""
        self.cut_update = True
        yield
        self.cut_update = False  # not on an error: the parameters stay between two boundaries

    def mark_saved(self, update: int) -> None:
        """Nothing to save until an update after ``update`` has finished (a fresh start)."""
        self.saved_update = update

    def save(self, run: Run) -> bool:
        """Write the checkpoint of the last finished update, if not saved yet and no update was
        cut (``updating``); whether it wrote."""
        boundary = self.boundary
        if not self.is_main or boundary is None or boundary.update == self.saved_update or self.cut_update:
            return False
        self._write(run, boundary, self.path)
        self.saved_update = boundary.update
        return True

    def save_copy(self, run: Run, path: str, **counters: float) -> None:
        """Write the checkpoint of the last finished update to ``path`` too (e.g. the best
        model), with ``counters`` added to its counters; the main process alone writes."""
        if self.is_main and self.boundary is not None:
            self._write(run, self.boundary, path, counters)

    def _write(self, run: Run, boundary: Boundary, path: str, counters: dict[str, float] | None = None) -> None:
        r = run.rollouts
        obs = r.obs[0].cpu()
        resume_state = {
            "obs": dict(obs) if isinstance(obs, TensorDict) else obs,  # plain data: weights_only loads it
            "recurrent_hidden_states": r.recurrent_hidden_states[0].cpu(),
            "masks": r.masks[0].cpu(),
            "env_states": boundary.env_states,
            "why_not_exact": self.env_state_error,
            "returns": boundary.returns,
            "lengths": boundary.lengths,
        }
        # Plain numbers: the best model's counters add its evaluation's mean return (a float).
        all_counters: dict[str, Any] = {"update": boundary.update, "env_steps": boundary.env_steps, **(counters or {})}
        with self.signals.deferred():  # a save is never cut in half, whatever arrives
            save_checkpoint(
                path,
                model=run.policy,
                optimizer=run.optimizer,
                config=run.config.to_dict(),
                normalization=boundary.normalization,
                counters=all_counters,
                observation_space=run.envs.observation_space,
                action_space=run.envs.action_space,
                resume_state=resume_state,
                rng=rng_payload(boundary.rng),
                algorithm=boundary.algorithm,
                make_folder=False,  # the run's folder, or one info.save made: gone only if removed
            )
