"""main.py's command line: every flag, its default and help, and how a RunConfig is resolved.

Every setting flag defaults to ``None`` so that what the user typed is known: typed flags win
over the preset (``--preset``, see ``presets.py``), which wins over the common defaults. With
``--resume`` the checkpoint's config takes the place of the preset. Bad input raises
ConfigError, which ``parse_args`` turns into one paragraph on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from a2c_ppo.config import RunConfig
from a2c_ppo.errors import ConfigError
from a2c_ppo.presets import COMMON_DEFAULTS, PRESET_KEYS, PRESETS, presets_table

ALGOS = ("ppo", "a2c", "acktr")

#: Defaults of the flags no preset decides.
FIXED_DEFAULTS: dict[str, Any] = {
    "algo": "ppo",
    "preset": "auto",
    "env_name": "CartPole-v1",
    "seed": 1,
    "target_kl": None,
    "hidden_size": None,
    "recurrent_policy": False,
    "recurrent_type": "gru",
    "recurrent_chunk_length": None,
    "norm_obs": None,
    "norm_reward": None,
    "vec_env": "auto",
    "num_workers": None,
    "overlap": "auto",
    "log_dir": "runs",
    "save_dir": "trained_models",
    "log_interval": 10,
    "save_interval": 100,
    "eval_interval": 0,
    "eval_episodes": 10,
    "no_cuda": False,
    "cuda_deterministic": False,
    "num_threads": 1,
    "dist_backend": "auto",
    "dist_timeout": 300.0,
}


class ArgumentParser(argparse.ArgumentParser):
    """Errors as one short paragraph (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\nRun '{self.prog} --help' for every flag and its default.\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default: fixed ones inline, preset-decided ones in the table below."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.dest in PRESET_KEYS:
            return text + " (default: by preset, see below)"
        default = FIXED_DEFAULTS.get(action.dest, COMMON_DEFAULTS.get(action.dest))
        if default is not None and default is not False:
            text += f" (default: {'on' if default is True else default})"
        return text


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="main.py",
        description="Train an on-policy agent (PPO, A2C, ACKTR) on a gymnasium environment.",
        formatter_class=HelpFormatter,
        epilog="Values of the settings marked 'preset' (a typed flag always wins):\n\n" + presets_table(),
    )
    p.set_defaults(**{name: None for name in FIXED_DEFAULTS})
    on_off = argparse.BooleanOptionalAction
    g = p.add_argument_group("algorithm")
    g.add_argument("--algo", choices=ALGOS, help="algorithm to train with")
    g.add_argument(
        "--preset",
        choices=("auto", *PRESETS),
        help="hyper-parameters of a task family; auto: atari for Atari ids, mujoco for continuous control, "
        "else classic",
    )
    g.add_argument("--lr", type=float, help="learning rate")
    g.add_argument("--eps", type=float, help="Adam / RMSprop epsilon")
    g.add_argument("--alpha", type=float, help="RMSprop smoothing constant, a2c")
    g.add_argument("--gamma", type=float, help="discount factor")
    g.add_argument("--use-gae", action=on_off, help="generalized advantage estimation, else n-step returns")
    g.add_argument("--gae-lambda", type=float, help="GAE lambda")
    g.add_argument("--entropy-coef", type=float, help="entropy bonus")
    g.add_argument("--value-loss-coef", type=float, help="value loss weight")
    g.add_argument("--max-grad-norm", type=float, help="global gradient-norm clip")
    g.add_argument("--clip-param", type=float, help="PPO ratio clip")
    g.add_argument("--ppo-epoch", type=int, help="PPO epochs per update")
    g.add_argument("--num-mini-batch", type=int, help="PPO minibatches per epoch")
    g.add_argument("--clip-value-loss", action=on_off, help="PPO clipped value loss")
    g.add_argument("--norm-adv", action=on_off, help="standardise advantages over the batch")
    g.add_argument("--target-kl", type=float, help="stop a PPO update early once approx KL exceeds this")
    g.add_argument("--use-linear-lr-decay", action=on_off, help="decay the learning rate linearly to 0")
    g.add_argument(
        "--hidden-size",
        type=int,
        help="width of the MLP towers / CNN feature layer and of the recurrent layer (default: 64 for vector "
        "observations, 512 for images)",
    )
    g.add_argument("--recurrent-policy", action="store_true", default=None, help="GRU/LSTM after the MLP or CNN")
    g.add_argument("--recurrent-type", choices=("gru", "lstm"), help="recurrent layer of --recurrent-policy")
    g.add_argument(
        "--recurrent-chunk-length",
        type=int,
        help="recurrent PPO trains on sequences of this many steps; must divide --num-steps (default: whole "
        "columns, or the longest chunk that makes --num-mini-batch minibatches)",
    )

    g = p.add_argument_group("environment")
    g.add_argument("--env-name", help="gymnasium id, or module:Class / module:factory")
    g.add_argument("--num-processes", type=int, help="parallel environments per training process")
    g.add_argument("--num-steps", type=int, help="steps per env per update")
    g.add_argument("--num-env-steps", type=int, help="total env steps to train for, all ranks together")
    g.add_argument("--seed", type=int, help="random seed; env i of rank r gets seed + r * num_processes + i")
    g.add_argument(
        "--use-proper-time-limits",
        action=on_off,
        help="bootstrap truncated episodes from V(final obs), else treat truncation as termination",
    )
    g.add_argument("--norm-obs", action=on_off, help="normalise observations")
    g.add_argument("--norm-reward", action=on_off, help="scale rewards by the return std")
    g.add_argument("--vec-env", choices=("auto", "subproc", "sync"), help="how envs are stepped")
    g.add_argument(
        "--num-workers",
        type=int,
        help="worker processes for subproc, besides the main process, which steps a share of the envs "
        "(default: cores - 1)",
    )
    g.add_argument(
        "--overlap",
        choices=("auto", "on", "off"),
        help="step one half of the envs while the policy acts on the other (auto: where it is measured to pay)",
    )

    g = p.add_argument_group("logging and checkpoints")
    g.add_argument("--log-dir", help="each run writes TensorBoard + CSV to its own folder here")
    g.add_argument("--save-dir", help="checkpoints go to SAVE_DIR/ALGO/ENV.pt")
    g.add_argument("--log-interval", type=int, help="updates between console/TensorBoard logs")
    g.add_argument("--save-interval", type=int, help="updates between checkpoints (also at the end and on exit)")
    g.add_argument("--eval-interval", type=int, help="updates between evaluations (0: none)")
    g.add_argument("--eval-episodes", type=int, help="episodes per evaluation")
    g.add_argument("--resume", metavar="PATH", help="continue a run from this checkpoint (typed flags win)")

    g = p.add_argument_group("device and processes")
    g.add_argument("--no-cuda", action="store_true", default=None, help="train on the CPU even with CUDA")
    g.add_argument("--cuda-deterministic", action="store_true", default=None, help="deterministic cuDNN (slower)")
    g.add_argument("--num-threads", type=int, help="torch CPU threads (small nets: 1 is fastest)")
    g.add_argument("--dist-backend", choices=("auto", "gloo", "nccl"), help="torchrun backend (auto: nccl on CUDA)")
    g.add_argument("--dist-timeout", type=float, help="seconds a rank waits for the others before giving up")
    return p


