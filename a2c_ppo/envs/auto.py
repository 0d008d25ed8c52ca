"""The ``auto`` vector-env choice: time one env step here, predict both options, pick one.

The constants were measured on the 2-core development VM (docs/BENCHMARKS.md, vector envs).
"""

from __future__ import annotations

import time
from collections.abc import Callable

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
#: load on the machine hurts the processes of ``subproc`` much more than one ``sync`` process.
AUTO_MIN_SPEEDUP = 1.1


def predicted_step_time(num_envs: int, t: float, num_workers: int, in_main: int) -> float:
    """Seconds per vector step of ``SubprocVecEnv(num_workers, in_main)`` for envs whose step
    takes ``t`` seconds in-process: the slower of the main block and the largest worker block."""
    workers = min(num_workers, num_envs - in_main)
    main = in_main * t
    if workers <= 0:
        return main
    per_worker = -(-(num_envs - in_main) // workers)
    return max(main, per_worker * t * WORKER_SLOWDOWN + SUBPROC_ROUND_TRIP_S)


def measure_step_time(
    env_fn: Callable[[], gym.Env], *, warmup: int = 5, steps: int = 50, budget_s: float = 0.05
) -> float:
    """Median seconds per step (random actions) of one env in our in-process vector env.

    Timed through the vector env, not ``env.step`` alone: what it adds per env (the
    autoreset check, the info columns, the observation copy) is a large part of a fast env's
    cost (a 45 us MuJoCo step costs ~60 us there), and the choice is between two ways of
    paying it. The median, so that a preemption by another process during one step does not
    count. An env that raises ends the probe early (0.0 if nothing was timed): the probe only
    picks a speed option, and the real run reports the env's error properly, naming the env.
    """
    times: list[float] = []
    envs = None
    try:
        envs = SubprocVecEnv([env_fn], in_main=1, copy=False)  # every env in this process
        envs.reset(seed=0)
        envs.single_action_space.seed(0)
        spent = 0.0
        for i in range(warmup + steps):
            actions = np.stack([envs.single_action_space.sample()])
            start = time.perf_counter()
            envs.step(actions)
            elapsed = time.perf_counter() - start
            if i >= warmup:
                times.append(elapsed)
                spent += elapsed
                if spent > budget_s:
                    break
    except Exception:  # whatever the env raises: see the docstring
        pass
    finally:
        if envs is not None:
            envs.close()
    return float(np.median(times)) if times else 0.0


def choose_vec_env(env_fn: Callable[[], gym.Env], num_envs: int, num_workers: int | None = None) -> str:
    """``"subproc"`` if ``SubprocVecEnv(num_workers=num_workers)`` (default split, main block
    included) is expected to be faster than in-process stepping, else ``"sync"``.

    ``t`` (one env step, through our vector env) is timed here on one env; ``sync`` costs
    ``N * t`` per vector step,
    ``subproc`` ``predicted_step_time`` (the slower of the main block, ``in_main * t``, and a
    worker block, ``n * t * WORKER_SLOWDOWN + SUBPROC_ROUND_TRIP_S``). ``subproc`` when that
    is at least ``AUTO_MIN_SPEEDUP`` times faster. Always ``sync`` for one env or, with the
    default ``num_workers``, one CPU. On 2 cores (1 worker + the main process, 5 of 8 envs in
    the main process): ``sync`` for classic control (CartPole, t ~ 15 us: 120 against 180 us
    predicted), ``subproc`` for MuJoCo x8 (HalfCheetah, t ~ 70 us: 400 against 580 us
    predicted; 272 against 349 us measured) and Atari (t ~ 400 us).
    """
    if num_envs <= 1 or (num_workers is None and default_num_workers() <= 1):
        return "sync"
    workers = num_workers if num_workers is not None else max(1, default_num_workers() - 1)
    in_main = default_in_main(num_envs, workers)
    t = measure_step_time(env_fn)
    return (
        "subproc" if num_envs * t >= AUTO_MIN_SPEEDUP * predicted_step_time(num_envs, t, workers, in_main) else "sync"
    )
