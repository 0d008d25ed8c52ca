"""Learning on the spaces the framework added: discrete observations, action masks, a Dict of
an image and a discrete part, and channels-last images, next to Stable-Baselines3 with the
same settings where it can run the task.

| workload | ours | Stable-Baselines3 |
|---|---|---|
| FrozenLake-v1 (slippery): success rate | one-hot observations | the same settings |
| Taxi-v4, with and without masks | `--action-masks on` / `off` | sb3-contrib's MaskablePPO / PPO |
| MiniGrid-DoorKey-5x5 | Dict: small CNN on the 7x7 image + one-hot direction | the zoo's way: FlatObsWrapper |
| CarRacing-v3, a short budget | the env's entry (gSDE, Nature CNN on 96x96 RGB) | - (the zoo trains other frames) |

Each run reports the mean return of a final deterministic evaluation (``EVAL_EPISODES``
episodes; FrozenLake's is its success rate) and the env steps at which the mean true return of
the last 10 training episodes first reached the workload's threshold. Our runs are resumable
(``benchmarks/runs.py``); results append to ``OUT/results.jsonl`` and finished runs are skipped.

    python benchmarks/spaces.py                         # every workload, 3 seeds (CarRacing: 1)
    python benchmarks/spaces.py --workloads taxi --seeds 1 2
    python benchmarks/spaces.py --report-only
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.runs import ResultLog, first_reaching, positive_float, seed_number, train, wall_time  # noqa: E402
from benchmarks.time_to_result import sb3_arguments  # noqa: E402

EVAL_EPISODES = 100
RETURN = "charts/episodic_return"


@dataclass(frozen=True)
class Workload:
    env_id: str  # ours
    budget: int
    threshold: float
    flags: tuple[str, ...] = ()  # our settings beyond the env's entry or preset
    variants: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"": ()})  # label -> extra flags
    sb3: dict[str, str] = field(default_factory=dict)  # label -> SB3 class ("PPO", "MaskablePPO")
    sb3_env: str | None = None  # the env SB3 trains (default: env_id)
    seeds: tuple[int, ...] = (1, 2, 3)


# MiniGrid: rl-baselines3-zoo ppo.yml MiniGrid-DoorKey-5x5-v0 (8 envs x 128 steps, batch 64,
# 10 epochs, lr 2.5e-4, gae 0.95, gamma 0.99, entropy 0, 1e5 steps, normalize).
DOORKEY = ("--num-processes", "8", "--num-steps", "128", "--num-mini-batch", "16", "--ppo-epoch", "10",
           "--lr", "2.5e-4", "--gamma", "0.99", "--gae-lambda", "0.95", "--entropy-coef", "0",
           "--no-use-linear-lr-decay")  # fmt: skip

WORKLOADS = {
    "frozenlake": Workload("FrozenLake-v1", 200_000, 0.7, sb3={"": "PPO"}),
    "taxi": Workload("Taxi-v4", 500_000, 7.0, ("--entropy-coef", "0.01"),
                     variants={"masks": ("--action-masks", "on"), "no masks": ("--action-masks", "off")},
                     sb3={"masks": "MaskablePPO", "no masks": "PPO"}),
    "minigrid": Workload("benchmarks.minigrid_env:doorkey_5x5", 100_000, 0.9, DOORKEY, sb3={"": "PPO"},
                         sb3_env="benchmarks.minigrid_env:doorkey_5x5_flat"),
    "carracing": Workload("CarRacing-v3", 150_000, 0.0, seeds=(1,)),
}  # fmt: skip


def our_run(out: str, name: str, workload: Workload, label: str, seed: int) -> dict:
    """Train (or resume) our run and evaluate it."""
    import a2c_ppo

    folder = os.path.join(out, name, label.replace(" ", "-") or "ours", f"seed{seed}")
    flags = ["--env-name", workload.env_id, "--seed", str(seed), "--num-env-steps", str(workload.budget),
             "--log-interval", "1", *workload.flags, *workload.variants[label]]  # fmt: skip
    run_dir = train(folder, flags, f"{name} {label} seed {seed}")
    if run_dir is None:
        return {"eval": None, "steps": None, "seconds": wall_time(folder)}
    agent = a2c_ppo.load(os.path.join(run_dir, "checkpoint.pt"), trust_checkpoint=True)
    episodes = EVAL_EPISODES if name != "carracing" else 5
    returns = agent.evaluate(episodes=episodes, seed=10_000 + seed)
    return {"eval": statistics.fmean(returns), "steps": first_reaching(run_dir, RETURN, workload.threshold),
            "seconds": wall_time(folder)}  # fmt: skip


def sb3_worker(spec: dict) -> None:
    """SB3 (or sb3-contrib's MaskablePPO) with our resolved settings; prints the result."""
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from a2c_ppo.envs.make import load_entry_point

    config, env_id, threshold = spec["config"], spec["env_id"], spec["threshold"]
    torch.set_num_threads(1)
    env_kwargs = json.loads(config["env_kwargs"])
    entry_point = load_entry_point(env_id)
    if entry_point is not None:
        factory = functools.partial(entry_point, **env_kwargs)
    else:
        factory = functools.partial(gym.make, env_id, **env_kwargs)
    if spec["algo"] == "MaskablePPO":  # sb3-contrib reads masks from an action_masks() method
        from sb3_contrib.common.wrappers import ActionMasker

        plain = factory
        factory = lambda: ActionMasker(plain(), lambda env: env.unwrapped.action_mask(env.unwrapped.s))  # noqa: E731
    envs = make_vec_env(factory, n_envs=config["num_processes"], seed=config["seed"], vec_env_cls=DummyVecEnv)
    if config["norm_obs"] or config["norm_reward"]:
        envs = VecNormalize(envs, norm_obs=config["norm_obs"], norm_reward=config["norm_reward"], gamma=config["gamma"])
    reached: list[int] = []

    class FirstReaching(BaseCallback):
        def _on_step(self) -> bool:
            returns = [info["r"] for info in list(self.model.ep_info_buffer)[-10:]]
            if not reached and len(returns) == 10 and np.mean(returns) >= threshold:
                reached.append(self.num_timesteps)
            return True

    if spec["algo"] == "MaskablePPO":
        from sb3_contrib import MaskablePPO as Algo
        from sb3_contrib.common.maskable.evaluation import evaluate_policy
    else:
        from stable_baselines3 import PPO as Algo  # type: ignore[assignment]
        from stable_baselines3.common.evaluation import evaluate_policy  # type: ignore[assignment]
    arguments = sb3_arguments(config)
    if spec["algo"] == "MaskablePPO":  # discrete actions only: it has no gSDE arguments
        del arguments["use_sde"], arguments["sde_sample_freq"], arguments["policy_kwargs"]["log_std_init"]
    model = Algo(env=envs, seed=config["seed"], device="cpu", **arguments)
    start = time.time()
    model.learn(total_timesteps=spec["budget"], callback=FirstReaching())
    seconds = time.time() - start
    if isinstance(envs, VecNormalize):
        envs.training, envs.norm_reward = False, False
    mean, _ = evaluate_policy(model, envs, n_eval_episodes=EVAL_EPISODES, deterministic=True)
    print(json.dumps({"eval": float(mean), "steps": reached[0] if reached else None, "seconds": seconds}))


def sb3_run(workload: Workload, label: str, seed: int) -> dict:
    from a2c_ppo.arguments import resolve

    argv = ["--env-name", workload.env_id, "--seed", str(seed), "--num-env-steps", str(workload.budget),
            *workload.flags, *workload.variants[label]]  # fmt: skip
    spec = {"env_id": workload.sb3_env or workload.env_id, "budget": workload.budget, "threshold": workload.threshold,
            "config": resolve(argv).config.to_dict(), "algo": workload.sb3[label]}  # fmt: skip
    proc = subprocess.run([sys.executable, __file__, "--sb3-worker", json.dumps(spec)], capture_output=True,
                          text=True, cwd=ROOT)  # fmt: skip
    if proc.returncode != 0:  # its own words, not a CalledProcessError
        print(f"SB3's run failed (status {proc.returncode}):\n{proc.stderr.strip()[-2000:]}", flush=True)
        return {"eval": None, "steps": None, "seconds": float("nan")}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(results: list[dict]) -> None:
    print("| workload | library | variant | seeds | final evaluation (mean over seeds) | per seed | "
          "steps to threshold (median) | wall s per run (ours: the whole process; SB3: learn()) |")  # fmt: skip
    print("|---|---|---|---:|---:|---|---:|---:|")
    keys = sorted(
        {(r["workload"], r["library"], r["variant"]) for r in results}, key=lambda k: list(WORKLOADS).index(k[0])
    )
    for name, library, variant in keys:
        rows = [r for r in results if (r["workload"], r["library"], r["variant"]) == (name, library, variant)]
        evals = [r["eval"] for r in rows if r["eval"] is not None]
        if not evals:
            continue
        steps = [r["steps"] for r in rows if r["steps"] is not None]
        reached = f"{statistics.median(steps):,.0f}" if steps else "not reached"
        reached += f" ({len(steps)}/{len(rows)})"
        per_seed = " / ".join(f"{e:.2f}" for e in evals)
        print(f"| {name} | {library} | {variant or '-'} | {len(rows)} | {statistics.fmean(evals):.2f} | {per_seed} | "
              f"{reached} | {statistics.fmean(r['seconds'] for r in rows):.0f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--seeds", type=seed_number, nargs="+", help="default: each workload's")
    parser.add_argument("--no-sb3", action="store_true")
    parser.add_argument(
        "--scale", type=positive_float, default=1.0, help="multiply every budget (smoke tests: another --out)"
    )
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "spaces"))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--sb3-worker", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    opts.out = os.path.abspath(opts.out)
    if opts.sb3_worker:
        return sb3_worker(json.loads(opts.sb3_worker))
    log = ResultLog(os.path.join(opts.out, "results.jsonl"))
    if not opts.report_only:
        os.makedirs(opts.out, exist_ok=True)
        for name in opts.workloads:
            if name == "minigrid" and importlib.util.find_spec("minigrid") is None:
                print("minigrid: skipped, the minigrid package is not installed (pip install minigrid)", flush=True)
                continue
            workload = WORKLOADS[name]
            workload = replace(workload, budget=int(workload.budget * opts.scale))
            for seed in opts.seeds or workload.seeds:
                for label in workload.variants:
                    libraries = ["ours"] + (["sb3"] if label in workload.sb3 and not opts.no_sb3 else [])
                    for library in libraries:
                        key = {"workload": name, "library": library, "variant": label, "seed": seed,
                               "budget": workload.budget}  # fmt: skip
                        if log.has(**key):
                            continue
                        if library == "ours":
                            result = our_run(opts.out, name, workload, label, seed)
                        else:
                            result = sb3_run(workload, label, seed)
                        if result["eval"] is None:  # not kept: the next call tries it again
                            print(f"{name} {library} {label} seed {seed}: failed, not recorded", flush=True)
                            continue
                        log.add({**key, **result})
    report(log.rows)


if __name__ == "__main__":
    main()
