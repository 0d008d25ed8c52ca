"""Reproduce PPO's published MuJoCo results with the ``mujoco`` preset.

Runs ``main.py --env-name ENV --seed S`` (preset ``mujoco``: 1 env x 2048 steps, 10 epochs x
32 minibatches, lr 3e-4 decayed, lambda 0.95, observation and return normalisation, 1M
steps) for every env and seed, ``--parallel`` at a time, into ``--out``; then reports per run
and per env the mean true return of the last 10 training episodes (progress.csv) and of 10
deterministic evaluation episodes of the final checkpoint (``enjoy.py``), beside the
published numbers. ``--report-only`` summarises the runs already in ``--out``.

Example: ``python benchmarks/mujoco_reproduction.py --seeds 1 2 --parallel 2 --out mujoco-runs`` (about
an hour per env on 2 cores), then ``python -m a2c_ppo.plot mujoco-runs/runs --out curves.png``.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
#: PPO at 1M steps: ikostrikov/pytorch-a2c-ppo-acktr (MuJoCo v2) and CleanRL (v4).
PUBLISHED = {
    "HalfCheetah-v5": (3100, 1440),
    "Hopper-v5": (2270, 2380),
    "Walker2d-v5": (3600, 2290),
}


def model_dir(out: str, env: str, seed: int) -> str:
    return os.path.join(out, "models", f"{env}-{seed}")


def train(out: str, env: str, seed: int, steps: int | None) -> None:
    log = os.path.join(out, "logs", f"{env}-{seed}.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    argv = [sys.executable, os.path.join(ROOT, "main.py"), "--env-name", env, "--seed", str(seed), "--preset",
            "mujoco", "--log-dir", os.path.join(out, "runs"), "--save-dir", model_dir(out, env, seed)]  # fmt: skip
    if steps is not None:
        argv += ["--num-env-steps", str(steps)]
    with open(log, "w") as f:
        subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=ROOT)


def last_training_return(out: str, env: str, seed: int) -> float:
    (path,) = glob.glob(os.path.join(out, "runs", f"{env}__ppo__seed{seed}__*", "progress.csv"))
    rows = [row for row in csv.DictReader(open(path)) if row.get("charts/episodic_return")]
    return float(rows[-1]["charts/episodic_return"])


def evaluation_return(out: str, env: str, seed: int) -> float:
    checkpoint = os.path.join(model_dir(out, env, seed), "ppo", f"{env}.pt")
    argv = [sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", checkpoint, "--num-episodes", "10"]
    text = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    match = re.search(r"mean return over 10 episodes: (-?[\d.]+)", text)
    assert match, text
    return float(match.group(1))


def report(out: str, envs: list[str], seeds: list[int]) -> None:
    print(f"{'env':<15} | {'seed':>4} | {'last 10 train':>13} | {'10 eval (det.)':>14}")
    summary = []
    for env in envs:
        trains, evals = [], []
        for seed in seeds:
            trains.append(last_training_return(out, env, seed))
            evals.append(evaluation_return(out, env, seed))
            print(f"{env:<15} | {seed:>4} | {trains[-1]:>13.0f} | {evals[-1]:>14.0f}", flush=True)
        summary.append((env, sum(trains) / len(trains), sum(evals) / len(evals)))
    print(f"\n{'env':<15} | {'mean train':>10} | {'mean eval':>9} | {'ikostrikov (v2)':>15} | {'CleanRL (v4)':>12}")
    for env, train_mean, eval_mean in summary:
        ikostrikov, cleanrl = PUBLISHED[env]
        print(f"{env:<15} | {train_mean:>10.0f} | {eval_mean:>9.0f} | {ikostrikov:>15} | {cleanrl:>12}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--steps", type=int, default=None, help="env steps per run (default: the preset's 1M)")
    parser.add_argument("--out", default="mujoco-runs", help="folder for runs, checkpoints and logs")
    parser.add_argument("--report-only", action="store_true", help="summarise the runs already in --out")
    opts = parser.parse_args()
    if not opts.report_only:
        jobs = [(env, seed) for env in opts.envs for seed in opts.seeds]
        with ThreadPoolExecutor(opts.parallel) as pool:
            for future in [pool.submit(train, opts.out, env, seed, opts.steps) for env, seed in jobs]:
                future.result()
    report(opts.out, opts.envs, opts.seeds)


if __name__ == "__main__":
    main()
