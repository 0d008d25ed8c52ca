"""The ``auto`` vector-env choice: time one env step here, predict both options, pick one.

The constants were measured on the 2-core development VM (docs/BENCHMARKS.md, vector envs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import gymnasium as gym
import numpy as np

from a2c_ppo.envs.subproc.vec_env import SubprocVecEnv, default_in_main
from a2c_ppo.envs.subproc.worker import default_num_workers

#: Per vector step, what a worker costs beyond its env steps: the pipe round trip and its
#: wake-up (~70 us with a no-op env on the 2-core development VM, ~120 us with MuJoCo infos).
SUBPROC_ROUND_TRIP_S = 120e-6
#: Envs step this much slower in a worker that sleeps between commands (cold caches).
WORKER_SLOWDOWN = 1.3
#: ``auto`` takes ``subproc`` only when it is predicted this much faster than ``sync``: other
#: load on the machine hurts the processes of ``subproc`` much more than one ``sync`` process,
#: and a 50-step probe is noisy by some 10% (CartPole, within 5% either way, must not flip).
AUTO_MIN_SPEEDUP = 1.2


class StepTimes(NamedTuple):
    """Median seconds of one env step, timed two ways on one env built here."""

    env: float  # the env itself (with its wrappers), as a worker steps it
    vec: float  # through our in-process vector env: plus its per-step work (autoreset check,
    # info columns, copies), which the main process pays for every env it steps

    @property
    def bookkeeping(self) -> float:
        """What stepping through the vector env adds: a proxy for the main process's work per
        env and step beyond the env itself (adapter, normalisation, storage)."""
        return max(0.0, self.vec - self.env)


def predicted_step_time(num_envs: int, times: StepTimes, num_workers: int, in_main: int) -> float:
    """Seconds per vector step of ``SubprocVecEnv(num_workers, in_main)``: the slower of the
    main block (``in_main * times.vec``) and the largest worker block."""
    workers = min(num_workers, num_envs - in_main)
    main = in_main * times.vec
    if workers <= 0:
        return main
    per_worker = -(-(num_envs - in_main) // workers)
    return max(main, per_worker * times.env * WORKER_SLOWDOWN + SUBPROC_ROUND_TRIP_S)


def _median_step(step: Callable[[], object], warmup: int, steps: int, budget_s: float) -> float:
    """Median seconds of ``step()`` over up to ``steps`` calls after ``warmup`` (0.0 if none)."""
    times: list[float] = []
    spent = 0.0
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
            spent += elapsed
            if spent > budget_s:
                break
    return float(np.median(times)) if times else 0.0


def measure_step_times(
    env_fn: Callable[[], gym.Env], *, warmup: int = 5, steps: int = 50, budget_s: float = 0.05
) -> StepTimes:
    """``StepTimes`` of random-action steps: the env alone, and one env in our in-process
    vector env (``SubprocVecEnv`` without workers).

    Medians, so that a preemption by another process during one step does not count. An env
    that raises ends the probe (0.0 for what was not timed): the probe only picks a speed
    option, and the real run reports the env's error properly, naming the env.
    """
    env_s = vec_s = 0.0
    env, envs = None, None
    try:
        env = env_fn()
        env.reset(seed=0)
        env.action_space.seed(0)

        def env_step() -> None:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()

        env_s = _median_step(env_step, warmup, steps, budget_s)
        envs = SubprocVecEnv([env_fn], in_main=1, copy=False)  # every env in this process
        envs.reset(seed=0)
        space = envs.single_action_space
        space.seed(0)
        vec_s = _median_step(lambda: envs.step(np.stack([space.sample()])), warmup, steps, budget_s)
    except Exception:  # whatever the env raises: see the docstring
        pass
    finally:
        for opened in (env, envs):
            if opened is not None:
                opened.close()
    return StepTimes(env_s, max(vec_s, env_s))


def choose_vec_env(
    env_fn: Callable[[], gym.Env],
    num_envs: int,
    num_workers: int | None = None,
    step_times: StepTimes | None = None,
) -> str:
    """``"subproc"`` if ``SubprocVecEnv(num_workers=num_workers)`` (default split, main block
    included) is expected to be faster than in-process stepping, else ``"sync"``.

    ``step_times`` (``measure_step_times(env_fn)`` when not given): ``sync`` costs ``N * vec``
    per vector step, ``subproc`` ``predicted_step_time`` (the slower of the main block,
    ``in_main * vec``, and a worker block, ``n * env * WORKER_SLOWDOWN + SUBPROC_ROUND_TRIP_S``).
    ``subproc`` when that is at least ``AUTO_MIN_SPEEDUP`` times faster. Always ``sync`` for
    one env or, with the default ``num_workers``, one CPU. On 2 cores (1 worker + the main
    process, 5 of 8 envs in the main process): ``sync`` for classic control (CartPole, env
    7 us, vec 18 us: 144 against 147 us predicted), ``subproc`` for MuJoCo x8 (HalfCheetah,
    env 54 us, vec 86 us: 690 against 430 us predicted; 349 against 272 us measured) and
    Atari (env ~400 us).
    """
    if num_envs <= 1 or (num_workers is None and default_num_workers() <= 1):
        return "sync"
    workers = num_workers if num_workers is not None else max(1, default_num_workers() - 1)
    in_main = default_in_main(num_envs, workers)
    times = measure_step_times(env_fn) if step_times is None else step_times
    subproc = predicted_step_time(num_envs, times, workers, in_main)
    return "subproc" if num_envs * times.vec >= AUTO_MIN_SPEEDUP * subproc else "sync"
