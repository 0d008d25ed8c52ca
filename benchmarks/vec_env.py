"""Vector-env throughput: random-action env steps per second, ours against gymnasium's.

Every configuration steps the same ``make_env`` pipeline (episode statistics, action
clipping, the Atari wrappers for ALE ids; no normalisation) with the same pre-sampled random
actions, after a warm-up. Each configuration is timed ``--repeats`` times for ``--seconds``
(or ``--steps`` vector steps) and the best window is kept, which filters out other load on a
shared machine. The last column is the ratio to gymnasium's AsyncVectorEnv.

Configurations:
  subproc wN     a2c_ppo SubprocVecEnv, N worker processes, in_main=0 (same-step autoreset)
  subproc wN+mK  a2c_ppo SubprocVecEnv, N worker processes plus K envs stepped by the main
                 process (its default split, default_in_main); w1+m5 is the 2-core default
  in-process     a2c_ppo make_vec_envs(vec_env="sync"): SyncVectorEnv, same-step autoreset
  gym Sync       gymnasium SyncVectorEnv, its defaults (next-step autoreset)
  gym Async      gymnasium AsyncVectorEnv, its defaults (one process per env, shared memory)

    python benchmarks/vec_env.py
    python benchmarks/vec_env.py --envs CartPole-v1 --num-envs 16 --seconds 2
    python benchmarks/vec_env.py --steps 500 --workers 1 2
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gymnasium as gym  # noqa: E402
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv  # noqa: E402

from a2c_ppo.envs.check import check_env_id  # noqa: E402
from a2c_ppo.envs.layout import choose_layout, measure_step_times  # noqa: E402
from a2c_ppo.envs.make import make_env_fn, make_vec_envs  # noqa: E402
from a2c_ppo.envs.subproc import SubprocVecEnv, default_in_main  # noqa: E402

DEFAULT_ENVS = ("CartPole-v1", "HalfCheetah-v5", "ALE/Pong-v5")


def measure(envs: gym.vector.VectorEnv, *, seconds: float, steps: int | None, repeats: int, warmup: int) -> float:
    """Best env steps per second over ``repeats`` timing windows."""
    space = envs.action_space
    space.seed(0)
    actions = [space.sample() for _ in range(64)]
    envs.reset(seed=0)
    for i in range(warmup):
        envs.step(actions[i % 64])
    best = 0.0
    for _ in range(repeats):
        n = 0
        start = time.perf_counter()
        while True:
            envs.step(actions[n % 64])
            n += 1
            elapsed = time.perf_counter() - start
            if (steps is not None and n >= steps) or (steps is None and elapsed >= seconds):
                break
        best = max(best, n * envs.num_envs / elapsed)
    return best


def configurations(env_id: str, num_envs: int, workers: list[int], main_workers: list[int]):
    """(name, constructor) pairs, in table order."""
    fns = [make_env_fn(env_id) for _ in range(num_envs)]
    plain = dict(norm_obs=False, norm_reward=False)
    for w in workers:
        yield f"subproc w{w}", lambda w=w: SubprocVecEnv(fns, num_workers=w, in_main=0)
    for w in main_workers:
        k = default_in_main(num_envs, w)
        yield (
            f"subproc w{w}+m{k}",
            lambda w=w: make_vec_envs(env_id, num_envs, vec_env="subproc", num_workers=w, **plain),
        )
    yield "in-process", lambda: make_vec_envs(env_id, num_envs, vec_env="sync", **plain)
    yield "gym Sync", lambda: SyncVectorEnv(fns)
    yield "gym Async", lambda: AsyncVectorEnv(fns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS), help="env ids (default: %(default)s)")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="SubprocVecEnv worker counts")
    parser.add_argument(
        "--main-workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="worker counts for SubprocVecEnv with a main-process share",
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timing window")
    parser.add_argument("--steps", type=int, default=None, help="vector steps per window instead of --seconds")
    parser.add_argument("--repeats", type=int, default=3, help="timing windows per configuration; the best counts")
    parser.add_argument("--warmup", type=int, default=20, help="untimed vector steps first")
    opts = parser.parse_args()

    for env_id in opts.envs:
        check_env_id(env_id)
    print(
        f"# {datetime.date.today()}  {platform.platform()}  python {platform.python_version()}  "
        f"gymnasium {gym.__version__}  cpus {os.cpu_count()}  num_envs {opts.num_envs}  "
        f"load average {os.getloadavg()[0]:.2f} (other processes distort multi-process timings)",
        flush=True,
    )
    rows = []
    for env_id in opts.envs:
        results: dict[str, float] = {}
        for name, make in configurations(env_id, opts.num_envs, opts.workers, opts.main_workers):
            envs = make()
            try:
                results[name] = measure(
                    envs, seconds=opts.seconds, steps=opts.steps, repeats=opts.repeats, warmup=opts.warmup
                )
            finally:
                envs.close()
            print(f"  {env_id:<16} {name:<14} {results[name]:>10,.0f} steps/s", file=sys.stderr, flush=True)
        step_times = functools.partial(measure_step_times, make_env_fn(env_id))
        auto = choose_layout(opts.num_envs, vec_env="auto", num_workers=None, overlap="off", step_times=step_times).kind
        base = results["gym Async"]
        for name, sps in results.items():
            rows.append((env_id, name, sps, sps / base, auto))

    print()
    print(f"| env (x{opts.num_envs}) | vector env | env steps/s | vs gym Async |")
    print("| --- | --- | ---: | ---: |")
    for env_id, name, sps, ratio, _ in rows:
        print(f"| {env_id} | {name} | {sps:,.0f} | {ratio:.2f}x |")
    print()
    for env_id in opts.envs:
        auto = next(r[4] for r in rows if r[0] == env_id)
        print(f"vec_env='auto' picks {auto!r} for {env_id} x{opts.num_envs}")


if __name__ == "__main__":
    main()
