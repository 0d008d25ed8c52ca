"""Collecting one rollout: the policy acts, the vector env steps, the storage fills.

Two schedules fill the same ``(T, N)`` storage with the same same-step-autoreset semantics:

* plain: act on all N envs, step all N, store; repeat.
* overlapped (when ``envs.overlap``): the envs are split into two halves that take turns.
  While the workers step one half, the main process stores the other half's last step and
  computes its next actions (the double-buffering of EnvPool's async mode). The policy's
  parameters do not change during a rollout, so it stays on-policy; each half fills its own
  env columns. Each step's random draws are made once for all N envs and handed out by rows
  (``draws.StepDraws``), so the generator runs as in the plain schedule and a seed
  gives both schedules the same random numbers. (A matrix product over half of the rows can
  still round the last bit differently from one over all of them.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import torch

from a2c_ppo.draws import StepDraws
from a2c_ppo.envs.torch_env import StepResult, TorchVecEnv
from a2c_ppo.fastpath import ActFunction, acting_function
from a2c_ppo.model import Policy
from a2c_ppo.observations import Obs, copy_obs, map_obs
from a2c_ppo.sde import noise_rows, resample_noise
from a2c_ppo.storage import RolloutStorage


class _Acted(NamedTuple):
    """The policy's output for one block of envs at one step (rows are that block's envs)."""

    value: torch.Tensor  # (n, 1)
    action: torch.Tensor  # (n, A)
    log_prob: torch.Tensor  # (n, 1)
    rnn_hxs: torch.Tensor  # (n, H): the state carried out of this step


class _EnvSide(NamedTuple):
    """What one step of the envs stores (named as RolloutStorage's fields), rows are envs."""

    obs: Obs  # (n, *obs_shape): the next observation
    rewards: torch.Tensor  # (n, 1)
    terminated: torch.Tensor  # (n, 1) bool
    truncated: torch.Tensor  # (n, 1) bool
    bootstrap_values: torch.Tensor  # (n, 1)


def collect_rollout(
    policy: Policy,
    envs: TorchVecEnv,
    rollouts: RolloutStorage,
    proper_time_limits: bool,
    fast: bool = True,
    cast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    act: ActFunction | None = None,
) -> list[tuple[float, int]]:
    """Fill ``rollouts`` with ``num_steps`` steps of every env, acting from slot 0 on.

    Truncated steps store V(final_obs) to bootstrap from (with ``proper_time_limits``;
    else truncation counts as termination). Returns (true return, length) of the episodes
    that ended. Uses the overlapped schedule where ``envs.overlap`` says so, and acts in
    numpy where ``fast`` and ``a2c_ppo.fastpath`` allow, or through ``act`` where given (the
    caller's ``acting_function``, current with the policy); the policy acts within ``cast``
    (bf16 mixed precision, ``precision.py``).
    """
    if act is None:
        act = acting_function(policy, fast=fast)
    with torch.inference_mode(), cast():  # nothing computed here is differentiated later
        if envs.overlap:
            return _collect_overlapped(act, policy, envs, rollouts, proper_time_limits)
        return _collect_plain(act, policy, envs, rollouts, proper_time_limits)


def _collect_plain(
    act: ActFunction, policy: Policy, envs: TorchVecEnv, rollouts: RolloutStorage, proper_time_limits: bool
) -> list[tuple[float, int]]:
    episodes: list[tuple[float, int]] = []
    zeros = torch.zeros_like(rollouts.bootstrap_values[0])  # (N, 1): no bootstrap this step
    for step in range(rollouts.num_steps):
        resample_noise(policy, rollouts.num_processes, step)  # gSDE's exploration matrices, when due
        value, action, log_prob, rnn_hxs = act(
            rollouts.obs[step], rollouts.recurrent_hidden_states[step], rollouts.masks[step]
        )
        out = envs.step(action)
        if out.dummy is not None:
            rollouts.mark_dummy(step, out.dummy)
        terminated, truncated, bootstrap_values = _ends(policy, out, rnn_hxs, zeros, proper_time_limits)
        rollouts.insert(
            obs=out.obs,
            recurrent_hidden_states=rnn_hxs,
            actions=action,
            action_log_probs=log_prob,
            value_preds=value,
            rewards=out.reward,
            terminated=terminated,
            truncated=truncated,
            bootstrap_values=bootstrap_values,
        )
        if out.episodes:
            episodes.extend((ret, length) for _, ret, length in out.episodes)
    return episodes


def _collect_overlapped(
    act: ActFunction, policy: Policy, envs: TorchVecEnv, rollouts: RolloutStorage, proper_time_limits: bool
) -> list[tuple[float, int]]:
    """The overlapped schedule. Per step ``t`` and half ``h`` (A, then B): wait for h's step
    ``t``, copy its results into the step-``t`` staging buffers (before h steps again, as the
    env may reuse its buffers), act on h's new observations and send h's step ``t + 1``. Once
    both halves of step ``t`` are staged, store step ``t``."""
    T, N = rollouts.num_steps, rollouts.num_processes
    halves = (slice(0, N // 2), slice(N // 2, N))
    staged = _EnvSide(*[map_obs(torch.zeros_like, getattr(rollouts, name)[0]) for name in _EnvSide._fields])  # type: ignore[arg-type]
    zeros = torch.zeros_like(rollouts.bootstrap_values[0])
    episodes: list[tuple[float, int]] = []  # step by step, each in env order as in the plain schedule
    acted: dict[int, _Acted] = {}
    resample_noise(policy, N, 0)  # gSDE: every env's matrix, drawn once per step for all N
    draws = StepDraws(N)  # the actions' random numbers, likewise
    draws.next_step()
    for h, half in enumerate(halves):
        with noise_rows(policy, half), draws.rows(half):
            acted[h] = _Acted(
                *act(rollouts.obs[0, half], rollouts.recurrent_hidden_states[0, half], rollouts.masks[0, half])
            )
        envs.step_async(acted[h].action, half)
    for step in range(T):
        current = dict(acted)  # the step-`step` outputs; `acted` moves on to step + 1 half by half
        for h, half in enumerate(halves):
            out = envs.step_wait(half)
            ends = _ends(policy, out, current[h].rnn_hxs, zeros[half], proper_time_limits)
            for buffer, value in zip(staged, (out.obs, out.reward, *ends)):
                copy_obs(buffer[half], value)
            episodes.extend((ret, length) for _, ret, length in out.episodes)
            if step + 1 < T:
                if h == 0:
                    resample_noise(policy, N, step + 1)
                    draws.next_step()
                masks = (~(out.terminated | out.truncated)).float()
                with noise_rows(policy, half), draws.rows(half):
                    acted[h] = _Acted(*act(staged.obs[half], current[h].rnn_hxs, masks))
                envs.step_async(acted[h].action, half)
        full = _Acted(*(torch.cat(parts) for parts in zip(current[0], current[1])))
        _insert(rollouts, staged, full)
    return episodes


def _insert(rollouts: RolloutStorage, env_side: _EnvSide, acted: _Acted) -> None:
    rollouts.insert(
        recurrent_hidden_states=acted.rnn_hxs,
        actions=acted.action,
        action_log_probs=acted.log_prob,
        value_preds=acted.value,
        **env_side._asdict(),
    )


def _ends(
    policy: Policy, out: StepResult, rnn_hxs: torch.Tensor, zeros: torch.Tensor, proper_time_limits: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(terminated, truncated, bootstrap value), each ``(n, 1)``, to store for step ``out``.

    A truncated row bootstraps from V(final_obs), computed with ``rnn_hxs``: the hidden state
    the policy carried out of this step, i.e. the one the episode would have continued with
    (mask 1). Terminated rows, and every row without ``proper_time_limits``, store 0.
    """
    if not proper_time_limits:
        return out.terminated | out.truncated, torch.zeros_like(out.truncated), zeros
    if not len(out.truncated_idx):
        return out.terminated, out.truncated, zeros
    idx = out.truncated_idx
    bootstrap = zeros.clone()
    bootstrap[idx] = policy.get_value(out.final_obs, rnn_hxs[idx], torch.ones(len(idx), 1, device=zeros.device))
    return out.terminated, out.truncated, bootstrap
