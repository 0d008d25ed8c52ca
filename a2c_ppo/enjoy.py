"""Replaying a saved policy: load a checkpoint, rebuild its env, play episodes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np
import torch
from gymnasium.error import DependencyNotInstalled

from a2c_ppo.arguments import TRUST_HELP, ArgumentParser, fail
from a2c_ppo.builders import build_envs, policy_for
from a2c_ppo.checkpoint import check_spaces, check_trusted, first_non_finite, load_checkpoint
from a2c_ppo.config import ALGOS, RunConfig
from a2c_ppo.envs import VecNormalize, check_env_id
from a2c_ppo.errors import ConfigError
from a2c_ppo.evaluation import run_episodes
from a2c_ppo.paths import check_writable_dir, latest_checkpoint_path

REPLAY_SEED_OFFSET = 2_000_000  # replays never reuse the training envs' seeds


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="enjoy.py",
        description="Replay a trained policy: give --checkpoint PATH, or --load-dir with --env-name and --algo.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", default=None, metavar="PATH", help="checkpoint file (overrides --load-dir)")
    p.add_argument("--load-dir", default="trained_models", help="folder holding ALGO/ENV.pt")
    p.add_argument("--env-name", default=None, help="env to play (default: the checkpoint's; CartPole-v1 to find one)")
    p.add_argument("--algo", default="ppo", choices=ALGOS, help="algorithm folder under --load-dir")
    p.add_argument("--num-episodes", type=int, default=10, help="episodes to play")
    p.add_argument("--non-det", action="store_true", help="sample actions instead of taking the most likely one")
    p.add_argument("--seed", type=int, default=None, help="env seed (default: the training seed + 2,000,000)")
    p.add_argument("--render", action="store_true", help="show a window (needs a display)")
    p.add_argument("--video-dir", default=None, help="write each episode as an mp4 here (needs the [video] extra)")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    return p


def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> list[tuple[float, int]]:
    """Play ``args.num_episodes`` episodes; prints each return and the mean."""
    path = args.checkpoint or latest_checkpoint_path(args.load_dir, args.algo, args.env_name or "CartPole-v1")
    what = "--checkpoint" if args.checkpoint else "--load-dir"
    checkpoint = load_checkpoint(path, what=what)
    notes: list[str] = []
    config = RunConfig.from_dict(checkpoint["config"], notes)
    typed = {"env_name": args.env_name} if args.env_name else {}
    check_trusted(config, typed, args.trust_checkpoint, what=f"{what} {path!r}")
    for note in notes:
        print(note)
    bad = first_non_finite(checkpoint["model"])
    if bad is not None:
        raise ConfigError(
            f"checkpoint {path!r} is refused: its parameter {bad!r} is not finite (NaN or infinity), so the policy "
            "it holds cannot act. Use an earlier checkpoint of the run."
        )
    if args.env_name:
        config = config.replace(env_name=args.env_name)
    check_env_id(config.env_name, config.action_masks)
    if args.video_dir:
        check_writable_dir(args.video_dir, "--video-dir")
    render_mode = None
    if args.video_dir:
        render_mode = "rgb_array"
    elif args.render:
        if _has_display():
            render_mode = "human"
        else:
            print("--render: no display found (DISPLAY is unset); playing without a window.")
    torch.set_num_threads(1)
    try:
        envs = build_envs(
            config,
            1,
            torch.device("cpu"),
            vec_env="sync",
            render_mode=render_mode,
            video_dir=args.video_dir,
            # the vector env resets after the last episode: do not record that one
            video_episodes=args.num_episodes,
        )
    except DependencyNotInstalled as exc:
        raise ConfigError(f"{exc}. Rendering and videos need the extra: pip install -e '.[video]'") from exc
    try:
        check_spaces(checkpoint, envs.observation_space, envs.action_space, config.env_name)
        if isinstance(envs.envs, VecNormalize):
            if checkpoint["normalization"]:
                envs.envs.load_state_dict(checkpoint["normalization"])
            envs.envs.eval()
        policy = policy_for(config, envs.observation_space, envs.action_space)
        policy.load_state_dict(checkpoint["model"])
        policy.eval()
        seed = args.seed if args.seed is not None else config.seed + REPLAY_SEED_OFFSET
        print(f"Playing {args.num_episodes} episodes of {config.env_name} with {path}")
        episodes = run_episodes(
            policy,
            envs,
            args.num_episodes,
            deterministic=not args.non_det,
            seed=seed,
            on_episode=lambda i, ret, length: print(f"episode {i + 1}: return {ret:.2f}, length {length}"),
        )
    except DependencyNotInstalled as exc:
        raise ConfigError(f"{exc}. Rendering and videos need the extra: pip install -e '.[video]'") from exc
    finally:
        envs.close()
    returns = [ret for ret, _ in episodes]
    print(f"mean return over {len(returns)} episodes: {np.mean(returns):.2f} (std {np.std(returns):.2f})")
    if args.video_dir:
        print(f"videos written to {args.video_dir}")
    return episodes


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_episodes <= 0:
        parser.error(f"--num-episodes must be a positive integer, got {args.num_episodes}.")
    try:
        run(args)
    except ConfigError as exc:
        fail(str(exc), prog="enjoy.py")
    except KeyboardInterrupt:
        sys.stderr.write("Stopped by Ctrl-C.\n")
        return 130
    return 0
