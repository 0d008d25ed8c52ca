"""``--norm-value``'s statistics side by side: the std over the rollouts' bootstrapped returns
(``--value-norm-stats returns``, Tianshou's ``rew_norm``) against the std over each env's running
discounted sum of rewards (``rewards``), with each env's A2C entry otherwise (Tianshou's MuJoCo
A2C settings: 16 envs x 5 steps, so the bootstrap values weigh heavily in every return).

Per env, seed and statistic one run, interleaved; the table gives the final deterministic
evaluation, the last 10 training episodes (the stochastic policy) and the largest ``sigma``
logged (``charts/value_scale``: with ``returns`` a critic's error feeds back into it).
Resumable (``benchmarks/runs.py``).

    python benchmarks/value_norm_stats.py                               # Hopper-v5, seeds 1-3, 160k steps
    python benchmarks/value_norm_stats.py --envs InvertedDoublePendulum-v5 --steps 1000000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from a2c_ppo.paths import safe_name  # noqa: E402
from benchmarks.runs import column, last_logged, markdown_table, train  # noqa: E402

STATISTICS = ("returns", "rewards")
BATCH = 80  # the A2C entries' 16 envs x 5 steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Hopper-v5"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=160_000)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "value_norm_stats"))
    opts = parser.parse_args()
    rows = []
    for env_id in opts.envs:
        for seed in opts.seeds:
            for stats in STATISTICS:  # interleaved: the machine's noise falls on both alike
                folder = os.path.join(opts.out, safe_name(env_id), stats, f"seed{seed}")
                flags = ["--env-name", env_id, "--algo", "a2c", "--norm-value", "--value-norm-stats", stats,
                         "--seed", str(seed), "--num-env-steps", str(opts.steps),
                         "--eval-interval", str(opts.steps // BATCH)]  # fmt: skip
                run_dir = train(folder, flags, f"{env_id} {stats} seed {seed}")
                if run_dir is None:
                    continue
                sigma = max((value for _, value in column(run_dir, "charts/value_scale")), default=float("nan"))
                final = [last_logged(run_dir, name) for name in ("eval/mean_return", "charts/episodic_return")]
                rows.append((env_id, stats, seed, *final, sigma))
    columns = ["env", "statistics", "seed", "final evaluation return", "last 10 training episodes", "largest sigma"]
    text = [[env_id, stats, str(seed), *(f"{value:,.1f}" for value in values)] for env_id, stats, seed, *values in rows]
    print(markdown_table(f"\n--norm-value's statistics, A2C entries, {opts.steps:,} env steps", columns, text))
    for env_id in opts.envs:
        for stats in STATISTICS:
            mine = [r for r in rows if r[0] == env_id and r[1] == stats]
            if mine:
                evals, trains = [r[3] for r in mine], [r[4] for r in mine]
                print(f"\n{env_id} {stats}: mean final evaluation {statistics.fmean(evals):,.1f}, "
                      f"mean training return {statistics.fmean(trains):,.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
