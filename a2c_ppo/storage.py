"""RolloutStorage: one rollout of ``num_steps`` x ``num_processes`` transitions.

Time-major layout: obs, hidden states, masks and values are ``(T+1, N, ...)`` (slot T holds
the state after the last step, copied to slot 0 by ``after_update``); actions, log-probs,
rewards and the done flags are ``(T, N, ...)``. A Dict observation is a ``TensorDict`` with
each part in its own dtype (images stay uint8) in that same layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple, cast

import numpy as np
import torch

from a2c_ppo.observations import Obs, TensorDict, copy_obs, flatten_steps, map_obs


class Minibatch(NamedTuple):
    """A flat batch of B samples (B = minibatch size).

    From ``recurrent_generator`` the B = L * n samples are n sequences of length L,
    flattened time-major (row ``t * n + i``), and ``recurrent_hidden_states`` is ``(n, H)``:
    each sequence's state before its first step. A recurrent minibatch of a next-step vector
    env keeps its reset rows, which the recurrence steps through; ``transitions`` then lists the
    rows to train on (the losses' means are over those rows only).
    """

    obs: Obs  # (B, *obs_shape), each part of a Dict observation
    recurrent_hidden_states: torch.Tensor  # (B, H); (n, H) from recurrent_generator
    actions: torch.Tensor  # (B, A)
    value_preds: torch.Tensor  # (B, 1)
    returns: torch.Tensor  # (B, 1)
    masks: torch.Tensor  # (B, 1)
    old_action_log_probs: torch.Tensor  # (B, 1)
    advantages: torch.Tensor  # (B, 1)
    old_dist_params: torch.Tensor | None = None  # (B, P): the rollout policy's distributions (KL penalty)
    transitions: torch.Tensor | None = None  # (V,) indices of the rows that are transitions; None: all B

    @property
    def empty(self) -> bool:
        """Whether no row is a transition: a minibatch dealt only a next-step vector env's reset
        rows (one-step sequences), or none at all (fewer transitions than minibatches)."""
        return len(self.returns) == 0 if self.transitions is None else len(self.transitions) == 0

    def loss_rows(self) -> Minibatch:
        """The rows the losses are over (``transitions``) of the fields they read; the
        observations and hidden states, which only the policy's pass reads, as they are."""
        rows = self.transitions
        if rows is None:
            return self
        per_row: dict[str, Any] = {name: take_rows(getattr(self, name), rows) for name in _PER_ROW}
        return self._replace(transitions=None, **per_row)


#: The fields of a minibatch with one entry per row (the rest: observations, hidden states).
_PER_ROW = ("actions", "value_preds", "returns", "masks", "old_action_log_probs", "advantages", "old_dist_params")


def take_rows(tensor: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
    """``tensor[idx]``; ``None`` stays ``None``."""
    return None if tensor is None else tensor[idx]


def _rows(batch: Minibatch, idx: torch.Tensor) -> Minibatch:
    """The rows ``idx`` of every field of ``batch`` (fields left out stay ``None``)."""
    return Minibatch(*(take_rows(tensor, idx) for tensor in batch))  # type: ignore[arg-type]


def backward_recurrence(b: torch.Tensor, c: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """``x (T, N, 1)`` with ``x_t = b_t + c_t * x_{t+1}`` and ``x_T = last (N, 1)``.

    A loop over time in numpy: each step is a few operations on N numbers, where numpy's
    per-call cost is a fraction of torch's (for MuJoCo's 2048 x 1 rollout, some 60 ms of
    an update in torch against 4 ms here).
    """
    b_np, c_np = b.detach().cpu().numpy(), c.detach().cpu().numpy()
    out = np.empty_like(b_np)
    x = last.detach().cpu().numpy()
    for t in range(len(b_np) - 1, -1, -1):
        x = b_np[t] + c_np[t] * x
        out[t] = x
    return torch.from_numpy(out).to(b.device)


_STEP_FIELDS = ("actions", "action_log_probs", "value_preds", "rewards", "terminated", "truncated", "bootstrap_values")
_TERMINATED, _TRUNCATED = _STEP_FIELDS.index("terminated"), _STEP_FIELDS.index("truncated")
_NEXT_FIELDS = ("recurrent_hidden_states", "masks")  # and obs, see _insert_targets
ObsLayout = dict[str | None, tuple[tuple[int, ...], torch.dtype]]  # observations.obs_layout


def chunks_split(num_steps: int, num_envs: int, length: int, num_mini_batch: int) -> bool:
    """Whether ``num_envs`` columns of ``num_steps`` steps, cut into chunks of ``length``, make
    ``num_mini_batch`` minibatches of equally many chunks."""
    chunks = num_envs * (num_steps // length)
    return num_steps % length == 0 and chunks >= num_mini_batch and chunks % num_mini_batch == 0


def fitting_chunk_length(num_steps: int, num_envs: int, num_mini_batch: int) -> int:
    """Recurrent PPO's chunk length where none is given: whole columns (``num_steps``) where they
    make the minibatches, else the longest length that does (1 does wherever the batch splits
    into ``num_mini_batch`` equal minibatches, which ``run_checks.validate`` checks)."""
    lengths = range(num_steps, 0, -1)
    return next((length for length in lengths if chunks_split(num_steps, num_envs, length, num_mini_batch)), 1)


class RolloutStorage:
    def __init__(
        self,
        num_steps: int,
        num_processes: int,
        obs_shape: tuple[int, ...] | ObsLayout,
        action_dim: int,
        action_dtype: torch.dtype = torch.float32,
        recurrent_hidden_state_size: int = 1,
        obs_dtype: torch.dtype = torch.float32,
        recurrent_chunk_length: int | None = None,
    ) -> None:
        """``obs_shape``: one observation's shape (of dtype ``obs_dtype``), or its parts' shapes
        and dtypes (``observations.obs_layout``)."""
        T, N = num_steps, num_processes
        self.num_steps, self.num_processes = T, N
        # Length of the sequences recurrent_generator cuts columns into (None: whole column).
        self.recurrent_chunk_length = recurrent_chunk_length
        layout = obs_shape if isinstance(obs_shape, dict) else {None: (obs_shape, obs_dtype)}
        parts = {key: torch.zeros(T + 1, N, *shape, dtype=dtype) for key, (shape, dtype) in layout.items()}
        self.obs: Obs = parts[None] if None in parts else TensorDict(parts)
        self.recurrent_hidden_states = torch.zeros(T + 1, N, recurrent_hidden_state_size)
        # masks[t] is 0 when obs[t] starts a new episode (resets recurrent state).
        self.masks = torch.ones(T + 1, N, 1)
        self.value_preds = torch.zeros(T + 1, N, 1)
        self.actions = torch.zeros(T, N, action_dim, dtype=action_dtype)
        self.action_log_probs = torch.zeros(T, N, 1)
        self.rewards = torch.zeros(T, N, 1)
        self.terminated = torch.zeros(T, N, 1, dtype=torch.bool)
        self.truncated = torch.zeros(T, N, 1, dtype=torch.bool)
        # V(final_obs) for steps that ended by truncation; read only where truncated.
        self.bootstrap_values = torch.zeros(T, N, 1)
        self.returns = torch.zeros(T, N, 1)
        # Reward units per unit of value_preds and returns: the critic's scale under --norm-value
        # (value_norm.py), by which the advantages return to reward units.
        self.value_scale = 1.0
        # (T, N, P): the rollout policy's action distributions, where an update needs them (the
        # KL penalty's exact KL); None otherwise.
        self.dist_params: torch.Tensor | None = None
        # (T, N, 1) bool, False for rows that are no transition (the reset step of a next-step
        # native vector env); None while every row is one, as for every other env.
        self.valid: torch.Tensor | None = None
        self.step = 0
        self._targets_of: tuple[tuple[torch.Tensor, ...], tuple[Any, ...]] | None = None  # see _insert_targets

    def to(self, device: torch.device | str) -> RolloutStorage:
        for name, value in vars(self).items():
            if isinstance(value, (torch.Tensor, TensorDict)):
                setattr(self, name, value.to(device))
        return self

    def insert(
        self,
        *,
        obs: Obs,
        recurrent_hidden_states: torch.Tensor,
        actions: torch.Tensor,
        action_log_probs: torch.Tensor,
        value_preds: torch.Tensor,
        rewards: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        bootstrap_values: torch.Tensor,
    ) -> None:
        """Store step ``t``: the policy's outputs at ``obs[t]`` and what the env returned.

        ``obs`` and ``recurrent_hidden_states`` are the *next* state (slot t+1); all
        per-env tensors are ``(N, ...)``.
        """
        t = self.step
        values = (actions, action_log_probs, value_preds, rewards, terminated, truncated, bootstrap_values)
        targets = self._insert_targets()
        if isinstance(self.obs, TensorDict):  # its parts are copied one by one
            copy_obs(self.obs[t + 1], obs)
        if isinstance(targets[0], np.ndarray):  # CPU: numpy assignment costs half of copy_ (and a torch op more)
            arrays = cast(tuple[np.ndarray, ...], targets)
            for array, value in zip(arrays, values):
                array[t] = value.numpy()
            rnn_array, masks_array, *obs_array = arrays[len(values) :]
            rnn_array[t + 1] = recurrent_hidden_states.numpy()
            # masks = not (terminated or truncated), from the rows just stored
            np.logical_not(np.logical_or(arrays[_TERMINATED][t], arrays[_TRUNCATED][t]), out=masks_array[t + 1])
            for array in obs_array:  # none for a TensorDict
                array[t + 1] = cast(torch.Tensor, obs).numpy()
        else:
            tensors = cast(tuple[torch.Tensor, ...], targets)
            for tensor, value in zip(tensors, values):
                tensor[t].copy_(value)
            next_values: tuple[Any, ...] = (recurrent_hidden_states, ~(terminated | truncated), obs)
            for tensor, value in zip(tensors[len(values) :], next_values):
                tensor[t + 1].copy_(value)
        self.step = (t + 1) % self.num_steps

    def _insert_targets(self) -> tuple[torch.Tensor, ...] | tuple[np.ndarray, ...]:
        """The tensors ``insert`` writes (slot t: ``_STEP_FIELDS``, slot t + 1: ``_NEXT_FIELDS``),
        as numpy views when they are on the CPU; made again when one was replaced (``to``)."""
        tensors = tuple(getattr(self, name) for name in _STEP_FIELDS + _NEXT_FIELDS)
        if isinstance(self.obs, torch.Tensor):
            tensors += (self.obs,)
        cached = self._targets_of
        if cached is None or any(a is not b for a, b in zip(cached[0], tensors)):
            on_cpu = all(tensor.device.type == "cpu" for tensor in tensors)
            cached = (tensors, tuple(tensor.numpy() for tensor in tensors) if on_cpu else tensors)
            self._targets_of = cached
        return cached[1]

    def mark_dummy(self, step: int, dummy: torch.Tensor) -> None:
        """Exclude the rows ``dummy (N, 1)`` of step ``step`` from training (see ``valid``)."""
        if self.valid is None:
            with torch.inference_mode(False):  # made during a rollout, it must outlive inference mode
                self.valid = torch.ones_like(self.terminated)
        self.valid[step] = ~dummy

    def valid_rows(self) -> torch.Tensor | None:
        """The flat indices (into ``T * N``) of the rows to train on; ``None``: all of them."""
        return None if self.valid is None else self.valid.reshape(-1).nonzero().squeeze(1)

    def trains_on_nothing(self) -> bool:
        """Whether every row is a reset row (a one-step rollout after every env ended)."""
        return self.valid is not None and not bool(self.valid.any())

    def valid_terminated(self) -> torch.Tensor:
        """(T, N, 1) bool: the steps that ended their episode by termination (not a time limit,
        where proper time limits are on), among the rows that are transitions."""
        return self.terminated if self.valid is None else self.terminated & self.valid

    def after_update(self) -> None:
        if self.valid is not None:
            self.valid.fill_(True)
        self.obs[0].copy_(self.obs[-1])
        self.recurrent_hidden_states[0].copy_(self.recurrent_hidden_states[-1])
        self.masks[0].copy_(self.masks[-1])

    def compute_returns(self, next_value: torch.Tensor, use_gae: bool, gamma: float, gae_lambda: float) -> None:
        """Fill ``returns`` (T, N, 1) from rewards and values; ``next_value`` is V(obs[T]).

        The value after step t is V(obs[t+1]) while the episode goes on, V(final_obs) after
        a truncation, and 0 after a termination; nothing flows back across an episode end.
        Both estimators are the backward recurrence ``x_t = b_t + c_t * x_{t+1}``:

        * GAE: ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}``, ``A_T = 0``, with
          ``delta_t = r_t + gamma * V_next_t - V_t``; returns are ``A_t + V_t``;
        * n-step: ``R_t = r_t + gamma * (V_next_t if done_t else R_{t+1})``, ``R_T = V(obs[T])``.
        """
        self.value_preds[-1].copy_(next_value)
        done = self.terminated | self.truncated
        next_values = torch.where(self.truncated, self.bootstrap_values, self.value_preds[1:])
        next_values = next_values.masked_fill(self.terminated, 0.0)
        not_done = (~done).float()
        if use_gae:
            deltas = self.rewards + gamma * next_values - self.value_preds[:-1]
            advantages = backward_recurrence(deltas, gamma * gae_lambda * not_done, torch.zeros_like(next_value))
            self.returns.copy_(advantages + self.value_preds[:-1])
        else:
            at_end = self.rewards + gamma * next_values * done.float()
            self.returns.copy_(backward_recurrence(at_end, gamma * not_done, next_value))

    def flat_batch(self, advantages: torch.Tensor) -> Minibatch:
        """Every step of the rollout as one batch of ``T*N`` rows, time-major (row ``t * N + n``),
        views of the storage (the rows of a next-step vector env's resets included);
        ``advantages`` is (T, N, 1)."""
        batch_size = self.num_steps * self.num_processes
        return Minibatch(
            obs=flatten_steps(self.obs[:-1]),
            recurrent_hidden_states=self.recurrent_hidden_states[:-1].reshape(batch_size, -1),
            actions=self.actions.reshape(batch_size, -1),
            value_preds=self.value_preds[:-1].reshape(batch_size, 1),
            returns=self.returns.reshape(batch_size, 1),
            masks=self.masks[:-1].reshape(batch_size, 1),
            old_action_log_probs=self.action_log_probs.reshape(batch_size, 1),
            advantages=advantages.reshape(batch_size, 1),
            old_dist_params=None if self.dist_params is None else self.dist_params.reshape(batch_size, -1),
        )

    def valid_batch(self, advantages: torch.Tensor) -> Minibatch:
        """``flat_batch`` without the rows that are no transitions (``valid_rows``)."""
        rows = self.valid_rows()
        flat = self.flat_batch(advantages)
        return flat if rows is None else _rows(flat, rows)

    def feed_forward_generator(
        self, advantages: torch.Tensor, num_mini_batch: int, num_epochs: int = 1
    ) -> Iterator[Minibatch]:
        """``num_epochs`` passes of ``num_mini_batch`` random minibatches of ``T*N // num_mini_batch``
        samples; each pass covers every sample exactly once when ``num_mini_batch`` divides
        ``T*N`` (the flags ensure it), else the remainder is left out of that pass. The
        flattened views are built once for all passes."""
        batch_size = self.num_steps * self.num_processes
        if batch_size < num_mini_batch:
            raise ValueError(f"batch of {batch_size} samples cannot make {num_mini_batch} minibatches")
        mini_batch_size = batch_size // num_mini_batch
        flat = self.flat_batch(advantages)
        rows = self.valid_rows()
        for _ in range(num_epochs):
            if rows is not None:  # minibatches of the valid rows only, as near equal in size as can be
                perm = rows[torch.randperm(len(rows), device=rows.device)]
                for idx in torch.tensor_split(perm, num_mini_batch):
                    yield _rows(flat, idx)
                continue
            perm = torch.randperm(batch_size, device=self.rewards.device)
            for k in range(num_mini_batch):
                idx = perm[k * mini_batch_size : (k + 1) * mini_batch_size]
                yield _rows(flat, idx)

    def recurrent_chunks(self, num_mini_batch: int, chunk_length: int | None = None) -> tuple[int, int]:
        """``(L, number of chunks)`` for sequences of ``chunk_length`` (None: the storage's, else
        ``fitting_chunk_length``'s for ``num_mini_batch``)."""
        T, N = self.num_steps, self.num_processes
        L = chunk_length or self.recurrent_chunk_length or fitting_chunk_length(T, N, num_mini_batch)
        if L <= 0 or T % L != 0:
            raise ValueError(f"recurrent chunk length {L} must be positive and divide num_steps {T}")
        return L, N * (T // L)

    def recurrent_generator(
        self, advantages: torch.Tensor, num_mini_batch: int, chunk_length: int | None = None, num_epochs: int = 1
    ) -> Iterator[Minibatch]:
        """``num_epochs`` passes of minibatches of whole sequences for a recurrent policy, each
        sample exactly once per pass.

        Every env column of T steps is cut into T / L chunks of L consecutive steps (L =
        ``chunk_length``, else the storage's ``recurrent_chunk_length``, else
        ``fitting_chunk_length``: whole columns where they suffice). The chunks are shuffled
        and dealt into ``num_mini_batch`` minibatches of n chunks each, laid out time-major
        ``(L * n, ...)`` with the hidden state stored before each chunk's first step as
        ``recurrent_hidden_states (n, H)``. Chunks that do not start a column begin from the
        state computed during the rollout (by the policy before this update), as in R2D2's
        "stored state".

        The reset rows of a next-step vector env stay in their sequences (the recurrence runs
        through them); each minibatch's ``transitions`` lists its other rows (none: ``empty``,
        possible with one-step chunks).
        """
        T, N = self.num_steps, self.num_processes
        L, num_chunks = self.recurrent_chunks(num_mini_batch, chunk_length)
        if num_chunks < num_mini_batch:
            raise ValueError(
                f"{num_chunks} sequences ({N} envs x {T // L} chunks of {L} steps) cannot make "
                f"{num_mini_batch} minibatches; use a shorter chunk length, more envs or fewer minibatches"
            )
        device = self.rewards.device
        steps = torch.arange(L, device=device).view(L, 1)
        for _ in range(num_epochs):
            perm = torch.randperm(num_chunks, device=device)
            for chunk_ids in torch.tensor_split(perm, num_mini_batch):
                env = chunk_ids % N
                start = (chunk_ids // N) * L
                yield self._sequences(advantages, start.view(1, -1) + steps, env, start)

    def _sequences(
        self, advantages: torch.Tensor, t_idx: torch.Tensor, env: torch.Tensor, start: torch.Tensor
    ) -> Minibatch:
        """The minibatch of the n chunks at times ``t_idx (L, n)`` of env columns ``env (n,)``."""
        L, n = t_idx.shape
        e_idx = env.view(1, n).expand(L, n)

        def seq(tensor: torch.Tensor) -> torch.Tensor:
            return tensor[t_idx, e_idx].reshape(L * n, *tensor.shape[2:])  # (L, n, ...) time-major

        return Minibatch(
            obs=map_obs(seq, self.obs),
            recurrent_hidden_states=self.recurrent_hidden_states[start, env],
            actions=seq(self.actions),
            value_preds=seq(self.value_preds),
            returns=seq(self.returns),
            masks=seq(self.masks),
            old_action_log_probs=seq(self.action_log_probs),
            advantages=seq(advantages),
            old_dist_params=None if self.dist_params is None else seq(self.dist_params),
            transitions=None if self.valid is None else seq(self.valid).view(-1).nonzero().squeeze(1),
        )
