"""Every command-line flag of main.py, its default and help text, and its validation.

Flags whose good value depends on the algorithm default to ``None`` and are filled from
``ALGO_DEFAULTS`` after parsing, so ``--help`` can show each algorithm's default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from a2c_ppo.errors import ConfigError

ALGOS = ("ppo", "a2c", "acktr")

# The PPO column is tuned so that `python main.py` solves CartPole-v1 within 100k steps.
# The a2c / acktr columns solve it within 300k steps on 5/5 seeds (docs/BENCHMARKS.md).
ALGO_DEFAULTS: dict[str, dict[str, float | int | bool]] = {
    "ppo": {
        "lr": 1e-3,
        "num_steps": 32,
        "num_mini_batch": 1,
        "ppo_epoch": 20,
        "gamma": 0.98,
        "gae_lambda": 0.8,
        "entropy_coef": 0.0,
        "norm_adv": True,
    },
    "a2c": {
        "lr": 7e-4,
        "num_steps": 5,
        "num_mini_batch": 1,
        "ppo_epoch": 1,
        "gamma": 0.98,
        "gae_lambda": 0.95,
        "entropy_coef": 0.0,
        "norm_adv": False,
    },
    "acktr": {
        "lr": 0.25,
        "num_steps": 20,
        "num_mini_batch": 1,
        "ppo_epoch": 1,
        "gamma": 0.98,
        "gae_lambda": 0.95,
        "entropy_coef": 0.0,
        "norm_adv": False,
    },
}


def _show(value: float | int | bool) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}"


def _per_algo(name: str) -> str:
    values = ", ".join(f"{algo} {_show(ALGO_DEFAULTS[algo][name])}" for algo in ALGOS)
    return f"(default per --algo: {values})"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default, except ``None`` ones: their help text says what happens."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None:
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train an on-policy agent (PPO, A2C, ACKTR) on a gymnasium environment.",
        formatter_class=HelpFormatter,
    )
    bool_flag = argparse.BooleanOptionalAction
    g = p.add_argument_group("algorithm")
    g.add_argument("--algo", default="ppo", choices=ALGOS, help="algorithm to train with")
    g.add_argument("--lr", type=float, default=None, help=f"learning rate {_per_algo('lr')}")
    g.add_argument("--eps", type=float, default=1e-5, help="Adam / RMSprop epsilon")
    g.add_argument("--alpha", type=float, default=0.99, help="RMSprop smoothing constant (a2c)")
    g.add_argument("--gamma", type=float, default=None, help=f"discount factor {_per_algo('gamma')}")
    g.add_argument(
        "--use-gae", action=bool_flag, default=True, help="generalized advantage estimation (else n-step returns)"
    )
    g.add_argument("--gae-lambda", type=float, default=None, help=f"GAE lambda {_per_algo('gae_lambda')}")
    g.add_argument("--entropy-coef", type=float, default=None, help=f"entropy bonus {_per_algo('entropy_coef')}")
    g.add_argument("--value-loss-coef", type=float, default=0.5, help="value loss weight")
    g.add_argument("--max-grad-norm", type=float, default=0.5, help="global gradient-norm clip")
    g.add_argument("--clip-param", type=float, default=0.2, help="PPO ratio clip")
    g.add_argument("--ppo-epoch", type=int, default=None, help=f"PPO epochs per update {_per_algo('ppo_epoch')}")
    g.add_argument(
        "--num-mini-batch", type=int, default=None, help=f"PPO minibatches per epoch {_per_algo('num_mini_batch')}"
    )
    g.add_argument("--clip-value-loss", action=bool_flag, default=True, help="PPO clipped value loss")
    g.add_argument(
        "--norm-adv",
        action=bool_flag,
        default=None,
        help=f"standardise advantages over the batch {_per_algo('norm_adv')}",
    )
    g.add_argument("--target-kl", type=float, default=None, help="stop a PPO update early once approx KL exceeds this")
    g.add_argument(
        "--use-linear-lr-decay", action=bool_flag, default=True, help="decay the learning rate linearly to 0"
    )
    g.add_argument(
        "--hidden-size",
        type=int,
        default=None,
        help="width of the MLP towers / the CNN feature layer, and of the recurrent layer "
        "(default: 64 for vector observations, 512 for images)",
    )
    g.add_argument(
        "--recurrent-policy", action="store_true", help="use a recurrent policy (GRU/LSTM after the MLP or CNN trunk)"
    )
    g.add_argument(
        "--recurrent-type", default="gru", choices=("gru", "lstm"), help="recurrent layer of --recurrent-policy"
    )
    g.add_argument(
        "--recurrent-chunk-length",
        type=int,
        default=None,
        help="recurrent PPO trains on sequences of this many steps, each starting from its stored "
        "hidden state; must divide --num-steps (default: whole rollout columns of --num-steps)",
    )

    g = p.add_argument_group("environment")
    g.add_argument("--env-name", default="CartPole-v1", help="gymnasium id, or module:Class / module:factory")
    g.add_argument("--num-processes", type=int, default=8, help="parallel environments")
    g.add_argument("--num-steps", type=int, default=None, help=f"steps per env per update {_per_algo('num_steps')}")
    g.add_argument("--num-env-steps", type=int, default=100_000, help="total env steps to train for")
    g.add_argument("--seed", type=int, default=1, help="random seed; env i gets seed + i")
    g.add_argument(
        "--use-proper-time-limits",
        action=bool_flag,
        default=True,
        help="bootstrap truncated episodes from V(final obs) (else treat truncation as termination)",
    )
    g.add_argument(
        "--norm-obs", action=bool_flag, default=None, help="normalise observations (default: on for continuous control)"
    )
    g.add_argument(
        "--norm-reward",
        action=bool_flag,
        default=None,
        help="scale rewards by the return std (default: on for continuous control)",
    )
    g.add_argument("--vec-env", default="auto", choices=("auto", "subproc", "sync"), help="how envs are stepped")
    g.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="worker processes for subproc, not counting the main process, which steps a share of the envs too (default: cores - 1)",
    )

    g = p.add_argument_group("logging and checkpoints")
    g.add_argument("--log-dir", default="runs", help="each run writes TensorBoard + CSV to its own folder here")
    g.add_argument("--save-dir", default="trained_models", help="checkpoints go to SAVE_DIR/ALGO/ENV.pt")
    g.add_argument("--log-interval", type=int, default=10, help="updates between console/TensorBoard logs")
    g.add_argument(
        "--save-interval", type=int, default=100, help="updates between checkpoints (one is always written at the end)"
    )
    g.add_argument("--eval-interval", type=int, default=0, help="updates between evaluations (0: none)")
    g.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation")
    g.add_argument("--resume", default=None, metavar="PATH", help="continue training from this checkpoint")

    g = p.add_argument_group("device")
    g.add_argument("--no-cuda", action="store_true", help="train on the CPU even when CUDA is available")
    g.add_argument("--cuda-deterministic", action="store_true", help="deterministic cuDNN (slower)")
    g.add_argument("--num-threads", type=int, default=1, help="torch CPU threads (small nets: 1 is fastest)")
    return p


def _fill_algo_defaults(args: argparse.Namespace) -> None:
    for name, value in ALGO_DEFAULTS[args.algo].items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def validate(args: argparse.Namespace) -> None:
    """Raise ConfigError with what to change; runs before any env or worker exists."""
    positive = [
        "num_processes",
        "num_steps",
        "num_env_steps",
        "ppo_epoch",
        "num_mini_batch",
        "log_interval",
        "save_interval",
        "eval_episodes",
        "num_threads",
    ]
    for name in positive:
        if getattr(args, name) <= 0:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be a positive integer, got {getattr(args, name)}.")
    for name in ("hidden_size", "recurrent_chunk_length"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}.")
    if args.num_workers is not None and args.num_workers <= 0:
        raise ConfigError(f"--num-workers must be a positive integer, got {args.num_workers}.")
    if args.eval_interval < 0:
        raise ConfigError(f"--eval-interval must be >= 0 (0 disables evaluation), got {args.eval_interval}.")
    for name in ("lr", "eps", "clip_param", "max_grad_norm"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}.")
    if not 0.0 < args.gamma <= 1.0:
        raise ConfigError(f"--gamma must be in (0, 1], got {args.gamma}.")
    if not 0.0 <= args.gae_lambda <= 1.0:
        raise ConfigError(f"--gae-lambda must be in [0, 1], got {args.gae_lambda}.")
    if args.target_kl is not None and args.target_kl <= 0:
        raise ConfigError(f"--target-kl must be > 0, got {args.target_kl}.")
    batch = args.num_processes * args.num_steps
    if batch % args.num_mini_batch != 0:
        raise ConfigError(
            f"the batch of --num-processes x --num-steps = {args.num_processes} x {args.num_steps} = {batch} "
            f"samples does not split into --num-mini-batch {args.num_mini_batch} equal minibatches; "
            "choose a --num-mini-batch that divides it."
        )
    if args.recurrent_policy and args.algo == "ppo":
        _validate_recurrent_chunks(args)
    if args.algo != "ppo":
        ppo_only = {
            "--ppo-epoch": args.ppo_epoch != 1,
            "--num-mini-batch": args.num_mini_batch != 1,
            "--target-kl": args.target_kl is not None,
        }
        for flag, used in ppo_only.items():
            if used:
                raise ConfigError(
                    f"{flag} only applies to --algo ppo; --algo {args.algo} makes one update over the whole "
                    f"rollout per iteration. Drop {flag} or use --algo ppo."
                )
    if args.algo == "acktr" and args.recurrent_policy:
        raise ConfigError(
            "--algo acktr does not support --recurrent-policy: K-FAC keeps Kronecker factors only for "
            "Linear and Conv2d layers and cannot precondition the recurrent layer's shared weights. "
            "Use --algo a2c or --algo ppo for a recurrent policy, or drop --recurrent-policy."
        )
    if args.num_env_steps < batch:
        raise ConfigError(
            f"--num-env-steps {args.num_env_steps} is less than one update's batch "
            f"({batch} = --num-processes x --num-steps); raise it or shrink the batch."
        )
    from a2c_ppo.envs import check_env_id

    check_env_id(args.env_name)


def _validate_recurrent_chunks(args: argparse.Namespace) -> None:
    """Recurrent PPO minibatches are sets of whole sequences: there must be enough of them."""
    length = args.recurrent_chunk_length or args.num_steps
    if args.num_steps % length != 0:
        raise ConfigError(
            f"--recurrent-chunk-length {length} does not divide --num-steps {args.num_steps}; "
            "choose a chunk length that divides it."
        )
    chunks = args.num_processes * (args.num_steps // length)
    if chunks < args.num_mini_batch or chunks % args.num_mini_batch != 0:
        hint = "" if args.recurrent_chunk_length else " (default chunk length: whole columns of --num-steps)"
        raise ConfigError(
            f"a recurrent policy trains on sequences of --recurrent-chunk-length {length} steps{hint}: "
            f"--num-processes x --num-steps / chunk length = {args.num_processes} x {args.num_steps} / {length} "
            f"= {chunks} sequences, which do not split into --num-mini-batch {args.num_mini_batch} equal "
            "minibatches; use a shorter --recurrent-chunk-length, more --num-processes, or a "
            "--num-mini-batch that divides the number of sequences."
        )


def _explicit_flags(argv: Sequence[str] | None) -> set[str]:
    """The destinations of the flags actually typed in ``argv``."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _merge_resumed_config(args: argparse.Namespace, argv: Sequence[str] | None) -> None:
    """With --resume, flags not typed now take the checkpoint's values (run folder too)."""
    if not os.path.isfile(args.resume):
        raise ConfigError(f"--resume {args.resume!r}: no such checkpoint file.")
    from a2c_ppo.checkpoint import load_checkpoint

    saved = load_checkpoint(args.resume)["config"]
    typed = _explicit_flags(argv)
    for name, value in saved.items():
        if name not in typed and name != "resume":
            setattr(args, name, value)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and validate ``argv``; bad input exits with a one-paragraph message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.resume is not None:
            _merge_resumed_config(args, argv)
        _fill_algo_defaults(args)
        validate(args)
    except ConfigError as exc:
        parser.error(str(exc))
    return args