@dataclass
class LaunchRequest:
    """What main.py should do: train ``config``, maybe resuming ``resume`` (a checkpoint path)."""

    config: RunConfig
    resume: str | None = None
    typed: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)  # printed at the start of the run
    checkpoint: dict[str, Any] | None = None  # the loaded --resume checkpoint


def resolve(argv: Sequence[str] | None = None) -> LaunchRequest:
    """Parse and validate ``argv``; raises ConfigError (argparse's own errors exit 2)."""
    from a2c_ppo.resolve import resolve_request

    namespace = build_parser().parse_args(argv)
    typed = {name: value for name, value in vars(namespace).items() if value is not None and name != "resume"}
    return resolve_request(typed, namespace.resume)


def parse_command_line(argv: Sequence[str] | None = None) -> LaunchRequest:
    """``resolve``, with bad input reported as one paragraph on stderr and exit status 2."""
    try:
        return resolve(argv)
    except ConfigError as exc:
        fail(str(exc), prog="main.py")


def parse_args(argv: Sequence[str] | None = None) -> RunConfig:
    """The RunConfig for ``argv`` (exits with status 2 on bad input)."""
    return parse_command_line(argv).config


def fail(message: str, prog: str) -> NoReturn:
    """Print ``message`` as main.py's error paragraph and exit with status 2."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(2)
