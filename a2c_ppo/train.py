"""The training loop: envs -> storage -> algorithm -> model, plus logging and checkpoints.

``run`` is a sequence of small steps: build the pieces, restore them from a checkpoint, then
per update collect a rollout, compute returns, update, check that everything is finite, log,
evaluate and save. At the end of every update the loop records a ``Boundary`` (env states,
normalisation statistics, RNG, episode windows): whatever stops the run later (Ctrl-C,
SIGTERM, an env that fails), the checkpoint written is that of the last finished update, and
``--resume`` continues from it exactly where the env states could be captured.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from a2c_ppo.algo.common import set_learning_rate
from a2c_ppo.builders import build_envs, make_agent, policy_for, seed_everything, select_device
from a2c_ppo.checkpoint import first_non_finite, rng_state, save_checkpoint, set_rng_state
from a2c_ppo.config import RunConfig
from a2c_ppo.distributed import DistContext, broadcast_module, check_in_sync, pooled_means, sync_running_stats
from a2c_ppo.distributions import action_shape
from a2c_ppo.envs import VecNormalize, check_env_id
from a2c_ppo.envs.snapshot import UnsupportedEnvState, get_snapshots, set_snapshots
from a2c_ppo.envs.subproc import EnvWorkerError
from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.errors import NonFiniteError
from a2c_ppo.evaluation import evaluate
from a2c_ppo.logger import Logger, format_duration, summary
from a2c_ppo.paths import checkpoint_path
from a2c_ppo.rollout import collect_rollout, policy_step_timer
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


@dataclass
class Boundary:
    """The state of a run at the end of its last finished update: what a checkpoint saves."""

    update: int
    env_steps: int
    rng: dict[str, Any]
    normalization: dict[str, Any] | None
    env_states: Any  # the envs' snapshots, or None where they cannot be captured
    returns: list[float]
    lengths: list[int]


class Trainer:
    """One run's pieces and the steps of its loop (see the module docstring)."""

    def __init__(self, config: RunConfig, signals: StopSignals, ctx: DistContext) -> None:
        self.config = config
        self.signals = signals
        self.ctx = ctx
        self.reducer = ctx.reducer()
        self.device = ctx.device
        self.save_path = checkpoint_path(config.save_dir, config.algo, config.env_name)
        self.batch = config.batch_size * ctx.world_size  # env steps of all ranks per update
        self.num_updates = config.num_env_steps // self.batch
        # The policy exists before the envs: the overlap choice times one of its steps.
        observation_space, action_space = check_env_id(config.env_name)
        self.policy = policy_for(config, observation_space, action_space).to(self.device)
        self.agent = make_agent(config, self.policy, self.reducer)
        overlap_kwargs: dict[str, Any] = {"overlap": config.overlap}
        if config.overlap == "auto":
            overlap_kwargs["policy_step_s"] = policy_step_timer(self.policy, observation_space, self.device)
        self.envs = build_envs(config, config.num_processes, self.device, **overlap_kwargs)
        # Record the choices auto made, so that a resumed run makes the same ones.
        workers = getattr(self.envs.envs.unwrapped, "num_workers", 0)
        self.config = config = config.replace(overlap="on" if self.envs.overlap else "off",
                                              vec_env="subproc" if workers else "sync")  # fmt: skip
        self.eval_envs: TorchVecEnv | None = None
        self.logger: Logger | None = None
        action_dim, action_dtype = action_shape(self.envs.action_space)
        obs_space = self.envs.observation_space
        self.rollouts = RolloutStorage(
            config.num_steps,
            config.num_processes,
            tuple(obs_space.shape or ()),
            action_dim,
            action_dtype,
            self.policy.recurrent_hidden_state_size,
            obs_dtype=torch.uint8 if obs_space.dtype == np.uint8 else torch.float32,
            recurrent_chunk_length=config.recurrent_chunk_length,
        ).to(self.device)
        self.returns: deque = deque(maxlen=EPISODE_WINDOW)
        self.lengths: deque = deque(maxlen=EPISODE_WINDOW)
        self.update, self.env_steps = 0, 0
        self.boundary: Boundary | None = None
        self.saved_update = -1
        # Why the envs' states are not captured (a resume under torchrun starts new episodes).
        self.env_state_error: str | None = "a data-parallel run" if ctx.world_size > 1 else None
        self.history: list[tuple[int, float]] = []
        self.start_time, self.start_steps = time.monotonic(), 0  # for SPS: reset when the loop starts

    # ----------------------------------------------------------------- start

    @property
    def normalizer(self) -> VecNormalize | None:
        return self.envs.envs if isinstance(self.envs.envs, VecNormalize) else None

    def start(self, checkpoint: dict[str, Any] | None) -> list[str]:
        """Reset the envs, or restore everything from ``checkpoint``; notes for the console."""
        self.rollouts.obs[0].copy_(self.envs.reset(seed=self.env_seed(0)))
        notes = [] if checkpoint is None else self.restore(checkpoint)
        broadcast_module(self.policy, self.ctx)  # every rank starts from rank 0's parameters
        if checkpoint is None:
            self.saved_update = 0  # nothing to save until an update has finished
            self.record_boundary()
        return notes

    def env_seed(self, env_steps: int) -> int:
        """The seed of this rank's env 0: env ``i`` of rank ``r`` gets ``seed + r * num_processes + i``."""
        return self.config.seed + env_steps + self.ctx.rank * self.config.num_processes

    def restore(self, checkpoint: dict[str, Any]) -> list[str]:
        notes = []
        self.policy.load_state_dict(checkpoint["model"])
        self.agent.optimizer.load_state_dict(checkpoint["optimizer"])
        counters = checkpoint["counters"]
        self.update, self.env_steps = counters["update"], counters["env_steps"]
        state = checkpoint["resume_state"]
        if self.normalizer is not None and checkpoint["normalization"]:
            self.normalizer.load_state_dict(checkpoint["normalization"])
        # The checkpoint holds rank 0's env states only: under torchrun every rank starts anew.
        exact = (
            self.ctx.world_size == 1
            and state["env_states"] is not None
            and state["obs"].shape[0] == self.config.num_processes
        )
        if exact:
            set_snapshots(self.envs.envs, state["env_states"])
            self.rollouts.obs[0].copy_(state["obs"])
            self.rollouts.recurrent_hidden_states[0].copy_(state["recurrent_hidden_states"])
            self.rollouts.masks[0].copy_(state["masks"])
        else:
            self.rollouts.obs[0].copy_(self.envs.reset(seed=self.env_seed(self.env_steps)))
            why = self.env_state_error or state["why_not_exact"] or ""
            notes.append(f"Resume is not exact: the envs' states were not saved ({why}); they start new episodes.")
        self.returns.extend(state["returns"])
        self.lengths.extend(state["lengths"])
        set_rng_state(checkpoint["rng"])
        if self.ctx.rank > 0:  # the checkpoint holds rank 0's RNG: other ranks draw their own
            seed_everything(self.config.seed + self.ctx.rank + self.ctx.world_size * self.update)
        self.saved_update = self.update
        self.record_boundary()
        return notes

    def record_boundary(self) -> None:
        """Record the state at the end of the current update (see ``Boundary``). An env worker
        that died meanwhile still leaves the update recorded (without env states), then raises."""
        try:
            env_states = self.capture_env_states()
        except EnvWorkerError:
            self.boundary = self.boundary_with(None)
            raise
        self.boundary = self.boundary_with(env_states)

    def boundary_with(self, env_states: list[Any] | None) -> Boundary:
        return Boundary(
            update=self.update,
            env_steps=self.env_steps,
            rng=rng_state(),
            normalization=self.normalizer.state_dict() if self.normalizer is not None else None,
            env_states=env_states,
            returns=list(self.returns),
            lengths=list(self.lengths),
        )

    def capture_env_states(self) -> list[Any] | None:
        """Every env's snapshot, or None (for good, after the first failure) where unsupported."""
        if self.env_state_error is not None:
            return None
        try:
            return get_snapshots(self.envs.envs)
        except UnsupportedEnvState as exc:
            self.env_state_error = str(exc)
            return None

    # ----------------------------------------------------------------- one update

    def learning_rate(self) -> float:
        """Linear decay over the run's final budget (``--num-env-steps`` of this invocation)."""
        if not self.config.use_linear_lr_decay:
            return self.config.lr
        return self.config.lr * (1.0 - self.update / self.num_updates)

    def train_one_update(self) -> dict[str, float]:
        """Collect a rollout, compute returns, update the policy and log it; the update's metrics."""
        config = self.config
        lr = self.learning_rate()
        set_learning_rate(self.agent.optimizer, lr)
        start = time.perf_counter()
        try:
            episodes = collect_rollout(self.policy, self.envs, self.rollouts, config.use_proper_time_limits)
        except NonFiniteError as exc:  # raised by the env adapter, which knows no update
            raise NonFiniteError(f"{exc} (in the rollout of update {self.update + 1})") from None
        rollout_sps = self.config.batch_size / max(time.perf_counter() - start, 1e-9)  # this rank's
        if self.normalizer is not None:  # every rank normalises with the statistics of all ranks' data
            sync_running_stats([self.normalizer.obs_rms, self.normalizer.ret_rms], self.reducer)
        for ret, length in episodes:
            self.returns.append(ret)
            self.lengths.append(length)
        with torch.no_grad():
            r = self.rollouts
            next_value = self.policy.get_value(r.obs[-1], r.recurrent_hidden_states[-1], r.masks[-1])
        self.rollouts.compute_returns(next_value, config.use_gae, config.gamma, config.gae_lambda)
        # An update is never cut in half, and the boundary a save uses moves with the parameters
        # and the update's log row, so that a resumed run neither repeats nor misses a row.
        with self.signals.deferred():
            metrics = self.agent.update(self.rollouts)
            self.rollouts.after_update()
            self.update += 1
            self.env_steps += self.batch
            self.check_update_finite(metrics)
            self.record_boundary()
            self.after_update({**metrics, "learning_rate": lr, "rollout_SPS": rollout_sps})
        return metrics

    def after_update(self, metrics: dict[str, float]) -> None:
        """The learning curve, the progress bar and, when due, the log line of the update just done."""
        if self.returns:
            self.history.append((self.env_steps, float(np.mean(self.returns))))
        sps = (self.env_steps - self.start_steps) / max(time.monotonic() - self.start_time, 1e-9)
        if self.logger is not None:
            self.logger.progress(self.env_steps)
        if self.update % self.config.log_interval == 0 or self.update == self.num_updates:
            self.log(metrics, sps)

    def check_update_finite(self, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            if not np.isfinite(value) and name != "explained_variance":
                raise NonFiniteError(f"the {name.replace('_', ' ')} is not finite at update {self.update}")
        bad = first_non_finite(self.policy.state_dict())
        if bad is not None:
            raise NonFiniteError(f"model parameter {bad!r} is not finite after update {self.update}")

    # ----------------------------------------------------------------- log, evaluate, save

    def log(self, metrics: dict[str, float], sps: float) -> None:
        """On every rank (it all-reduces the episode statistics); rank 0 alone writes."""
        episodes = pooled_means([self.returns, self.lengths], self.reducer)
        check_in_sync(self.policy, self.ctx, f"after update {self.update}")
        if self.logger is None:
            return
        scalars = {
            "charts/SPS": sps,
            "charts/rollout_SPS": metrics.pop("rollout_SPS"),  # env stepping + acting only, this update
            "charts/learning_rate": metrics.pop("learning_rate"),
        }
        scalars.update({f"losses/{name}": value for name, value in metrics.items()})
        if episodes is not None:
            scalars["charts/episodic_return"], scalars["charts/episodic_length"] = episodes
        self.logger.scalars(self.env_steps, scalars, update=self.update)
        eta = (self.num_updates * self.batch - self.env_steps) / max(sps, 1e-9)
        self.logger.print(
            f"Updates {self.update}/{self.num_updates}, timesteps {self.env_steps}, SPS {sps:.0f}, "
            f"ETA {format_duration(eta)} | {summary(self.returns)}"
        )

    def evaluate(self) -> None:
        assert self.logger is not None
        config = self.config
        if self.eval_envs is None:
            self.eval_envs = build_envs(config, min(config.num_processes, config.eval_episodes), self.device,
                                        vec_env="sync")  # fmt: skip
        normalization = self.normalizer.state_dict() if self.normalizer is not None else None
        seed = config.seed + EVAL_SEED_OFFSET
        mean_return = evaluate(self.policy, self.eval_envs, config.eval_episodes, seed, normalization)
        self.logger.scalars(self.env_steps, {"eval/mean_return": mean_return}, update=self.update)
        self.logger.print(f"Evaluation over {config.eval_episodes} episodes: mean return {mean_return:.1f}")

    def save(self) -> bool:
        """Write the checkpoint of the last finished update, if not saved yet; whether it wrote."""
        boundary = self.boundary
        if not self.ctx.is_main or boundary is None or boundary.update == self.saved_update:
            return False
        r = self.rollouts
        resume_state = {
            "obs": r.obs[0].cpu(),
            "recurrent_hidden_states": r.recurrent_hidden_states[0].cpu(),
            "masks": r.masks[0].cpu(),
            "env_states": boundary.env_states,
            "why_not_exact": self.env_state_error,
            "returns": boundary.returns,
            "lengths": boundary.lengths,
        }
        with self.signals.deferred():  # a save is never cut in half, whatever arrives
            save_checkpoint(
                self.save_path,
                model=self.policy,
                optimizer=self.agent.optimizer,
                config=self.config.to_dict(),
                normalization=boundary.normalization,
                counters={"update": boundary.update, "env_steps": boundary.env_steps},
                observation_space=self.envs.observation_space,
                action_space=self.envs.action_space,
                resume_state=resume_state,
                rng=boundary.rng,
            )
        self.saved_update = boundary.update
        return True

    def close(self) -> None:
        self.envs.close()
        if self.eval_envs is not None:
            self.eval_envs.close()
        if self.logger is not None:
            self.logger.close()


def run(
    config: RunConfig,
    *,
    checkpoint: dict[str, Any] | None = None,
    notes: list[str] | tuple[str, ...] = (),
    signals: StopSignals | None = None,
    ctx: DistContext | None = None,
) -> TrainResult:
    """Train as ``config`` says (continuing ``checkpoint`` if given); where the checkpoint is
    and the learning curve. Interrupted, EnvWorkerError and other failures while training are
    re-raised after the last finished update is saved; NonFiniteError saves nothing."""
    ctx = ctx or DistContext(device=select_device(config))
    if ctx.is_main:  # the first line comes before the envs are built: the user sees at once what runs
        batch = config.batch_size * ctx.world_size
        ranks = f" on {ctx.world_size} ranks" if ctx.world_size > 1 else ""
        print(
            f"Training {config.algo} on {config.env_name}{ranks}: {config.num_env_steps // batch} updates of "
            f"{batch} steps, run folder {config.run_dir}. " + " ".join(notes),
            flush=True,
        )
    seed_everything(config.seed + ctx.rank)
    torch.set_num_threads(config.num_threads)
    signals = signals or StopSignals()
    trainer = Trainer(config, signals, ctx)
    config = trainer.config
    try:
        start_notes = trainer.start(checkpoint)
        if not ctx.is_main:  # ranks > 0 train in lock step and write nothing
            loop(trainer)
            return TrainResult(trainer.save_path, trainer.env_steps, trainer.history)
        trainer.logger = Logger(
            config.run_dir,
            config.to_dict(),
            total_steps=trainer.num_updates * trainer.batch,
            start_step=trainer.env_steps,
            resume_update=trainer.update if checkpoint is not None else None,
            notes=[*notes, *start_notes],
        )
        trainer.logger.print(f"Vector env: {trainer.envs.envs.unwrapped!r}, overlap {config.overlap}.")
        for note in start_notes:
            trainer.logger.print(note)
        loop(trainer)
    except NonFiniteError:
        raise  # the last good checkpoint stays as it is
    except BaseException:
        if trainer.save() and trainer.logger is not None:
            trainer.logger.print(
                f"Checkpoint of update {trainer.saved_update} saved to {trainer.save_path} "
                f"(continue with: python main.py --resume {trainer.save_path})."
            )
        raise
    finally:
        trainer.close()
    return TrainResult(trainer.save_path, trainer.env_steps, trainer.history)


def loop(trainer: Trainer) -> None:
    """The updates from the current one to the last, then the final save."""
    config, logger = trainer.config, trainer.logger
    trainer.start_time, trainer.start_steps = time.monotonic(), trainer.env_steps
    while trainer.update < trainer.num_updates:
        trainer.train_one_update()
        last = trainer.update == trainer.num_updates
        if config.eval_interval and trainer.update % config.eval_interval == 0 and logger is not None:
            trainer.evaluate()
        if trainer.update % config.save_interval == 0 or last:
            trainer.save()
    trainer.save()  # a resumed run that was already finished
    if logger is not None:
        logger.print(
            f"Done: {trainer.env_steps} env steps, {summary(trainer.returns)}. Checkpoint: {trainer.save_path}"
        )
