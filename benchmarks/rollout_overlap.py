"""Rollout-only throughput, plain against overlapped stepping, and what ``auto`` chooses.

    python benchmarks/rollout_overlap.py --env-name ALE/Pong-v5 --num-processes 8 --num-steps 128

For each repetition (interleaved, so that machine noise cancels) it builds the vector env
with ``overlap="off"`` and ``"on"``, runs ``--rollouts`` rollouts of a fresh default Policy
(no updates: this measures collection only) and prints the median env steps per second of
each, their ratio, and the choice ``overlap="auto"`` makes on this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import gymnasium as gym
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from a2c_ppo.builders import policy_step_timer  # noqa: E402
from a2c_ppo.distributions import action_shape  # noqa: E402
from a2c_ppo.envs import make_env, make_vec_envs  # noqa: E402
from a2c_ppo.envs.torch_env import TorchVecEnv  # noqa: E402
from a2c_ppo.model import Policy  # noqa: E402
from a2c_ppo.rollout import collect_rollout  # noqa: E402
from a2c_ppo.storage import RolloutStorage  # noqa: E402


def build(args: argparse.Namespace, overlap: str, policy: Policy, obs_space: gym.Space) -> TorchVecEnv:
    timer = policy_step_timer(policy)
    return TorchVecEnv(
        make_vec_envs(args.env_name, args.num_processes, vec_env=args.vec_env, overlap=overlap, policy_step_s=timer)
    )


def rollout_sps(envs: TorchVecEnv, args: argparse.Namespace, policy: Policy) -> float:
    """Env steps per second over ``args.rollouts`` rollouts (``envs`` is closed after)."""
    try:
        dim, dtype = action_shape(envs.action_space)
        obs_dtype = torch.uint8 if envs.observation_space.dtype == "uint8" else torch.float32
        rollouts = RolloutStorage(
            args.num_steps,
            args.num_processes,
            envs.observation_space.shape,
            dim,
            dtype,
            policy.recurrent_hidden_state_size,
            obs_dtype=obs_dtype,
        )
        rollouts.obs[0].copy_(envs.reset(seed=args.seed))
        collect_rollout(policy, envs, rollouts, True)  # warm-up
        rollouts.after_update()
        start = time.perf_counter()
        for _ in range(args.rollouts):
            collect_rollout(policy, envs, rollouts, True)
            rollouts.after_update()
        return args.rollouts * args.num_steps * args.num_processes / (time.perf_counter() - start)
    finally:
        envs.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-name", default="CartPole-v1")
    p.add_argument("--num-processes", type=int, default=8)
    p.add_argument("--num-steps", type=int, default=128)
    p.add_argument("--rollouts", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--vec-env", default="auto", choices=("auto", "subproc"))
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.num_threads)
    probe = make_env(args.env_name)
    policy = Policy(probe.observation_space, probe.action_space)
    probe.close()
    sps: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.repeats):
        for mode in sps:
            sps[mode].append(rollout_sps(build(args, mode, policy, probe.observation_space), args, policy))
    off, on = statistics.median(sps["off"]), statistics.median(sps["on"])
    auto = build(args, "auto", policy, probe.observation_space)
    chose = auto.overlap
    auto.close()
    print(f"{args.env_name} x{args.num_processes}, {args.num_steps} steps, median of {args.repeats}:")
    print(f"  rollout SPS  off {off:8.0f}   on {on:8.0f}   on/off {on / off:.2f}x")
    print(f"  auto chose   {'on' if chose else 'off'} ({'right' if chose == (on > off) else 'WRONG'} on this run)")


if __name__ == "__main__":
    main()
