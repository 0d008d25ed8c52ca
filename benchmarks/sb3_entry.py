"""Stable-Baselines3 trained with an env entry's settings: where a row of the results table
(``benchmarks/results_table.py``) falls short of the zoo's published number, does SB3 itself
reach it with the same settings, env version and seeds? If it does not either, the shortfall
is the setting's (or the published run's luck), not this framework's.

The settings are what ``python main.py --env-name ID --algo ALGO --seed S`` would train (the
env's entry, ``--show-settings``), given to SB3's PPO or A2C as its own arguments
(``time_to_result.sb3_arguments``), with SB3's ``VecNormalize`` where the entry normalises.
After the entry's budget, the policy is evaluated deterministically over 10 episodes with
the normalisation statistics frozen, as the table's runs are. Results append to ``--out``
(JSON lines) and the script resumes: finished seeds are skipped.

    python benchmarks/sb3_entry.py --env-name MountainCarContinuous-v0 --seeds 1 2 3 4 5 6 7 8
    python benchmarks/sb3_entry.py --env-name LunarLander-v3 --algo a2c
    python benchmarks/sb3_entry.py --report-only

Needs the ``[bench]`` extra (stable-baselines3).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.runs import ResultLog  # noqa: E402
from benchmarks.time_to_result import sb3_arguments  # noqa: E402

EVAL_EPISODES = 10


def entry_settings(env_id: str, algo: str, seed: int) -> dict:
    """Our resolved settings for ``env_id`` and ``algo`` (what main.py would train)."""
    from a2c_ppo.arguments import resolve

    return resolve(["--env-name", env_id, "--algo", algo, "--seed", str(seed)]).config.to_dict()


def train_and_evaluate(env_id: str, algo: str, seed: int) -> dict:
    """SB3 with the entry's settings for its budget; the final deterministic evaluation."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    config = entry_settings(env_id, algo, seed)
    torch.set_num_threads(1)
    envs = make_vec_env(lambda: gym.make(env_id), n_envs=config["num_processes"], seed=seed, vec_env_cls=DummyVecEnv)
    if config["norm_obs"] or config["norm_reward"]:
        envs = VecNormalize(envs, norm_obs=config["norm_obs"], norm_reward=config["norm_reward"], gamma=config["gamma"])
    model = (A2C if algo == "a2c" else PPO)(env=envs, seed=seed, device="cpu", **sb3_arguments(config))
    start = time.perf_counter()
    model.learn(total_timesteps=config["num_env_steps"])
    seconds = time.perf_counter() - start
    if isinstance(envs, VecNormalize):  # evaluate on true rewards with the statistics frozen
        envs.training, envs.norm_reward = False, False
    mean, std = evaluate_policy(model, envs, n_eval_episodes=EVAL_EPISODES, deterministic=True)
    return {"env": env_id, "algo": algo, "seed": seed, "env_steps": config["num_env_steps"],
            "eval_mean": float(mean), "eval_std": float(std), "seconds": seconds}  # fmt: skip


def report(results: list[dict]) -> None:
    print("| env | algo | seeds | SB3: final eval return per seed | mean ± std over seeds |")
    print("|---|---|---|---|---:|")
    for env_id, algo in sorted({(r["env"], r["algo"]) for r in results}):
        rows = sorted((r for r in results if r["env"] == env_id and r["algo"] == algo), key=lambda r: r["seed"])
        finals = [r["eval_mean"] for r in rows]
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        per_seed = " / ".join(f"{v:.1f}" for v in finals)
        print(f"| {env_id} | {algo} | {' '.join(str(r['seed']) for r in rows)} | {per_seed} | "
              f"{statistics.fmean(finals):.1f} ± {spread:.1f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-name", default="MountainCarContinuous-v0")
    parser.add_argument("--algo", default="ppo", choices=("ppo", "a2c"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "sb3_entry.jsonl"))
    parser.add_argument("--report-only", action="store_true")
    opts = parser.parse_args()
    log = ResultLog(opts.out)
    if not opts.report_only:
        for seed in opts.seeds:
            if not log.has(env=opts.env_name, algo=opts.algo, seed=seed):
                log.add(train_and_evaluate(opts.env_name, opts.algo, seed))
    report(log.rows)


if __name__ == "__main__":
    main()
