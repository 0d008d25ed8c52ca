"""PPO's two objectives side by side (Schulman et al. 2017, Table 1: on its MuJoCo suite the
clipped surrogate with eps = 0.2 scored 0.82, the adaptive KL penalty with d_targ = 0.01 0.74).

Per env, seed and variant (``--ppo-variant clip`` / ``kl-penalty``) one run with the mujoco
preset (the paper's settings: 1 env x 2048 steps, 10 epochs of 32 minibatches, Adam 3e-4) and
a final deterministic evaluation every tenth of the budget. Resumable (``benchmarks/runs.py``).

    python benchmarks/kl_vs_clip.py                           # HalfCheetah-v5 and Hopper-v5, 2 seeds, 1M steps
    python benchmarks/kl_vs_clip.py --envs Hopper-v5 --seeds 1 --steps 300000

For CartPole, ``benchmarks/learning.py --seeds 20 -- --ppo-variant kl-penalty`` counts steps to 475.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from a2c_ppo.paths import safe_name  # noqa: E402
from benchmarks.runs import last_logged, markdown_table, train, wall_time  # noqa: E402

VARIANTS = ("clip", "kl-penalty")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "Hopper-v5"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "kl_vs_clip"))
    opts = parser.parse_args()
    updates = opts.steps // 2048
    rows = []
    for env_id in opts.envs:
        for seed in opts.seeds:
            for variant in VARIANTS:  # interleaved: the machine's noise falls on both alike
                folder = os.path.join(opts.out, safe_name(env_id), variant, f"seed{seed}")
                flags = ["--env-name", env_id, "--preset", "mujoco", "--ppo-variant", variant, "--seed", str(seed),
                         "--num-env-steps", str(opts.steps), "--eval-interval", str(max(updates // 10, 1))]  # fmt: skip
                run_dir = train(folder, flags, f"{env_id} {variant} seed {seed}")
                if run_dir is None:
                    continue
                final = [last_logged(run_dir, name) for name in ("eval/mean_return", "charts/episodic_return")]
                rows.append((env_id, variant, seed, *final, wall_time(folder)))
    columns = ["env", "variant", "seed", "final evaluation return", "last 10 training episodes", "wall s"]
    text = [[env_id, variant, str(seed), f"{final_eval:,.0f}", f"{final_train:,.0f}", f"{wall:.0f}"]
            for env_id, variant, seed, final_eval, final_train, wall in rows]  # fmt: skip
    print(markdown_table(f"\nPPO clip vs KL penalty, mujoco preset, {opts.steps:,} env steps", columns, text))
    for env_id in opts.envs:
        means = {v: [r[3] for r in rows if r[0] == env_id and r[1] == v] for v in VARIANTS}
        text = ", ".join(f"{v} {statistics.fmean(m):,.0f}" for v, m in means.items() if m)
        print(f"\n{env_id}: mean final evaluation return {text}")


if __name__ == "__main__":
    main()
