"""The training loop: envs -> storage -> algorithm -> model, plus logging and checkpoints."""

from __future__ import annotations

import argparse
import os
import random
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from a2c_ppo.algo import A2C, ACKTR, PPO, KFACOptimizer, make_rmsprop
from a2c_ppo.algo.common import set_learning_rate
from a2c_ppo.checkpoint import check_spaces, checkpoint_path, load_checkpoint, save_checkpoint, set_rng_state
from a2c_ppo.distributions import action_shape
from a2c_ppo.envs import TorchVecEnv, VecNormalize, make_vec_envs
from a2c_ppo.evaluation import run_episodes
from a2c_ppo.logger import Logger, format_duration
from a2c_ppo.model import Policy, make_policy
from a2c_ppo.rollout import collect_rollout
from a2c_ppo.storage import RolloutStorage

EVAL_SEED_OFFSET = 1_000_000  # eval envs never share seeds with training envs


@dataclass
class TrainResult:
    checkpoint: str
    env_steps: int
    interrupted: bool = False
    # (env steps, mean true return of the last 10 episodes) after every update
    history: list[tuple[int, float]] = field(default_factory=list)


def select_device(args: argparse.Namespace) -> torch.device:
    if torch.cuda.is_available() and not args.no_cuda:
        if args.cuda_deterministic:
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_envs(args: argparse.Namespace, num_envs: int, device: torch.device, **overrides) -> TorchVecEnv:
    """The vector env a run's flags describe (``overrides`` go to make_vec_envs), as tensors."""
    kwargs = {
        "gamma": args.gamma,
        "norm_obs": args.norm_obs,
        "norm_reward": args.norm_reward,
        "vec_env": args.vec_env,
        "num_workers": args.num_workers,
        **overrides,
    }
    envs = make_vec_envs(args.env_name, num_envs, **kwargs)
    return TorchVecEnv(envs, device)


def make_agent(args: argparse.Namespace, policy: Policy) -> PPO | A2C | ACKTR:
    """The algorithm object for ``--algo``."""
    common = {
        "value_loss_coef": args.value_loss_coef,
        "entropy_coef": args.entropy_coef,
        "norm_adv": args.norm_adv,
    }
    if args.algo == "acktr":
        return ACKTR(policy, KFACOptimizer(policy, lr=args.lr), **common)
    if args.algo == "a2c":
        optimizer = make_rmsprop(policy.parameters(), lr=args.lr, eps=args.eps, alpha=args.alpha)
        return A2C(policy, optimizer, max_grad_norm=args.max_grad_norm, **common)
    return PPO(
        policy,
        lr=args.lr,
        clip_param=args.clip_param,
        ppo_epoch=args.ppo_epoch,
        num_mini_batch=args.num_mini_batch,
        eps=args.eps,
        max_grad_norm=args.max_grad_norm,
        use_clipped_value_loss=args.clip_value_loss,
        target_kl=args.target_kl,
        **common,
    )


def new_run_dir(args: argparse.Namespace) -> str:
    safe_env = args.env_name.replace("/", "_").replace(":", "_")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(args.log_dir, f"{safe_env}__{args.algo}__seed{args.seed}__{stamp}")


def _summary(returns: deque) -> str:
    if not returns:
        return "no episode finished yet"
    r = np.asarray(returns)
    return (
        f"last {len(r)} episodes: mean/median return {r.mean():.1f}/{np.median(r):.1f}, "
        f"min/max {r.min():.1f}/{r.max():.1f}"
    )


