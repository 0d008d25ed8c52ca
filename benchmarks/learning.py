"""Learning-quality benchmark: train with main.py's defaults for several seeds.

Prints, per seed, the env steps at which the mean true return of the last 10 training
episodes first reached the threshold, the final mean return, and the wall time.

    python benchmarks/learning.py                       # PPO, CartPole-v1, 5 seeds
    python benchmarks/learning.py --algo a2c --num-env-steps 500000
    python benchmarks/learning.py -- --lr 5e-4          # flags after -- go to main.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from a2c_ppo.arguments import parse_args  # noqa: E402
from a2c_ppo.config import ALGOS  # noqa: E402
from a2c_ppo.session import run  # noqa: E402
from benchmarks.runs import positive_int, seed_number  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="ppo", choices=ALGOS)
    parser.add_argument("--env-name", default="CartPole-v1")
    parser.add_argument("--seeds", type=positive_int, default=5,
                        help="how many seeds (a count, not a list): FIRST .. FIRST + N - 1")  # fmt: skip
    parser.add_argument("--first-seed", type=seed_number, default=1, help="the first seed (default 1)")
    parser.add_argument("--num-env-steps", type=positive_int, default=100_000)
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("main_flags", nargs="*", help="extra main.py flags (after --)")
    opts = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(opts.first_seed, opts.first_seed + opts.seeds):
            argv = [
                "--algo",
                opts.algo,
                "--env-name",
                opts.env_name,
                "--seed",
                str(seed),
                "--num-env-steps",
                str(opts.num_env_steps),
                "--log-dir",
                os.path.join(tmp, "runs"),
                "--save-dir",
                os.path.join(tmp, f"models{seed}"),
                "--log-interval",
                "1000000",
                *opts.main_flags,
            ]
            start = time.monotonic()
            result = run(parse_args(argv))
            wall = time.monotonic() - start
            reached = next((steps for steps, ret in result.history if ret >= opts.threshold), None)
            final = result.history[-1][1] if result.history else float("nan")
            rows.append((seed, reached, final, wall))

    print(f"\n{opts.algo} on {opts.env_name}, {opts.num_env_steps} env steps, threshold {opts.threshold:g}")
    print(f"{'seed':>4} | {'steps to threshold':>18} | {'final mean return (last 10 ep)':>30} | {'wall s':>6}")
    print("-" * 68)
    for seed, reached, final, wall in rows:
        print(f"{seed:>4} | {reached if reached is not None else 'not reached':>18} | {final:>30.1f} | {wall:>6.1f}")
    solved = sum(reached is not None for _, reached, _, _ in rows)
    print(f"solved {solved}/{len(rows)} seeds")


if __name__ == "__main__":
    main()
