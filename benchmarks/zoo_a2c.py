"""Does rl-baselines3-zoo's published MuJoCo A2C result reproduce on the v5 envs with
Stable-Baselines3 itself? The zoo's a2c.yml MuJoCo entries are ``&mujoco-defaults``: SB3's A2C
with its own defaults (1 env x 5 steps, RMSprop, 64 x 64 tanh) and ``VecNormalize``, 1M steps;
Swimmer sets gamma 0.9999. Its benchmark.md publishes HalfCheetah-v3 3,041 and Swimmer-v3 200.6,
where the results table's rows (Tianshou's settings here) end far lower.

Each seed trains 1M steps; every 100k steps the policy is evaluated deterministically over 10
episodes on a separate env with the training's observation statistics frozen, as the results
table's runs are. Rows append to ``--out`` (JSON lines) and the script resumes: finished seeds
are skipped.

    python benchmarks/zoo_a2c.py --env-name Swimmer-v5 --seeds 1 2 3

Needs the ``[bench]`` extra (stable-baselines3).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.runs import ResultLog, seed_number  # noqa: E402

BUDGET = 1_000_000
EVERY = 100_000
EVAL_EPISODES = 10
#: a2c.yml: ``Swimmer-v3: <<: *mujoco-defaults, gamma: 0.9999``; the others keep SB3's 0.99
GAMMA = {"Swimmer-v5": 0.9999}


def train_and_evaluate(env_id: str, seed: int, log: ResultLog) -> None:
    """One seed's 1M steps, a row per evaluation (``steps``, ``eval_mean``, ``eval_std``)."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    torch.set_num_threads(1)
    gamma = GAMMA.get(env_id, 0.99)

    def envs(offset: int) -> DummyVecEnv:
        return make_vec_env(lambda: gym.make(env_id), n_envs=1, seed=seed + offset, vec_env_cls=DummyVecEnv)

    training = VecNormalize(envs(0), gamma=gamma)
    evaluation = VecNormalize(envs(10_000), training=False, norm_reward=False, gamma=gamma)
    model = A2C("MlpPolicy", training, gamma=gamma, seed=seed, device="cpu")
    start = time.perf_counter()
    for steps in range(EVERY, BUDGET + 1, EVERY):
        model.learn(total_timesteps=EVERY, reset_num_timesteps=False)
        evaluation.obs_rms = training.obs_rms.copy()  # the training statistics, frozen
        mean, std = evaluate_policy(model, evaluation, n_eval_episodes=EVAL_EPISODES, deterministic=True)
        log.add({"env": env_id, "seed": seed, "steps": steps, "eval_mean": float(mean), "eval_std": float(std),
                 "seconds": time.perf_counter() - start})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-name", default="Swimmer-v5", choices=("Swimmer-v5", "HalfCheetah-v5"))
    parser.add_argument("--seeds", type=seed_number, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "zoo_a2c.jsonl"))
    opts = parser.parse_args()
    log = ResultLog(opts.out)
    for seed in opts.seeds:
        if not log.has(env=opts.env_name, seed=seed, steps=BUDGET):  # a seed cut short trains again
            train_and_evaluate(opts.env_name, seed, log)
    print("| env | seed | evaluation at 100k, 200k, ... 1M steps |")
    print("|---|---|---|")
    for seed in opts.seeds:
        rows = [row for row in log.rows if (row["env"], row["seed"]) == (opts.env_name, seed)]
        starts = [i for i, row in enumerate(rows) if row["steps"] == EVERY]
        last = rows[starts[-1] :] if starts else []  # the seed's last run, whole
        print(f"| {opts.env_name} | {seed} | {' / '.join(format(row['eval_mean'], '.1f') for row in last)} |")


if __name__ == "__main__":
    main()
