"""Where the envs are stepped: the vector env kind, its worker processes and overlapped
stepping, chosen by ``choose_layout`` from one cost model timed on this machine (``auto``).

The cost model, per vector step, with ``t`` (one env step alone), ``v`` (what each env adds to
a step of our in-process vector env) and ``f`` (what such a step costs whatever its number of
envs) of ``StepTimes``, ``k = f + v - t`` the main process's work per env beyond the env itself,
``p(n)`` one policy act on ``n`` envs, ``W`` worker processes:

* ``sync``: ``f + N v``.
* ``subproc`` (``W`` workers plus ``in_main`` envs stepped by the main process meanwhile):
  the slower of the main block, ``f + in_main * v``, and the largest worker block,
  ``n_w * t * WORKER_SLOWDOWN + SUBPROC_ROUND_TRIP_S`` (a worker idles between steps: cold
  caches, and a pipe round trip with a wake-up).
* plain rollout: ``p(N) + N k + env`` (env: the ``sync`` or ``subproc`` time above).
* overlapped rollout (every env in a worker, two halves taking turns): ``max(2 m, m + e,
  busy)`` with ``m = p(h) + h k + F`` the main process's work for one half of ``h = ceil(N/2)``
  envs (``F``: its fixed cost per half step), ``e = ceil(h / max(1, W // 2)) * t + r`` the
  env time of one half (a busy worker runs at the env's own speed; ``r`` its round trip), and
  ``busy`` a worker's work per step (``2 e`` when one worker steps both halves, else ``e``).

EnvPool (``--vec-env envpool``): ``p(N) + s`` with ``s`` one EnvPool vector step, timed. ``auto``
considers it for Atari ids only, where it is installed and supports the id: there our own
envs cannot be captured for an exact resume either (the emulator's state), whereas for
classic control and MuJoCo an automatic EnvPool would silently give up exact resumes.

``auto`` takes a choice only when it is predicted faster by a margin: other load hurts many
processes more than one, and a probe of a few dozen steps is noisy by some 10%. The constants
were calibrated on the 2-core development VM against ``benchmarks/vec_env.py`` and
``benchmarks/rollout_overlap.py`` (docs/BENCHMARKS.md): CartPole x8 stays in-process with the
plain schedule; MuJoCo x8 and Atari use processes and overlap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import gymnasium as gym
import numpy as np

from a2c_ppo.config import check_value
from a2c_ppo.envs.subproc.vec_env import SubprocVecEnv
from a2c_ppo.envs.subproc.worker import default_in_main, default_workers, usable_cpus
from a2c_ppo.envs.timeouts import EnvTimeout, build_limit, close_within, time_limit
from a2c_ppo.errors import ConfigError

#: A worker's pipe round trip and wake-up per vector step (~70 us with a no-op env on the
#: 2-core VM, ~120 us with MuJoCo infos).
SUBPROC_ROUND_TRIP_S = 120e-6
#: Envs step this much slower in a worker that sleeps between commands (cold caches).
WORKER_SLOWDOWN = 1.3
#: ``auto`` takes ``subproc`` only when predicted this much faster than ``sync``.
AUTO_MIN_SPEEDUP = 1.2
#: ``auto`` overlaps only when predicted this much faster than the plain schedule.
OVERLAP_MIN_SPEEDUP = 1.15
#: ``F``: the main process's fixed cost per half step (step_async, step_wait, staging copies).
OVERLAP_HALF_OVERHEAD_S = 60e-6
#: ``r``: a busy worker's pipe round trip per half step (no wake-up from sleep).
OVERLAP_ROUND_TRIP_S = 50e-6


class StepTimes(NamedTuple):
    """Median seconds of env steps, timed on envs built here."""

    env: float  # ``t``: one env itself (with its wrappers), as a worker steps it
    vec: float  # ``v``: what each env adds to a step of our in-process vector env (``t`` included)
    fixed: float = 0.0  # ``f``: what a step of that vector env costs whatever its number of envs

    @property
    def bookkeeping(self) -> float:
        """``k``: what a one-env step of the vector env adds to the env's own, a proxy for the
        main process's work per env and step beyond the env itself (adapter, normalisation,
        storage), with ``f`` in it as the overlap constants were calibrated."""
        return max(0.0, self.fixed + self.vec - self.env)


@dataclass(frozen=True)
class Layout:
    """How ``make_vec_envs`` builds the vector env: ``SubprocVecEnv(num_workers, in_main)``
    (``in_main == num_envs``: no worker, the ``sync`` kind) and whether rollouts overlap."""

    kind: str  # "sync", "subproc" or "envpool"
    num_workers: int | None  # None: SubprocVecEnv's default
    in_main: int | None  # None: SubprocVecEnv's default split
    overlap: bool


def _median_steps(
    steps: list[Callable[[int], object]], warmup: int, count: int, budget_s: float, timeout: float | None
) -> list[float]:
    """Median seconds of each ``step(i)`` over up to ``count`` rounds after ``warmup`` (0.0 if
    none); a round calls each once, in turn, so that a slow spell of the host falls on all. Each
    call runs within ``timeout``, armed outside the span timed: a real vector step pays for its
    limit once for all its in-process envs, and a cost of ~3 us added to this probe's steps
    alone once tipped CartPole x8 into a worker that made it 0.7x as fast."""
    times: list[list[float]] = [[] for _ in steps]
    for i in range(warmup + count):
        for step, spent in zip(steps, times):
            with time_limit(timeout):
                start = time.perf_counter()
                step(i)
                elapsed = time.perf_counter() - start
            if i >= warmup:
                spent.append(elapsed)
        if sum(map(sum, times)) > budget_s:
            break
    return [float(np.median(spent)) if spent else 0.0 for spent in times]


def _probe(
    env_fn: Callable[[], gym.Env],
    warmup: int,
    steps: int,
    budget_s: float,
    timeout: float | None,
    opened: list[gym.Env | SubprocVecEnv],
) -> tuple[float, float, float]:
    """``measure_step_times``'s medians: one env alone, the vector env over one env and over two
    (0.0 where the env is too dear to need it); what it builds is appended to ``opened``."""
    with time_limit(build_limit(timeout)):  # a build and its first reset: as long as a worker's build
        env = env_fn()
        opened.append(env)
        env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(warmup + steps)]

    def env_step(i: int) -> None:
        _, _, terminated, truncated, _ = env.step(actions[i])
        if terminated or truncated:
            env.reset()

    def vec_step(num_envs: int) -> Callable[[int], object]:
        with time_limit(build_limit(timeout)):
            envs = SubprocVecEnv([env_fn] * num_envs, in_main=num_envs, copy=False)  # every env in this process
            opened.append(envs)
            envs.reset(seed=0)
        batches = [np.stack([action] * num_envs) for action in actions]
        return lambda i: envs.step(batches[i])

    one = vec_step(1)
    env_s, one_s = _median_steps([env_step, one], warmup, steps, 2 * budget_s, timeout)
    two_s = 0.0
    if env_s < SUBPROC_ROUND_TRIP_S:
        one_s, two_s = _median_steps([one, vec_step(2)], warmup, steps, 2 * budget_s, timeout)
    return env_s, one_s, two_s


def measure_step_times(
    env_fn: Callable[[], gym.Env],
    *,
    warmup: int = 5,
    steps: int = 50,
    budget_s: float = 0.05,
    timeout: float | None = None,
) -> StepTimes:
    """``StepTimes`` of random-action steps (drawn before the clock starts): one env alone, and
    our in-process vector env over one env and, for an env cheaper than a worker's round trip,
    over two, whose difference is the work per env, the rest ``f``. A vector step's first env
    costs more than the others (the env's code runs cold), so charging a one-env step to every
    env, as this probe did before ``f`` was split off, sent CartPole x8 on a slow host to a
    worker layout 0.7x as fast; a dearer env's creation would cost more than ``f`` can change.
    Medians, so that one preempted step does not count. An env that raises, or whose step runs
    past ``timeout`` seconds (``--env-timeout``; a build and its first reset get
    ``build_limit``'s), ends the probe (0.0 for what was not timed): the real run reports the
    error, naming the env."""
    times = (0.0, 0.0, 0.0)
    opened: list[gym.Env | SubprocVecEnv] = []
    try:
        times = _probe(env_fn, warmup, steps, budget_s, timeout, opened)
    except (Exception, SystemExit, EnvTimeout):  # whatever the env raises (sys.exit too): see the docstring
        pass
    finally:
        for each in reversed(opened):
            close_within(each)
    env_s, one_s, two_s = times
    per_env = max(env_s, two_s - one_s if two_s else one_s)
    return StepTimes(env_s, per_env, max(0.0, one_s - per_env))


# ----------------------------------------------------------------------------- the cost model


def subproc_step_time(num_envs: int, times: StepTimes, num_workers: int, in_main: int) -> float:
    """Seconds per vector step of ``SubprocVecEnv(num_workers, in_main)``."""
    workers = min(num_workers, num_envs - in_main)
    main = times.fixed + in_main * times.vec
    if workers <= 0:
        return main
    per_worker = -(-(num_envs - in_main) // workers)
    return max(main, per_worker * times.env * WORKER_SLOWDOWN + SUBPROC_ROUND_TRIP_S)


def env_step_time(num_envs: int, times: StepTimes, kind: str, num_workers: int) -> float:
    """Seconds per vector step of the ``sync`` or ``subproc`` kind (default split)."""
    if kind == "sync":
        return times.fixed + num_envs * times.vec
    return subproc_step_time(num_envs, times, num_workers, default_in_main(num_envs, num_workers))


def faster_kind(num_envs: int, times: StepTimes, num_workers: int) -> str:
    """``auto``'s vector env kind: ``subproc`` when predicted ``AUTO_MIN_SPEEDUP`` times faster."""
    sync, subproc = (env_step_time(num_envs, times, kind, num_workers) for kind in ("sync", "subproc"))
    return "subproc" if sync >= AUTO_MIN_SPEEDUP * subproc else "sync"


def plain_period(num_envs: int, times: StepTimes, p_full: float, kind: str, num_workers: int) -> float:
    """Seconds per vector step of the plain rollout on ``kind`` (``"auto"``: as auto chooses)."""
    if kind == "auto":
        kind = faster_kind(num_envs, times, num_workers)
    return p_full + num_envs * times.bookkeeping + env_step_time(num_envs, times, kind, num_workers)


def overlap_period(num_envs: int, times: StepTimes, p_half: float, num_workers: int) -> float:
    """Seconds per vector step of the overlapped rollout on ``num_workers`` workers."""
    half = num_envs - num_envs // 2
    main = p_half + half * times.bookkeeping + OVERLAP_HALF_OVERHEAD_S
    e = math.ceil(half / max(1, num_workers // 2)) * times.env + OVERLAP_ROUND_TRIP_S
    busy = 2 * e if num_workers == 1 else e
    return max(2 * main, main + e, busy)


# ----------------------------------------------------------------------------- the choice


#: The --vec-env kinds without our worker processes, and what steps their envs.
NO_WORKERS = {"sync": "steps every env in this process", "envpool": "steps the envs in EnvPool's threads",
              "native": "steps the envs in your vector env"}  # fmt: skip


def _remedy(vec_env: str, flag: str) -> str:
    """What to do about ``flag``, which needs our worker processes, with ``vec_env``."""
    if vec_env == "native":  # the env is a vector env: no --vec-env gives it workers
        return f"drop {flag} (for a2c_ppo's worker processes, give --env-name a factory of single envs)"
    return f"drop {flag}, or use --vec-env subproc or auto"


def check_overlap(vec_env: str, overlap: str) -> None:
    """ConfigError for ``--overlap on`` where no worker process steps the envs."""
    if overlap == "on" and vec_env in NO_WORKERS:
        raise ConfigError(
            f"--overlap on steps the envs in worker processes, and --vec-env {vec_env} {NO_WORKERS[vec_env]}: "
            f"{_remedy(vec_env, '--overlap on')}."
        )


def check_vector_env_flags(vec_env: str, overlap: str, typed: set[str]) -> None:
    """ConfigError for ``--overlap on`` or ``--num-workers`` typed with a ``--vec-env`` that has
    no worker processes, and ``--env-timeout`` where our vector env does not step the envs
    (they would do nothing; in this process an alarm times the envs)."""
    check_overlap(vec_env, overlap)
    for name, kinds, what in (
        ("num_workers", NO_WORKERS, "sets our worker processes"),
        ("env_timeout", ("envpool", "native"), "times the envs our vector env steps"),
    ):
        if name in typed and vec_env in kinds:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} {what}, and --vec-env {vec_env} {NO_WORKERS[vec_env]}: {_remedy(vec_env, flag)}."
            )


def choose_layout(
    num_envs: int,
    *,
    vec_env: str,
    num_workers: int | None,
    overlap: str,
    step_times: Callable[[], StepTimes],
    policy_step_s: Callable[[int], float] | None = None,
    rendering: bool = False,
    envpool_step_s: Callable[[], float] | None = None,
) -> Layout:
    """The layout for ``--vec-env`` / ``--num-workers`` / ``--overlap`` (each ``auto`` chosen
    by the cost model; ``step_times()`` is called at most once, only when a choice needs it).

    ``overlap``: ``on`` needs worker processes (ConfigError with ``vec_env="sync"``); ``auto``
    overlaps only with ``policy_step_s`` (seconds of one act on ``n`` envs), two envs or more,
    more than one CPU (or explicit workers) and no rendering. Overlapped stepping keeps every
    env in a worker (``in_main=0``), leaving the main process's core to the policy. With
    ``vec_env="auto"``, ``envpool_step_s()`` (seconds of one EnvPool vector step; None: EnvPool
    is not a candidate) and ``policy_step_s``, EnvPool is taken where predicted faster by
    ``AUTO_MIN_SPEEDUP`` than the best layout of our own.
    """
    check_value("vec_env", vec_env)
    check_value("overlap", overlap)
    check_overlap(vec_env, overlap)
    can_split = num_envs >= 2 and not rendering and (num_workers is not None or usable_cpus() > 1)
    workers = num_workers if num_workers is not None else default_workers(main_process_busy=True)
    overlapped = overlap == "on" and num_envs >= 2 and not rendering
    if overlap == "auto" and can_split and vec_env != "sync" and policy_step_s is not None:
        times = step_times()
        half = num_envs - num_envs // 2
        plain = plain_period(num_envs, times, policy_step_s(num_envs), vec_env, workers)
        overlapped = plain >= OVERLAP_MIN_SPEEDUP * overlap_period(num_envs, times, policy_step_s(half), workers)
    if overlapped:
        layout = Layout("subproc", workers, 0, True)
    else:
        kind = vec_env
        if kind == "auto":
            kind = faster_kind(num_envs, step_times(), workers) if can_split else "sync"
        if kind == "sync":
            layout = Layout("sync", None, num_envs, False)
        else:
            layout = Layout("subproc", num_workers, None, False)
    if vec_env == "auto" and envpool_step_s is not None and policy_step_s is not None and not rendering:
        times, p_full = step_times(), policy_step_s(num_envs)
        if layout.overlap:
            ours = overlap_period(num_envs, times, policy_step_s(num_envs - num_envs // 2), workers)
        else:
            ours = plain_period(num_envs, times, p_full, layout.kind, workers)
        if ours >= AUTO_MIN_SPEEDUP * (p_full + envpool_step_s()):
            return Layout("envpool", None, None, False)
    return layout