def run(args: argparse.Namespace) -> TrainResult:
    """Train as ``args`` say; returns where the checkpoint is and the learning curve."""
    seed_everything(args.seed)
    torch.set_num_threads(args.num_threads)
    device = select_device(args)
    checkpoint = load_checkpoint(args.resume) if args.resume else None
    if not getattr(args, "run_dir", None):
        args.run_dir = new_run_dir(args)
    save_path = checkpoint_path(args.save_dir, args.algo, args.env_name)

    envs = build_envs(args, args.num_processes, device)
    eval_envs: TorchVecEnv | None = None
    logger: Logger | None = None
    try:
        policy = make_policy(
            envs.observation_space,
            envs.action_space,
            hidden_size=args.hidden_size,
            recurrent=args.recurrent_policy,
            rnn_type=args.recurrent_type,
        ).to(device)
        agent = make_agent(args, policy)
        start_update, env_steps = 0, 0
        if checkpoint is not None:
            check_spaces(checkpoint, envs.observation_space, envs.action_space, args.env_name)
            policy.load_state_dict(checkpoint["model"])
            agent.optimizer.load_state_dict(checkpoint["optimizer"])
            if isinstance(envs.envs, VecNormalize) and checkpoint["normalization"]:
                envs.envs.load_state_dict(checkpoint["normalization"])
            start_update, env_steps = checkpoint["counters"]["update"], checkpoint["counters"]["env_steps"]
            set_rng_state(checkpoint["rng"])

        action_dim, action_dtype = action_shape(envs.action_space)
        rollouts = RolloutStorage(
            args.num_steps,
            args.num_processes,
            envs.observation_space.shape,
            action_dim,
            action_dtype,
            policy.recurrent_hidden_state_size,
            obs_dtype=torch.uint8 if envs.observation_space.dtype == np.uint8 else torch.float32,
            recurrent_chunk_length=getattr(args, "recurrent_chunk_length", None),
        ).to(device)
        rollouts.obs[0].copy_(envs.reset(seed=args.seed + env_steps))

        batch = args.num_processes * args.num_steps
        num_updates = args.num_env_steps // batch
        logger = Logger(args.run_dir, vars(args), total_steps=num_updates * batch, start_step=env_steps)
        logger.print(
            f"Training {args.algo} on {args.env_name}: {num_updates} updates of {batch} steps, run folder {args.run_dir}"
        )
        recent_returns: deque = deque(maxlen=10)
        recent_lengths: deque = deque(maxlen=10)
        result = TrainResult(checkpoint=save_path, env_steps=env_steps)
        start_time, start_steps = time.monotonic(), env_steps

        def save(update: int, steps: int) -> None:
            save_checkpoint(
                save_path,
                model=policy,
                optimizer=agent.optimizer,
                config=vars(args),
                normalization=envs.envs.state_dict() if isinstance(envs.envs, VecNormalize) else None,
                counters={"update": update, "env_steps": steps},
                observation_space=envs.observation_space,
                action_space=envs.action_space,
            )

        completed = (start_update, env_steps)
        try:
            for update in range(start_update, num_updates):
                lr = args.lr * (1.0 - update / num_updates) if args.use_linear_lr_decay else args.lr
                set_learning_rate(agent.optimizer, lr)
                for ret, length in collect_rollout(policy, envs, rollouts, args.use_proper_time_limits):
                    recent_returns.append(ret)
                    recent_lengths.append(length)
                env_steps += batch
                with torch.no_grad():
                    next_value = policy.get_value(
                        rollouts.obs[-1], rollouts.recurrent_hidden_states[-1], rollouts.masks[-1]
                    )
                rollouts.compute_returns(next_value, args.use_gae, args.gamma, args.gae_lambda)
                metrics = agent.update(rollouts)
                rollouts.after_update()
                if recent_returns:
                    result.history.append((env_steps, float(np.mean(recent_returns))))
                result.env_steps = env_steps

                done_updates = update + 1
                sps = (env_steps - start_steps) / max(time.monotonic() - start_time, 1e-9)
                logger.progress(env_steps)
                if done_updates % args.log_interval == 0 or done_updates == num_updates:
                    scalars = {"charts/SPS": sps, "charts/learning_rate": lr}
                    scalars.update({f"losses/{k}": v for k, v in metrics.items() if k != "num_gradient_steps"})
                    if recent_returns:
                        scalars["charts/episodic_return"] = float(np.mean(recent_returns))
                        scalars["charts/episodic_length"] = float(np.mean(recent_lengths))
                    logger.scalars(env_steps, scalars, update=done_updates)
                    eta = (num_updates * batch - env_steps) / max(sps, 1e-9)
                    logger.print(
                        f"Updates {done_updates}/{num_updates}, timesteps {env_steps}, SPS {sps:.0f}, "
                        f"ETA {format_duration(eta)} | {_summary(recent_returns)}"
                    )
                if args.eval_interval and done_updates % args.eval_interval == 0:
                    if eval_envs is None:
                        eval_envs = build_envs(
                            args, min(args.num_processes, args.eval_episodes), device, vec_env="sync"
                        )
                    mean_return = evaluate(policy, envs, eval_envs, args.eval_episodes, args.seed + EVAL_SEED_OFFSET)
                    logger.scalars(env_steps, {"eval/mean_return": mean_return}, update=done_updates)
                    logger.print(f"Evaluation over {args.eval_episodes} episodes: mean return {mean_return:.1f}")
                completed = (done_updates, env_steps)
                if done_updates % args.save_interval == 0 or done_updates == num_updates:
                    save(*completed)
            if start_update >= num_updates:  # a resumed run that was already finished
                save(*completed)
        except KeyboardInterrupt:
            # The counters of the last finished update: a resumed run redoes the interrupted one.
            save(*completed)
            result.interrupted = True
            logger.print(f"Interrupted: checkpoint saved to {save_path} (resume with --resume {save_path})")
            return result
        logger.print(f"Done: {env_steps} env steps, {_summary(recent_returns)}. Checkpoint: {save_path}")
        return result
    finally:
        envs.close()
        if eval_envs is not None:
            eval_envs.close()
        if logger is not None:
            logger.close()


def evaluate(policy: Policy, train_envs: TorchVecEnv, eval_envs: TorchVecEnv, num_episodes: int, seed: int) -> float:
    """Mean true return over ``num_episodes`` deterministic episodes with frozen stats."""
    if isinstance(eval_envs.envs, VecNormalize):
        eval_envs.envs.load_state_dict(train_envs.envs.state_dict())
        eval_envs.envs.eval()
    episodes = run_episodes(policy, eval_envs, num_episodes, deterministic=True, seed=seed)
    return float(np.mean([ret for ret, _ in episodes]))
