"""GAIL from the project's own expert: train a PPO expert, record its episodes with
``enjoy.py --record-trajectories``, then train with ``--gail`` on K of them for several seeds
and report how much of the expert's return the imitation reaches (the env's true returns;
the learner never sees them).

    python benchmarks/gail.py                                   # CartPole-v1: 10 episodes, 300k steps, 3 seeds
    python benchmarks/gail.py --env-name Hopper-v5 --expert-steps 1000000 --episodes 16 \\
        --trajectories 4 16 --gail-steps 1000000 --seeds 1 2
    python benchmarks/gail.py ... -- --num-processes 8           # flags after -- go to the GAIL runs
    python benchmarks/gail.py --variant absorbing -- --gail-absorbing   # the same expert, runs of their own
    python benchmarks/gail.py --env-name Hopper-v5 --expert-steps 1000000 --expert-flags "--preset mujoco" \
        --episodes 16 --trajectories 4 --gail-steps 1000000 -- --preset mujoco --gail-reward positive

Everything lives under ``--out`` (default ``benchmarks/results/gail/ENV``) and resumes: run
the same command again after an interruption. Prints a Markdown table and draws
``OUT/curves.png`` (the GAIL runs' training returns; ``[plot]``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from a2c_ppo.paths import RUN_CHECKPOINT, safe_name  # noqa: E402
from a2c_ppo.trajectories import load_trajectories  # noqa: E402
from benchmarks.runs import column, first_reaching, positive_int, seed_number, train, wall_time  # noqa: E402

RETURN = "charts/episodic_return"


def record(expert_run: str, path: str, episodes: int) -> None:
    """``episodes`` deterministic episodes of the expert, written to ``path`` (once)."""
    if os.path.isfile(path):
        return
    argv = [sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", os.path.join(expert_run, RUN_CHECKPOINT),
            "--num-episodes", str(episodes), "--record-trajectories", path]  # fmt: skip
    subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-name", default="CartPole-v1")
    parser.add_argument("--algo", default="ppo", choices=("ppo", "a2c"), help="the GAIL runs' algorithm")
    parser.add_argument("--expert-steps", type=positive_int, default=100_000, help="the PPO expert's budget")
    parser.add_argument("--expert-flags", default="", help="extra main.py flags for the expert, e.g. '--preset mujoco'")
    parser.add_argument("--episodes", type=positive_int, default=10, help="expert episodes recorded")
    parser.add_argument(
        "--trajectories", type=positive_int, nargs="+", help="episodes each GAIL run uses (default: all)"
    )
    parser.add_argument("--gail-steps", type=positive_int, default=300_000)
    parser.add_argument("--seeds", type=seed_number, nargs="+", default=[1, 2, 3])
    parser.add_argument("--threshold", type=float, help="report the steps to this training return (CartPole: 475)")
    parser.add_argument("--out", help="default: benchmarks/results/gail/ENV")
    parser.add_argument("--variant", default="", help="a name for these GAIL flags: their runs' folders end with it")
    parser.add_argument("gail_flags", nargs="*", help="extra main.py flags for the GAIL runs (after --)")
    opts = parser.parse_args()
    if opts.trajectories and max(opts.trajectories) > opts.episodes:
        parser.error(f"--trajectories {max(opts.trajectories)} is more than the {opts.episodes} --episodes recorded")
    out = os.path.abspath(opts.out or os.path.join(ROOT, "benchmarks", "results", "gail", safe_name(opts.env_name)))
    threshold = opts.threshold if opts.threshold is not None else (475.0 if opts.env_name == "CartPole-v1" else None)

    expert_flags = ["--env-name", opts.env_name, "--num-env-steps", str(opts.expert_steps), "--log-interval", "1",
                    *opts.expert_flags.split()]  # fmt: skip
    expert_run = train(os.path.join(out, "expert"), expert_flags, "expert")
    if expert_run is None:
        raise SystemExit("the expert's run failed; see its console.log")
    experts = os.path.join(out, f"expert-{opts.episodes}.npz")
    record(expert_run, experts, opts.episodes)
    expert_return = float(load_trajectories(experts).returns.mean())

    rows, curves = [], []
    for k in opts.trajectories or [opts.episodes]:
        for seed in opts.seeds:
            variant = f"-{opts.variant}" if opts.variant else ""
            folder = os.path.join(out, f"gail-{opts.algo}-{k}traj{variant}", f"seed{seed}")
            flags = ["--env-name", opts.env_name, "--algo", opts.algo, "--seed", str(seed), "--gail",
                     "--gail-experts", experts, "--gail-trajectories", str(k), "--num-env-steps",
                     str(opts.gail_steps), "--log-interval", "1", *opts.gail_flags]  # fmt: skip
            run_dir = train(folder, flags, f"GAIL {k} trajectories, seed {seed}")
            if run_dir is None:
                continue
            returns = column(run_dir, RETURN)
            final = returns[-1][1] if returns else float("nan")
            reached = first_reaching(run_dir, RETURN, threshold) if threshold is not None else None
            # does it stay there? the lowest training return logged after reaching the threshold
            after = [value for steps, value in returns if reached is not None and steps >= reached]
            rows.append((k, seed, final, reached, min(after) if after else None, wall_time(folder)))
            curves.append(run_dir)

    print(f"\nGAIL ({opts.algo}; {' '.join(opts.gail_flags) or 'defaults'}) on {opts.env_name}, "
          f"{opts.gail_steps:,} env steps; expert: PPO, "
          f"{opts.expert_steps:,} steps, mean return of its {opts.episodes} recorded episodes "
          f"{expert_return:.1f}\n")  # fmt: skip
    reach = f"steps to {threshold:g}" if threshold is not None else "-"
    print(f"| expert episodes | seed | final training return (last 10 ep.) | fraction of the expert | {reach} "
          "| lowest after | wall s |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for k, seed, final, reached, lowest, wall in rows:
        low = "-" if lowest is None else f"{lowest:.1f}"
        print(f"| {k} | {seed} | {final:.1f} | {final / expert_return:.2f} | {reached or '-'} | {low} | {wall:.0f} |")
    for k in sorted({row[0] for row in rows}):
        finals = [row[2] for row in rows if row[0] == k]
        mean = float(np.mean(finals))
        print(f"\n{k} episodes: mean final return {mean:.1f} ({mean / expert_return:.2f} of the expert)")
    if curves:
        plot = [sys.executable, "-m", "a2c_ppo.plot", *curves, "--out", os.path.join(out, "curves.png")]
        subprocess.run(plot, cwd=ROOT, check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
