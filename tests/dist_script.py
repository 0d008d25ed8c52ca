"""A few data-parallel updates on real envs, for ``torchrun ... tests/dist_script.py --out DIR``.

A stand-in for ``main.py`` until it runs under torchrun: every rank steps its own normalised
subprocess vector env (seeded ``seed + rank * num_envs + i``), takes policy-gradient steps
with gradients averaged across ranks and the normalisation statistics synced, and writes
``DIR/rank{r}.json`` with the parameter hash after every update. Rank 0 alone writes
``DIR/log.txt``. ``--fail-rank R`` makes rank R raise during its second update.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch

from a2c_ppo.algo import make_rmsprop
from a2c_ppo.algo.common import average_gradients
from a2c_ppo.distributed import (
    broadcast_module,
    check_in_sync,
    module_digest,
    process_group,
    resolve_context,
    sync_running_stats,
)
from a2c_ppo.distributions import action_shape
from a2c_ppo.envs import make_vec_envs
from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.model import Policy
from a2c_ppo.rollout import collect_rollout
from a2c_ppo.storage import RolloutStorage
from tests.dist_helpers import no_dynamo_imported


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--env-name", default="CartPole-v1")
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument("--num-steps", type=int, default=16)
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fail-rank", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=20.0)
    return parser.parse_args()


def policy_gradient_step(policy: Policy, optimizer: torch.optim.Optimizer, rollouts: RolloutStorage, reducer) -> None:
    """One actor-critic step on the whole rollout (advantages = returns - values)."""
    T, N = rollouts.num_steps, rollouts.num_processes
    values, log_probs, entropy, _ = policy.evaluate_actions(
        rollouts.obs[:-1].reshape(T * N, -1),
        rollouts.recurrent_hidden_states[:-1].reshape(T * N, -1),
        rollouts.masks[:-1].reshape(T * N, 1),
        rollouts.actions.reshape(T * N, -1),
    )
    advantages = (rollouts.returns - rollouts.value_preds[:-1]).reshape(T * N, 1)
    value_loss = 0.5 * (values - rollouts.returns.reshape(T * N, 1)).pow(2).mean()
    loss = -(log_probs * advantages).mean() + value_loss - 0.01 * entropy.mean()
    optimizer.zero_grad()
    loss.backward()
    average_gradients(list(policy.parameters()), reducer)
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
    optimizer.step()


def main() -> None:
    args = parse()
    torch.set_num_threads(1)  # bit-identical results across launches
    ctx = resolve_context(use_cuda=False)
    reducer = ctx.reducer()
    torch.manual_seed(args.seed + ctx.rank)
    with process_group(ctx, timeout_s=args.timeout):
        # Built after the process group exists: the workers start from the forkserver.
        envs = TorchVecEnv(
            make_vec_envs(args.env_name, args.num_envs, vec_env="subproc", num_workers=1, norm_obs=True), ctx.device
        )
        try:
            policy = Policy(envs.observation_space, envs.action_space)
            broadcast_module(policy, ctx)
            optimizer = make_rmsprop(policy.parameters(), lr=1e-3, eps=1e-5, alpha=0.99)
            dim, dtype = action_shape(envs.action_space)
            rollouts = RolloutStorage(args.num_steps, args.num_envs, envs.observation_space.shape, dim, dtype)
            rollouts.obs[0].copy_(envs.reset(seed=args.seed + ctx.rank * args.num_envs))
            first_obs = rollouts.obs[0].tolist()
            hashes, env_steps = [], 0
            for update in range(args.updates):
                collect_rollout(policy, envs, rollouts, proper_time_limits=True)
                sync_running_stats([envs.envs.obs_rms, envs.envs.ret_rms], reducer)
                if update == 1 and ctx.rank == args.fail_rank:
                    raise RuntimeError(f"rank {ctx.rank} fails on purpose")
                with torch.no_grad():
                    next_value = policy.get_value(
                        rollouts.obs[-1], rollouts.recurrent_hidden_states[-1], rollouts.masks[-1]
                    )
                rollouts.compute_returns(next_value, use_gae=True, gamma=0.99, gae_lambda=0.95)
                policy_gradient_step(policy, optimizer, rollouts, reducer)
                rollouts.after_update()
                env_steps += args.num_envs * args.num_steps * ctx.world_size
                check_in_sync(policy, ctx, f"after update {update + 1}")
                hashes.append(module_digest(policy))
            stats = np.concatenate([envs.envs.obs_rms.mean, envs.envs.obs_rms.var]).tolist()
        finally:
            envs.close()
    no_dynamo_imported()
    result = {
        "rank": ctx.rank,
        "world_size": ctx.world_size,
        "hashes": hashes,
        "env_steps": env_steps,
        "first_obs": first_obs,
        "obs_stats": stats,
    }
    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump(result, f)
    if ctx.is_main:
        with open(os.path.join(args.out, "log.txt"), "w") as f:
            f.write(f"{env_steps} env steps\n")


if __name__ == "__main__":
    main()
