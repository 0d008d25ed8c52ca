"""One run's pieces and one update at a time: envs -> storage -> algorithm -> model.

``Trainer`` builds the policy, the algorithm (and GAIL's discriminator), the envs and the
storage, and trains in the order it runs: collect a rollout (``rollout.py``), compute its
returns (``storage.py``), update the policy (``algo/``), check that everything is finite.
``session.py`` drives it: the run folder, the loop, the callbacks and the endings.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections import deque
from typing import Any

import numpy as np
import torch

from a2c_ppo.algo.common import Optimizer, set_learning_rate
from a2c_ppo.algo.gail import discriminator_epochs
from a2c_ppo.builders import (
    build_envs,
    make_agent,
    make_gail,
    policy_for,
    precision_probe,
)
from a2c_ppo.checkpoint import FiniteCheck
from a2c_ppo.config import RunConfig
from a2c_ppo.distributed import DistContext, sync_running_stats
from a2c_ppo.distributions import action_shape
from a2c_ppo.envs import VecNormalize
from a2c_ppo.envs.check import inspect_env
from a2c_ppo.envs.frames import recipe_of
from a2c_ppo.errors import NonFiniteError, NonFiniteRolloutError
from a2c_ppo.fastpath import ActFunction, NumpyActor, acting_function, fast_mlp
from a2c_ppo.model import eval_mode
from a2c_ppo.observations import copy_obs, flatten_steps, obs_layout
from a2c_ppo.precision import autocast, choose_precision, preserved_rng
from a2c_ppo.rollout import collect_rollout
from a2c_ppo.seeds import training_base
from a2c_ppo.storage import RolloutStorage
from a2c_ppo.value_norm import ValueNormalizer

EPISODE_WINDOW = 10  # episodes in the console's and TensorBoard's running return


class Trainer:
    """One run's pieces (policy, algorithm, envs, storage) and one update's steps."""

    def __init__(self, config: RunConfig, ctx: DistContext) -> None:
        self.ctx = ctx
        self.batch = config.batch_size * ctx.world_size  # env steps of all ranks per update
        self.num_updates = config.num_env_steps // self.batch
        self.total_steps = self.num_updates * self.batch  # env steps when it ends (a resume may change the batch)
        # The policy exists before the envs: the overlap choice times one of its steps.
        recipe = recipe_of(config)
        report = inspect_env(config.env_name, config.action_masks, config.vec_env, recipe, config.env_timeout)
        observation_space, action_space = report.observation_space, report.action_space
        self.policy = policy_for(config, observation_space, action_space).to(ctx.device)
        # Acting in eval mode matters to a network of one's own (dropout, batch norm); the built-in
        # ones have neither, and the switch costs 70 us an update (A2C's are 5 steps apart).
        self.acting_mode = functools.partial(eval_mode, self.policy) if config.policy_base else contextlib.nullcontext
        self.notes: list[str] = []  # for the console: the choices made here
        config = self.resolve_precision(config)
        self.agent = make_agent(config, self.policy, ctx.reducer(), ctx.device)
        self.finite_check = FiniteCheck(self.policy, None if self.agent.flat is None else self.agent.flat.data)
        spaces = observation_space, action_space
        self.gail = (
            make_gail(config, spaces, ctx.reducer(), ctx.device, ctx.rank, time_limit=report.time_limit)
            if config.gail
            else None
        )
        self.gail_metrics: dict[str, float] = {}
        if self.gail is not None:
            self.notes.append(self.gail.describe())
        self.envs = build_envs(config, config.num_processes, ctx.device, policy=self.policy)
        # Record the choices auto made, so that a resumed run makes the same ones.
        kind = self.envs.envs.unwrapped.metadata.get("vec_env", config.vec_env)
        if config.vec_env == "auto" and config.num_workers and not getattr(self.envs.envs.unwrapped, "num_workers", 0):
            self.notes.append(
                f"--num-workers {config.num_workers}: unused, --vec-env auto chose no worker processes (measured "
                "faster here); --vec-env subproc takes the workers."
            )
        self.config = config = config.replace(overlap="on" if self.envs.overlap else "off", vec_env=kind)
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
        self.value_normalizer = ValueNormalizer(config.value_norm_stats, config.gamma) if config.norm_value else None
        self.returns: deque = deque(maxlen=EPISODE_WINDOW)
        self.lengths: deque = deque(maxlen=EPISODE_WINDOW)
        self.update, self.env_steps = 0, 0
        self.act: ActFunction | None = None  # see _acting

    def resolve_precision(self, config: RunConfig) -> RunConfig:
        """``config`` with ``--precision auto`` made fp32 or bf16 (measured; the same on every
        rank), recorded so that a resumed run makes the same choice."""
        fast = config.fast_path == "auto" and fast_mlp(self.policy) is not None
        with preserved_rng():
            precision, why = choose_precision(
                config.precision, self.ctx.device, precision_probe(self.policy, self.ctx.device), fast
            )
        if self.ctx.world_size > 1 and config.precision == "auto":  # bf16 only if every rank measured so
            votes = torch.tensor([1.0 if precision == "bf16" else 0.0], device=self.ctx.device)
            reducer = self.ctx.reducer()
            if reducer is not None and reducer.all_reduce_sum(votes).item() < self.ctx.world_size:
                precision, why = "fp32", "auto: not every rank measured bf16 faster"
        self.notes.append(f"Precision {precision} ({why}).")
        return config.replace(precision=precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.config.precision, self.ctx.device)

    @property
    def optimizer(self) -> Optimizer:
        return self.agent.optimizer

    @property
    def normalizer(self) -> VecNormalize | None:
        return self.envs.envs if isinstance(self.envs.envs, VecNormalize) else None

    def algorithm_state(self) -> dict[str, Any]:
        """The algorithm's own state beyond parameters and optimizer (for checkpoints)."""
        state = {"agent": self.agent.state_dict()} if hasattr(self.agent, "state_dict") else {}
        if self.gail is not None:
            state["gail"] = self.gail.state_dict()
        if self.value_normalizer is not None:
            state["value_norm"] = self.value_normalizer.state_dict()
        return state

    def load_algorithm_state(self, state: dict[str, Any]) -> None:
        if "agent" in state and hasattr(self.agent, "load_state_dict"):
            self.agent.load_state_dict(state["agent"])
        if "gail" in state and self.gail is not None:
            self.gail.load_state_dict(state["gail"], keep_generator=self.ctx.rank > 0)  # as the global RNGs
        if "value_norm" in state and self.value_normalizer is not None:
            self.value_normalizer.load_state_dict(state["value_norm"])

    def reset_envs(self) -> None:
        """Start new episodes; env ``i`` is seeded ``seeds.training_base(...) + i``."""
        config = self.config
        base = training_base(config.seed, self.env_steps, self.ctx.rank, config.num_processes)
        copy_obs(self.rollouts.obs[0], self.envs.reset(seed=base))
        # obs[0] starts episodes: the running sums that follow the masks (--value-norm-stats rewards',
        # GAIL's return), restored from a checkpoint whose envs were not, restart with them
        self.rollouts.masks[0].zero_()

    def learning_rate(self) -> float:
        """Linear decay to 0 over ``--lr-decay-steps``, by default the run's final budget
        (``--num-env-steps`` of this invocation)."""
        if not self.config.use_linear_lr_decay:
            return self.config.lr
        # in env steps, which a resume with another batch keeps counting (its updates are of another size);
        # the same numbers as update / updates where the batch never changed
        horizon = self.total_steps
        if self.config.lr_decay_steps is not None:
            horizon = max(self.config.lr_decay_steps // self.batch, 1) * self.batch
        return self.config.lr * max(1.0 - self.env_steps / horizon, 0.0)

    def _acting(self) -> ActFunction:
        """The rollout's acting function, current with the policy: built at the first rollout,
        a numpy actor refreshed with the updated parameters at each next one."""
        if self.act is None:
            fast = self.config.fast_path == "auto" and self.config.precision == "fp32"
            self.act = acting_function(self.policy, fast=fast)
        elif isinstance(self.act, NumpyActor):
            self.act.refresh()
        return self.act

    def collect(self) -> float:
        """Fill the storage with a rollout and its returns; this rank's rollout SPS."""
        config, r = self.config, self.rollouts
        start = time.perf_counter()
        try:
            with self.acting_mode():  # dropout off, batch norm's running statistics (SB3's rule)
                episodes = collect_rollout(self.policy, self.envs, r, config.use_proper_time_limits,
                                           cast=self.autocast, act=self._acting())  # fmt: skip
        except NonFiniteError as exc:  # raised by the env adapter, which knows no update
            raise NonFiniteRolloutError(f"{exc} (in the rollout of update {self.update + 1})") from None
        rollout_sps = config.batch_size / max(time.perf_counter() - start, 1e-9)
        if self.normalizer is not None:  # every rank normalises with the statistics of all ranks' data
            sync_running_stats(self.normalizer.statistics(), self.ctx.reducer())
        for ret, length in episodes:
            self.returns.append(ret)
            self.lengths.append(length)
        if self.gail is not None:  # the learner sees the discriminator's reward, never the env's
            # the rollout's terminated steps, where absorbing states are on (DAC)
            terminated = r.valid_terminated() if config.gail_absorbing else None
            self.gail_metrics = self.train_discriminator(terminated)
            r.rewards.copy_(self.gail.reward(r.obs[:-1], r.actions, r.masks[:-1], config.gamma, r.valid, terminated))
        with torch.no_grad(), self.autocast(), self.acting_mode():
            next_value = self.policy.get_value(r.obs[-1], r.recurrent_hidden_states[-1], r.masks[-1])
        returns = functools.partial(r.compute_returns, use_gae=config.use_gae, gamma=config.gamma,
                                    gae_lambda=config.gae_lambda)  # fmt: skip
        if self.value_normalizer is not None:
            self.value_normalizer.compute_returns(r, next_value, returns, self.ctx.reducer())
        else:
            returns(next_value)
        return rollout_sps

    def train_discriminator(self, terminated: torch.Tensor | None = None) -> dict[str, float]:
        """GAIL's update on this rollout's (observation, action) pairs against the expert's:
        100 epochs in each of the first ``--gail-warmup`` updates (as the reference), then
        ``--gail-epoch``. Expert observations get the policy's normalisation, not updating it.
        ``terminated`` (T, N, 1) bool: the steps that ended an episode, with absorbing states."""
        assert self.gail is not None
        r, config = self.rollouts, self.config
        obs, actions = flatten_steps(r.obs[:-1]), r.actions.reshape(-1, r.actions.shape[-1])
        rows = r.valid_rows()
        if rows is not None:
            obs, actions = obs[rows], actions[rows]
        normalizer = self.normalizer
        normalize = None
        if normalizer is not None and normalizer.norm_obs:
            normalize = lambda x: torch.from_numpy(normalizer.normalize_obs(x.cpu().numpy())).to(x.device)  # noqa: E731
        epochs = discriminator_epochs(self.update, config.gail_epoch, config.gail_warmup)
        # one absorbing row per episode this rollout terminated (DAC)
        absorbing_rows = 0 if terminated is None else int(terminated.sum())
        metrics = self.gail.update(obs, actions, epochs, config.gail_batch_size, normalize,  # type: ignore[arg-type]
                                   absorbing_rows)  # fmt: skip
        return {f"gail_{name}": value for name, value in metrics.items()}

    def train_policy(self) -> dict[str, float]:
        """Update the policy on the collected rollout at this update's learning rate; its metrics."""
        lr = self.learning_rate()
        set_learning_rate(self.optimizer, lr)
        metrics = self.agent.update(self.rollouts)
        self.rollouts.after_update()
        self.update += 1
        self.env_steps += self.batch
        self.check_finite(metrics)
        if self.value_normalizer is not None:
            metrics["value_scale"] = self.rollouts.value_scale
        return {**metrics, **self.gail_metrics, "learning_rate": lr}

    def check_finite(self, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            if not np.isfinite(value) and name != "explained_variance":
                raise NonFiniteError(f"the {name.replace('_', ' ')} is not finite at update {self.update}")
        bad = self.finite_check.first_non_finite()
        if bad is not None:
            raise NonFiniteError(f"model parameter {bad!r} is not finite after update {self.update}")

    def close(self) -> None:
        self.envs.close()
