"""Memory benchmark: recurrent vs feed-forward policies on tasks that need memory.

Tasks (envs in ``a2c_ppo.envs.memory_envs``):

* ``cartpole-novel``: CartPole-v1 with the velocities hidden (observation = cart position
  and pole angle). A feed-forward policy only sees a snapshot; a recurrent one can infer
  the velocities from consecutive observations.
* ``cue-recall``: name a cue (one of 4) shown only on the first step, after 10 blank
  steps. Return 1 per episode when right; the best a memoryless policy can do is 0.25.

Every policy kind trains with the same PPO flags (only ``--recurrent-policy`` /
``--recurrent-type`` differ) for several seeds; the table shows, per run, the mean
training return of the last 10 episodes at the end, the env steps at which it first
reached the threshold, and the mean return of 20 deterministic evaluation episodes of the
final policy.

    python benchmarks/memory.py                                  # cartpole-novel, mlp/gru, 3 seeds
    python benchmarks/memory.py --task cue-recall --kinds mlp gru lstm
    python benchmarks/memory.py --seeds 1 -- --num-env-steps 100000  # flags after -- go to main.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from a2c_ppo import seeds  # noqa: E402
from a2c_ppo.arguments import parse_args  # noqa: E402
from a2c_ppo.builders import build_envs, policy_for  # noqa: E402
from a2c_ppo.checkpoint import load_checkpoint  # noqa: E402
from a2c_ppo.config import RunConfig  # noqa: E402
from a2c_ppo.evaluation import run_episodes  # noqa: E402
from a2c_ppo.session import run  # noqa: E402

# name -> (env, threshold, main.py flags shared by every policy kind)
TASKS: dict[str, tuple[str, float, list[str]]] = {
    "cartpole-novel": (
        "a2c_ppo.envs.memory_envs:make_cartpole_novel",
        200.0,
        "--num-env-steps 300000 --num-processes 8 --num-steps 128 --num-mini-batch 4 --ppo-epoch 4 --gamma 0.99 "
        "--gae-lambda 0.95 --lr 1e-3".split(),
    ),
    "cue-recall": (
        "a2c_ppo.envs.memory_envs:make_cue_recall",
        0.9,
        "--num-env-steps 100000 --num-processes 8 --num-steps 96 --num-mini-batch 4 --ppo-epoch 4 --gamma 0.99 "
        "--gae-lambda 0.95 --lr 1e-3 --entropy-coef 0.01".split(),
    ),
}

# extra flags per policy kind
KINDS: dict[str, list[str]] = {
    "mlp": [],
    "gru": ["--recurrent-policy", "--recurrent-type", "gru", "--recurrent-chunk-length", "16"],
    "lstm": ["--recurrent-policy", "--recurrent-type", "lstm", "--recurrent-chunk-length", "16"],
}


def evaluate_checkpoint(args: RunConfig, path: str, episodes: int) -> float:
    checkpoint = load_checkpoint(path)
    envs = build_envs(args, min(8, episodes), torch.device("cpu"), vec_env="sync")
    try:
        policy = policy_for(args, envs.observation_space, envs.action_space)
        policy.load_state_dict(checkpoint["model"])
        results = run_episodes(policy, envs, episodes, deterministic=True, seed=args.seed + seeds.EVALUATION)
    finally:
        envs.close()
    return float(np.mean([ret for ret, _ in results]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="cartpole-novel", choices=sorted(TASKS))
    parser.add_argument("--kinds", nargs="+", default=["mlp", "gru"], choices=sorted(KINDS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("main_flags", nargs="*", help="extra main.py flags (after --), applied to every run")
    opts = parser.parse_args()
    env, threshold, task_flags = TASKS[opts.task]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in opts.kinds:
            for seed in range(1, opts.seeds + 1):
                argv = [
                    "--env-name",
                    env,
                    "--seed",
                    str(seed),
                    *task_flags,
                    *KINDS[kind],
                    "--log-dir",
                    os.path.join(tmp, "runs"),
                    "--save-dir",
                    os.path.join(tmp, f"{kind}{seed}"),
                    "--log-interval",
                    "1000000",
                    "--num-threads",
                    "1",
                    *opts.main_flags,
                ]
                args = parse_args(argv)
                start = time.monotonic()
                result = run(args)
                wall = time.monotonic() - start
                reached = next((steps for steps, ret in result.history if ret >= threshold), None)
                final = result.history[-1][1] if result.history else float("nan")
                evaluation = evaluate_checkpoint(args, result.checkpoint, opts.eval_episodes)
                rows.append((kind, seed, reached, final, evaluation, result.env_steps / wall, wall))
                print(f"{kind} seed {seed}: final {final:.2f}, eval {evaluation:.2f}, {wall:.0f} s", flush=True)

    print(f"\n{opts.task} ({env}), threshold {threshold:g}; flags: {' '.join(task_flags + opts.main_flags)}")
    header = (
        f"{'policy':>6} | {'seed':>4} | {'steps to threshold':>18} | {'final train return':>18} | "
        f"{'eval return':>11} | {'SPS':>5} | {'wall s':>6}"
    )
    print(header)
    print("-" * len(header))
    for kind, seed, reached, final, evaluation, sps, wall in rows:
        reached_s = str(reached) if reached is not None else "not reached"
        print(
            f"{kind:>6} | {seed:>4} | {reached_s:>18} | {final:>18.2f} | {evaluation:>11.2f} | "
            f"{sps:>5.0f} | {wall:>6.1f}"
        )
    print()
    for kind in opts.kinds:
        mine = [r for r in rows if r[0] == kind]
        solved = sum(r[2] is not None for r in mine)
        print(
            f"{kind}: reached threshold {solved}/{len(mine)} seeds, mean final train return "
            f"{np.mean([r[3] for r in mine]):.2f}, mean eval return {np.mean([r[4] for r in mine]):.2f}"
        )


if __name__ == "__main__":
    main()
