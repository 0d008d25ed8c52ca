"""Running a policy for whole episodes: periodic evaluation and enjoy.py share this."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from a2c_ppo.envs.normalize import VecNormalize
from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.model import Policy, eval_mode
from a2c_ppo.sde import resample_noise

#: The most steps an episode of an evaluation or replay may take: well above the longest time
#: limit of a registered id (Atari's 108,000 frames, 27,000 steps), so that it binds only on an
#: env without one, whose policy may never end an episode (CliffWalking walking into a wall),
#: which would hold the run, or the replay, for good.
EVAL_MAX_EPISODE_STEPS = 100_000


def run_episodes(
    policy: Policy,
    envs: TorchVecEnv,
    num_episodes: int,
    *,
    deterministic: bool = True,
    seed: int | None = None,
    on_episode: Callable[[int, float, int], None] | None = None,
) -> list[tuple[float, int]]:
    """Play ``num_episodes`` episodes; returns their true (return, length).

    Each of the K envs plays its own share of the episodes (env i plays ``(n + i) // K``
    of the ``n`` in reverse order), so short episodes are not over-counted just because
    they finish first. ``on_episode(index, return, length)`` is called as each one ends.
    After ``EVAL_MAX_EPISODE_STEPS`` vector steps per episode of the largest share it stops,
    with the episodes finished by then (fewer than ``num_episodes``: ``left_out`` says so).
    Sampled actions (``deterministic=False``) with a ``seed`` draw from a generator seeded by
    it, so that a replay can be repeated; the caller's generator state is left as it was.
    """
    num_envs = envs.num_envs
    quota = [(num_episodes + i) // num_envs for i in range(num_envs)][::-1]
    cap = EVAL_MAX_EPISODE_STEPS * quota[0]
    device = envs.device
    seeded_sampling = not deterministic and seed is not None
    devices = [device] if device.type == "cuda" else []
    with eval_mode(policy), torch.random.fork_rng(devices=devices) if seeded_sampling else contextlib.nullcontext():
        if seeded_sampling:
            torch.manual_seed(seed)
        obs = envs.reset(seed=seed)
        rnn_hxs = torch.zeros(num_envs, policy.recurrent_hidden_state_size, device=device)
        masks = torch.zeros(num_envs, 1, device=device)
        results: list[tuple[float, int]] = []
        finished = [0] * num_envs
        steps = 0
        while len(results) < num_episodes and steps < cap:
            # gSDE's noise matrices, drawn every --sde-sample-freq steps (-1: once, at the start) as a
            # rollout draws them (training's evaluations are deterministic: the matrices of the policy
            # they share stay the rollout's)
            if not deterministic:
                resample_noise(policy, num_envs, steps)
            steps += 1
            with torch.inference_mode():
                _, action, _, rnn_hxs = policy.act(obs, rnn_hxs, masks, deterministic=deterministic)
            step = envs.step(action)
            obs = step.obs
            masks = (~(step.terminated | step.truncated)).float()
            for env_index, ret, length in step.episodes:
                if finished[env_index] < quota[env_index]:
                    finished[env_index] += 1
                    results.append((ret, length))
                    if on_episode is not None:
                        on_episode(len(results) - 1, ret, length)
    return results


def left_out(played: int, asked: int) -> str:
    """What the console says of the episodes ``EVAL_MAX_EPISODE_STEPS`` left out ("" for none)."""
    if played >= asked:
        return ""
    return (
        f"{asked - played} of {asked} episodes did not end within {EVAL_MAX_EPISODE_STEPS:,} steps and were left "
        "out: give the env a time limit, e.g. gymnasium.wrappers.TimeLimit, or max_episode_steps where it is "
        "registered"
    )


def evaluate(
    policy: Policy, envs: TorchVecEnv, num_episodes: int, seed: int, normalization: dict[str, Any] | None
) -> list[float]:
    """The true returns of ``num_episodes`` deterministic episodes on ``envs``, with the
    training run's normalisation statistics (``normalization``) loaded and frozen; fewer (the
    episodes finished) where ``EVAL_MAX_EPISODE_STEPS`` cuts the evaluation short."""
    if isinstance(envs.envs, VecNormalize) and normalization is not None:
        envs.envs.load_state_dict(normalization)
        envs.envs.eval()
    episodes = run_episodes(policy, envs, num_episodes, deterministic=True, seed=seed)
    return [ret for ret, _ in episodes]
