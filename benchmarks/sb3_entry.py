"""Stable-Baselines3 trained with an env entry's settings: where a row of the results table
(``benchmarks/results_table.py``) falls short of the zoo's published number, does SB3 itself
reach it with the same settings, env version and seeds? If it does not either, the shortfall
is the setting's (or the published run's luck), not this framework's.

The settings are what ``python main.py --env-name ID --algo ALGO --seed S`` would train (the
env's entry, ``--show-settings``), given to SB3's PPO or A2C as its own arguments
(``time_to_result.sb3_arguments``), with SB3's ``VecNormalize`` where the entry normalises.
After the entry's budget, the policy is evaluated deterministically over 10 episodes with
the normalisation statistics frozen, as the table's runs are. Results append to ``--out``
(JSON lines, each with the entry's settings) and the script resumes: finished seeds are skipped.
The results at the entries' current settings are summarised per env and algorithm and merged into
``docs/sb3_results.json``, the README table's "Stable-Baselines3 with these settings" column
(``results_table.py --readme``).

    python benchmarks/sb3_entry.py --env-name MountainCarContinuous-v0 --seeds 1 2 3 4 5 6 7 8
    python benchmarks/sb3_entry.py --env-name LunarLander-v3 --algo a2c
    python benchmarks/sb3_entry.py --report-only

Needs the ``[bench]`` extra (stable-baselines3).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from a2c_ppo.presets import ENV_ENTRIES  # noqa: E402
from benchmarks import results_table  # noqa: E402
from benchmarks.runs import ResultLog, seed_number  # noqa: E402
from benchmarks.time_to_result import sb3_arguments  # noqa: E402

EVAL_EPISODES = 10


def entry_settings(env_id: str, algo: str, seed: int) -> dict:
    """Our resolved settings for ``env_id`` and ``algo`` (what main.py would train)."""
    from a2c_ppo.arguments import resolve

    return resolve(["--env-name", env_id, "--algo", algo, "--seed", str(seed)]).config.to_dict()


def sb3_settings(env_id: str, algo: str) -> dict:
    """The entry's settings as SB3 trains them (kept with its result, as ours are)."""
    return results_table.as_sb3_trains(results_table.entry_settings(env_id, algo), algo)


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
    env_kwargs = json.loads(config["env_kwargs"])
    envs = make_vec_env(
        lambda: gym.make(env_id, **env_kwargs), n_envs=config["num_processes"], seed=seed, vec_env_cls=DummyVecEnv
    )
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
            "eval_mean": float(mean), "eval_std": float(std), "seconds": seconds,
            "settings": sb3_settings(env_id, algo)}  # fmt: skip


def report(summary: dict[str, dict[str, dict]]) -> None:
    print("| env | algo | seeds | SB3: final eval return per seed | mean ± std over seeds |")
    print("|---|---|---|---|---:|")
    for env_id, by_algo in summary.items():
        for algo, s in by_algo.items():
            per_seed = " / ".join(f"{v:.1f}" for v in s["per_seed"])
            print(f"| {env_id} | {algo} | {' '.join(map(str, s['seeds']))} | {per_seed} | "
                  f"{s['eval_mean']:.1f} ± {s['eval_std']:.1f} |")  # fmt: skip


def current_rows(results: list[dict], env_id: str, algo: str) -> list[dict]:
    """The runs of ``env_id`` and ``algo`` at the entry's current settings and full budget, by seed."""
    steps, _ = results_table.budget(env_id, algo)
    return sorted((r for r in results if r["env"] == env_id and r["algo"] == algo and r["env_steps"] == steps
                   and not results_table.sb3_stale_settings(r.get("settings", {}), env_id, algo)),
                  key=lambda r: r["seed"])  # fmt: skip


def summaries(results: list[dict]) -> dict[str, dict[str, dict]]:
    """By env and algorithm, the results at the entry's current settings and full budget: the
    seeds, each seed's final evaluation, and their mean and std over seeds."""
    out: dict[str, dict[str, dict]] = {}
    for env_id, algo in sorted({(r["env"], r["algo"]) for r in results}):
        steps, _ = results_table.budget(env_id, algo)
        rows = current_rows(results, env_id, algo)
        finals = [r["eval_mean"] for r in rows]
        if finals:
            out.setdefault(env_id, {})[algo] = {
                "seeds": [r["seed"] for r in rows], "per_seed": finals, "eval_mean": statistics.fmean(finals),
                "eval_std": statistics.pstdev(finals),  # as results_table: np.std
                "env_steps": steps,
                "settings": sb3_settings(env_id, algo)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-name", default="MountainCarContinuous-v0", choices=sorted(ENV_ENTRIES), metavar="ID")
    parser.add_argument("--algo", default="ppo", choices=("ppo", "a2c"))
    parser.add_argument("--seeds", type=seed_number, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "sb3_entry.jsonl"))
    parser.add_argument(
        "--summary",
        default=results_table.DOCS_SB3,
        help="where the summaries are merged (default: docs/sb3_results.json, in the repository)",
    )
    parser.add_argument("--report-only", action="store_true")
    opts = parser.parse_args()
    log = ResultLog(opts.out)
    if not opts.report_only:
        done = {r["seed"] for r in current_rows(log.rows, opts.env_name, opts.algo)}
        for seed in opts.seeds:
            if seed not in done:  # a run at earlier settings or budget is run again
                log.add(train_and_evaluate(opts.env_name, opts.algo, seed))
    summary = summaries(log.rows)
    report(summary)
    # merged per env and algorithm: a results log started afresh (a new clone) keeps the others
    merged = results_table.read_json(opts.summary)
    for env_id, by_algo in summary.items():
        merged.setdefault(env_id, {}).update(by_algo)
    results_table.write_json(opts.summary, merged)


if __name__ == "__main__":
    main()
