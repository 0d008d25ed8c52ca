"""The overlapped-stepping choice: ``"on"``, ``"off"``, or ``"auto"`` (timed on this machine).

Overlapped stepping (see ``a2c_ppo.rollout``) splits the envs into two halves: while the
workers step one half, the main process computes the other half's actions. It runs on a
``SubprocVecEnv`` whose envs all live in workers (``in_main=0``), so that the main process's
core is left to the policy. It pays where the main process's work per step (the policy, and
per env the normalisation, the adapter and the storage) is large next to the cost of the
extra round trips: Atari with a CNN, MuJoCo with normalisation; that work then hides behind
the env stepping. For cheap envs with a cheap policy (classic control) the plain schedule,
with the main process stepping a share of the envs (``in_main``), is faster.

The cost model, per vector step, with the env step times ``t`` (the env alone) and ``v``
(through our vector env) of ``auto.StepTimes``, ``k = v - t`` the main process's work per env
beyond the env, ``p(n)`` one policy act on ``n`` envs, ``h = ceil(N / 2)`` and ``W`` workers:

* plain: ``p(N) + N k + env`` where ``env`` is ``N v`` (sync) or ``predicted_step_time``
  (subproc);
* overlapped: ``max(2 m, m + e, busy)`` with ``m = p(h) + h k + F`` the main process's work
  for one half (``F``: its fixed cost per half step, sending, receiving, staging),
  ``e = ceil(h / max(1, W // 2)) * t + r`` the env time of one half (a busy worker runs at
  the env's own speed; ``r`` its round trip) and ``busy`` a worker's work per step (``2 e``
  when one worker steps both halves, else ``e``).

Calibrated against ``benchmarks/rollout_overlap.py`` on the 2-core development VM (rollout
SPS, 8 envs, overlapped / plain): CartPole 0.72x, HalfCheetah 1.29x, Pong 1.25x.
``auto`` overlaps only where that is predicted ``OVERLAP_MIN_SPEEDUP`` times faster.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import gymnasium as gym

from a2c_ppo.envs.auto import AUTO_MIN_SPEEDUP, StepTimes, measure_step_times, predicted_step_time
from a2c_ppo.envs.subproc.vec_env import default_in_main
from a2c_ppo.envs.subproc.worker import default_num_workers
from a2c_ppo.errors import ConfigError

OVERLAP_CHOICES = ("auto", "on", "off")
#: ``auto`` overlaps only when predicted this much faster: a choice made on timings should
#: not flip between runs for a few percent (and the two schedules draw actions differently).
OVERLAP_MIN_SPEEDUP = 1.15
#: ``F``: the main process's fixed cost per half step (step_async, step_wait, staging copies).
OVERLAP_HALF_OVERHEAD_S = 60e-6
#: ``r``: a busy worker's pipe round trip per half step (no wake-up from sleep).
OVERLAP_ROUND_TRIP_S = 50e-6


def overlap_workers(num_workers: int | None) -> int:
    """Worker processes for overlapped stepping: ``num_workers``, by default one per CPU
    but one (the main process computes the policy), at least 1."""
    return num_workers if num_workers is not None else max(1, default_num_workers() - 1)


def predicted_overlap_period(num_envs: int, times: StepTimes, p_half: float, num_workers: int) -> float:
    """Seconds per vector step, overlapped on ``num_workers`` workers (see the module doc)."""
    half = num_envs - num_envs // 2
    main = p_half + half * times.bookkeeping + OVERLAP_HALF_OVERHEAD_S
    e = math.ceil(half / max(1, num_workers // 2)) * times.env + OVERLAP_ROUND_TRIP_S
    busy = 2 * e if num_workers == 1 else e
    return max(2 * main, main + e, busy)


def predicted_plain_period(
    num_envs: int, times: StepTimes, p_full: float, vec_env: str, num_workers: int | None
) -> float:
    """Seconds per vector step of the plain schedule on ``vec_env`` (``"auto"``: the faster)."""
    sync = num_envs * times.vec
    workers = max(1, default_num_workers() - 1) if num_workers is None else num_workers
    subproc = predicted_step_time(num_envs, times, workers, default_in_main(num_envs, workers))
    if vec_env == "auto":  # as auto.choose_vec_env decides
        vec_env = "subproc" if sync >= AUTO_MIN_SPEEDUP * subproc else "sync"
    return p_full + num_envs * times.bookkeeping + (subproc if vec_env == "subproc" else sync)


def choose_overlap(
    overlap: str,
    *,
    num_envs: int,
    vec_env: str,
    num_workers: int | None,
    env_fn: Callable[[], gym.Env],
    policy_step_s: Callable[[int], float] | None,
    step_times: StepTimes | None = None,
) -> bool:
    """Whether ``make_vec_envs`` builds the overlapped layout (before any worker starts).

    ``policy_step_s(n)``: seconds for the policy to act on ``n`` envs (see
    ``a2c_ppo.rollout.policy_step_timer``); ``auto`` without it, with one env, one CPU or a
    ``sync`` vector env is ``off``. ``on`` with ``vec_env="sync"`` is an error.
    """
    if overlap not in OVERLAP_CHOICES:
        raise ConfigError(f"overlap must be one of {', '.join(OVERLAP_CHOICES)}, got {overlap!r}")
    if overlap == "on" and vec_env == "sync":
        raise ConfigError("--overlap on steps the envs in worker processes: use --vec-env subproc or auto")
    if overlap == "off" or num_envs < 2:
        return False
    if overlap == "on":
        return True
    if policy_step_s is None or vec_env == "sync" or (num_workers is None and default_num_workers() <= 1):
        return False
    times = measure_step_times(env_fn) if step_times is None else step_times
    half = num_envs - num_envs // 2
    overlapped = predicted_overlap_period(num_envs, times, policy_step_s(half), overlap_workers(num_workers))
    plain = predicted_plain_period(num_envs, times, policy_step_s(num_envs), vec_env, num_workers)
    return plain >= OVERLAP_MIN_SPEEDUP * overlapped
