"""Replaying a saved policy: load a checkpoint, rebuild its env, play episodes.

``load_replay`` is the one way a checkpoint becomes a policy acting in its env (the safety
checks, the frozen normalisation statistics); ``onnx_export.py`` loads through it too.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.error import DependencyNotInstalled

from a2c_ppo import console, seeds
from a2c_ppo.arguments import POLICY_BASE_HELP, TRUST_HELP, ArgumentParser
from a2c_ppo.builders import build_envs, policy_for, replay_config, replay_vec_env
from a2c_ppo.checkpoint import check_spaces, check_trusted, load_checkpoint
from a2c_ppo.checkpointer import best_checkpoint_path, best_copy_path
from a2c_ppo.config import ALGOS, RunConfig, check_value
from a2c_ppo.console import fail
from a2c_ppo.envs import VecNormalize
from a2c_ppo.envs.frames import env_identity
from a2c_ppo.envs.subproc.protocol import EnvWorkerError
from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.errors import EXIT_ENV_FAILED, EXIT_WRITE_FAILED, ConfigError, WriteFailedError
from a2c_ppo.evaluation import left_out, run_episodes
from a2c_ppo.model import Policy
from a2c_ppo.paths import check_writable_dir, check_writable_file, latest_checkpoint_path, run_checkpoint_path
from a2c_ppo.restore_check import check_finite, load_model, restored
from a2c_ppo.signals import command_stops
from a2c_ppo.trajectories import describe_space, save_trajectories
from a2c_ppo.video import has_display, prepare_offscreen_rendering

DEFAULT_LOAD_DIR = "trained_models"
VIDEO_HINT = 'Rendering and videos need the extra: pip install -e ".[video]"'


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only where it has one and its help does not say it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False) or "default" in text:
            return text
        return super()._get_help_string(action) or text


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="enjoy.py",
        description="Replay a trained policy: give --checkpoint PATH, --run-dir RUN_DIR, or --load-dir with "
        "--env-name and --algo.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (instead of --run-dir or --load-dir)")
    p.add_argument("--run-dir", metavar="RUN_DIR", help="a run folder: its checkpoint.pt (instead of --load-dir)")
    p.add_argument("--load-dir", help=f"folder holding ALGO/ENV.pt (default: {DEFAULT_LOAD_DIR})")
    p.add_argument("--env-name", help="env to play (default: the checkpoint's; CartPole-v1 to find one)")
    p.add_argument("--algo", choices=ALGOS, help="algorithm folder under --load-dir (default: ppo)")
    p.add_argument(
        "--env-kwargs", metavar="JSON", help="keyword arguments of the env, a JSON object (default: the checkpoint's)"
    )
    p.add_argument("--policy-base", metavar="MODULE:CLASS", help=POLICY_BASE_HELP)
    p.add_argument(
        "--best",
        action="store_true",
        help="play the best model (the run's best evaluation) instead of the last checkpoint: RUN_DIR/best.pt, "
        "or ALGO/ENV.best.pt under --load-dir",
    )
    p.add_argument("--num-episodes", type=int, default=10, help="episodes to play")
    p.add_argument("--non-det", action="store_true", help="sample actions instead of taking the most likely one")
    p.add_argument(
        "--seed",
        type=int,
        help="env seed (with --non-det, the sampling's too), 0 or more (default: the training seed + 2,000,000)",
    )
    p.add_argument("--render", action="store_true", help="show a window (needs a display)")
    p.add_argument("--video-dir", help="write each episode as an mp4 here (needs the [video] extra)")
    p.add_argument(
        "--record-trajectories",
        metavar="FILE",
        help="save the episodes played as expert trajectories for main.py --gail --gail-experts FILE "
        "(.npz, or a torch file for any other name): observations before normalisation (without an action mask), "
        "actions, rewards",
    )
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    return p


def checkpoint_path(args: argparse.Namespace) -> tuple[str, str]:
    """The checkpoint the flags name, and the flag it comes from (for messages)."""
    if args.checkpoint:
        if args.best:
            raise ConfigError(
                "--best picks the best model of --run-dir or --load-dir; with --checkpoint give that file itself "
                "(RUN_DIR/best.pt)."
            )
        return args.checkpoint, "--checkpoint"
    if args.run_dir:
        where, what = args.run_dir, "--run-dir"
        path = best_checkpoint_path(where) if args.best else run_checkpoint_path(where)
    else:
        where, what = args.load_dir or DEFAULT_LOAD_DIR, "--load-dir"
        path = latest_checkpoint_path(where, args.algo or "ppo", args.env_name or "CartPole-v1")
        path = best_copy_path(path) if args.best else path
    if args.best and not os.path.isfile(path) and os.path.isdir(where):
        raise ConfigError(
            f"--best: {what} {where!r} has no best model ({path}); a run saves one only when it evaluates "
            "(main.py --eval-interval N). Play its last checkpoint without --best."
        )
    return path, what


@dataclass
class Replay:
    """A checkpoint ready to play: its config, its env (one, in this process) and its policy."""

    config: RunConfig
    checkpoint: dict[str, Any]
    envs: TorchVecEnv
    policy: Policy


def load_replay(
    path: str,
    what: str,
    *,
    env_name: str | None = None,
    env_kwargs: str | None = None,
    policy_base: str | None = None,
    trust: bool = False,
    **build_options: Any,
) -> Replay:
    """The checkpoint at ``path`` (``what``: the flag that named it) as a policy in its env.

    A checkpoint that names code the user did not name (``check_trusted``, unless ``trust``)
    or holds weights that are not finite is refused (ConfigError); ``env_name`` replaces the
    checkpoint's env, ``env_kwargs`` (JSON) its ``--env-kwargs``, ``policy_base`` (``module:Class``)
    its network class. The env is rebuilt
    (``build_options`` go to ``build_envs``) with the
    checkpoint's normalisation statistics, frozen; the policy is in eval mode. Call
    ``replay.envs.close()`` when done."""
    checkpoint = load_checkpoint(path, what=what)
    notes: list[str] = []
    config = RunConfig.from_dict(checkpoint["config"], notes)
    named = (("env_name", env_name), ("env_kwargs", env_kwargs), ("policy_base", policy_base))
    typed = {name: value for name, value in named if value}
    check_trusted(config, typed, trust, what=f"{what} {path!r}")
    for note in notes:
        console.out.line(note)
    check_finite(checkpoint, f"checkpoint {path!r}")
    if env_name:
        config = config.replace(env_name=env_name)
    if env_kwargs is not None:
        check_value("env_kwargs", env_kwargs)
        config = config.replace(env_kwargs=env_kwargs)
    if policy_base:
        config = config.replace(policy_base=policy_base)
    config, _ = replay_config(config)
    extras = [flag for flag, option in (("--video-dir", "video_dir"), ("--record-trajectories", "record_episodes"))
              if build_options.get(option) is not None]  # fmt: skip
    if config.vec_env == "native" and extras:
        raise ConfigError(f"{' and '.join(extras)}: {config.env_name!r} is a vector env of its own, whose envs "
                          "a2c_ppo cannot record; replay without it.")  # fmt: skip
    try:
        envs = build_envs(config, 1, torch.device("cpu"), vec_env=replay_vec_env(config), **build_options)
    except DependencyNotInstalled as exc:
        raise ConfigError(f"{exc}. {VIDEO_HINT}") from exc
    except Exception as exc:  # an env that takes no render_mode, or fails to start rendering
        if build_options.get("render_mode") is None:
            raise
        raise ConfigError(
            f"{config.env_name!r} cannot render frames ({type(exc).__name__}: {str(exc).splitlines()[0]}); fix the "
            "env's rendering (MuJoCo: MUJOCO_GL=egl or osmesa) or replay without --video-dir / --render."
        ) from None
    try:
        check_spaces(checkpoint, envs.observation_space, envs.action_space, config.env_name)
        if isinstance(envs.envs, VecNormalize):
            if checkpoint["normalization"]:
                normalizer = envs.envs
                restored("the normalisation statistics", f"checkpoint {path!r}",
                         lambda: normalizer.load_state_dict(checkpoint["normalization"]))  # fmt: skip
            envs.envs.eval()
        policy = policy_for(config, envs.observation_space, envs.action_space)
        load_model(policy, checkpoint, f"checkpoint {path!r}", named_base=policy_base)
        policy.eval()
    except BaseException:
        envs.close()
        raise
    return Replay(config, checkpoint, envs, policy)


def _render_mode(args: argparse.Namespace) -> str | None:
    if args.video_dir:
        check_writable_dir(args.video_dir, "--video-dir")
        prepare_offscreen_rendering()
        return "rgb_array"
    if args.render:
        if has_display():
            return "human"
        console.out.line("--render: no display found (DISPLAY is unset); playing without a window.")
    return None


def _write_trajectories(
    out: str, replay: Replay, spaces: tuple[gym.Space, gym.Space], recorded: list[dict[str, np.ndarray]], path: str
) -> None:
    """Write the ``recorded`` episodes (each played whole) as expert trajectories to ``out``."""
    config = replay.config
    save_trajectories(out, env_id=env_identity(config), observation_space=spaces[0], action_space=spaces[1],
                      episodes=recorded)  # fmt: skip
    ended = sum(bool(episode["terminated"]) for episode in recorded)
    cut = len(recorded) - ended
    ends = f"{ended} terminated" + (f", {cut} cut by a time limit" if cut else "")
    console.out.line(f"{_plural(len(recorded), 'episode')} of expert trajectories ({ends}) written to {out}")
    if config.gail:
        console.out.line(f"Note: {path} learnt by imitation (--gail): these are its episodes, not its expert's.")
    if config.action_masks == "on":
        console.out.line(f"Note: {path} acted under the env's action masks; the file holds the env's "
                         "observations without them, for a GAIL run with --action-masks off.")  # fmt: skip


def _trajectory_spaces(replay: Replay) -> tuple[gym.Space, gym.Space]:
    """The replay env's (observation, action) spaces, as an expert file records them (the
    observations without the action mask a masked run adds); ConfigError for spaces the format
    cannot hold."""
    vector_env = replay.envs.envs.unwrapped  # our SubprocVecEnv, below VecNormalize: its envs record
    spaces = vector_env.get_attr("recorded_space")[0], replay.envs.action_space  # type: ignore[attr-defined]
    try:
        for space in spaces:
            describe_space(space)
    except ValueError as err:
        raise ConfigError(f"--record-trajectories: {err}; GAIL learns from vector observations.") from None
    return spaces


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def run(args: argparse.Namespace) -> list[tuple[float, int]]:
    """Play ``args.num_episodes`` episodes; prints each return and the mean."""
    path, what = checkpoint_path(args)
    render_mode = _render_mode(args)
    torch.set_num_threads(1)
    if args.video_dir and glob.glob(os.path.join(args.video_dir, "rl-video-episode-*.mp4")):
        console.out.line(
            f"{args.video_dir} holds videos of an earlier replay: episodes overwrite those of their number."
        )
    if args.record_trajectories:
        check_writable_file(args.record_trajectories, "--record-trajectories", reading=path)
    recorded: list[dict[str, np.ndarray]] | None = [] if args.record_trajectories else None
    with warnings.catch_warnings():
        # gymnasium warns about any existing folder, even the one its own first env just made
        warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
        replay = load_replay(
            path,
            what,
            env_name=args.env_name,
            env_kwargs=args.env_kwargs,
            policy_base=args.policy_base,
            trust=args.trust_checkpoint,
            render_mode=render_mode,
            video_dir=args.video_dir,
            # the vector env resets after the last episode: do not record that one
            video_episodes=args.num_episodes,
            record_episodes=recorded,
        )
    config, counters = replay.config, replay.checkpoint["counters"]
    try:
        if recorded is not None:  # before any step: a space the file format cannot hold is refused
            spaces = _trajectory_spaces(replay)
        seed = args.seed if args.seed is not None else config.seed + seeds.REPLAY
        mean = counters.get("eval_mean_return")  # a best model (best.pt) holds its evaluation's
        best = "" if mean is None else f" (best model: update {counters['update']}, evaluation mean return {mean:.1f})"
        console.out.line(f"Playing {_plural(args.num_episodes, 'episode')} of {config.env_name} with {path}{best}")
        finished = [0]  # episodes played whole

        def report(i: int, ret: float, length: int) -> None:
            finished[0] = i + 1
            console.out.line(f"episode {i + 1}: return {ret:.2f}, length {length}")

        episodes = run_episodes(
            replay.policy, replay.envs, args.num_episodes, deterministic=not args.non_det, seed=seed, on_episode=report
        )
    except DependencyNotInstalled as exc:
        replay.envs.close()
        raise ConfigError(f"{exc}. {VIDEO_HINT}") from exc
    except BaseException:  # Ctrl-C: closing saves the episode under way, cut; it must not pass for a whole one
        replay.envs.close()
        if args.video_dir:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(args.video_dir, f"rl-video-episode-{finished[0]}.mp4"))
        if recorded:  # the episodes played whole (the one under way never reached the list)
            _write_trajectories(args.record_trajectories, replay, spaces, recorded, path)
        raise
    replay.envs.close()
    if len(episodes) < args.num_episodes and args.video_dir:  # closing saved the episode the cap cut: not whole
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(args.video_dir, f"rl-video-episode-{len(episodes)}.mp4"))
    if recorded is not None:
        _write_trajectories(args.record_trajectories, replay, spaces, recorded, path)
    returns = [ret for ret, _ in episodes]
    if len(returns) < args.num_episodes:
        console.out.line(f"Note: {left_out(len(returns), args.num_episodes)}.")
    if returns:
        console.out.line(
            f"mean return over {_plural(len(returns), 'episode')}: {np.mean(returns):.2f} (std {np.std(returns):.2f})"
        )
    if args.video_dir:
        console.out.line(f"videos written to {args.video_dir}")
    return episodes


def check_not_empty(args: argparse.Namespace, names: Sequence[str]) -> None:
    """ConfigError for a flag of ``names`` given an empty value (an unset shell variable)."""
    for name in names:
        if getattr(args, name) == "":
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} is empty (an unset shell variable?): give a value, or drop {flag}.")


def check_flags(args: argparse.Namespace) -> None:
    """ConfigError for flags that name nothing (an empty path) or that another flag makes
    meaningless (they would be silently ignored)."""
    check_not_empty(args, ("checkpoint", "run_dir", "load_dir", "env_name", "env_kwargs", "policy_base", "video_dir",
                           "record_trajectories"))  # fmt: skip
    sources = [flag for flag, value in (("--checkpoint", args.checkpoint), ("--run-dir", args.run_dir)) if value]
    ignored = [flag for flag, value in (("--run-dir", args.run_dir), ("--load-dir", args.load_dir),
                                        ("--algo", args.algo)) if value and flag not in sources[:1]]  # fmt: skip
    if sources and ignored:
        raise ConfigError(f"{sources[0]} names the checkpoint to play, and {', '.join(ignored)} would be ignored: "
                          f"give one of them.")  # fmt: skip
    if args.render and args.video_dir:
        raise ConfigError("--render shows a window and --video-dir records off-screen: give one of them.")
    if args.num_episodes <= 0:
        raise ConfigError(f"--num-episodes must be a positive integer, got {args.num_episodes}.")
    if args.seed is not None:
        check_value("seed", args.seed)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with command_stops():
            check_flags(args)
            run(args)
    except ConfigError as exc:
        fail(str(exc), prog="enjoy.py")
    except WriteFailedError as exc:
        fail(f"{exc}; free space or give another path.", prog="enjoy.py", code=EXIT_WRITE_FAILED)
    except EnvWorkerError as exc:
        if isinstance(exc.__cause__, WriteFailedError):  # an episode's video (--video-dir), written as the env steps
            fail(f"{exc.__cause__}; free space or give another path.", prog="enjoy.py", code=EXIT_WRITE_FAILED)
        console.err.line(f"enjoy.py: an environment failed, the replay stopped: {exc}")
        return EXIT_ENV_FAILED
    except KeyboardInterrupt as exc:
        return console.say_stopped(exc)
    return 0
