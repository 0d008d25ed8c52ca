"""What ``python main.py`` does around the training run: signals, messages, exit codes.

Exit codes: 0 done; 2 bad input (flags, env ids, folders, checkpoints: one paragraph, no
traceback, before any worker starts); 3 an env failed (its own traceback is shown); 4 a NaN
or infinity appeared (nothing saved over the last good checkpoint); 128 + the signal number
for Ctrl-C (130) and SIGTERM (143). In every case but 2 and 4 the last finished update is saved.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from a2c_ppo.errors import ConfigError, NonFiniteError
from a2c_ppo.signals import Interrupted, StopSignals

EXIT_BAD_INPUT = 2
EXIT_ENV_FAILED = 3
EXIT_NON_FINITE = 4


def train_main(argv: Sequence[str] | None = None) -> int:
    """``python main.py``: parse, train, and turn every way a run can end into an exit code."""
    # Not restored at the end: the program exits right after, and must not die of a late signal.
    signals = StopSignals().install()
    try:
        try:
            from a2c_ppo.arguments import fail, parse_command_line

            request = parse_command_line(argv)
            from a2c_ppo.envs.subproc import EnvWorkerError
            from a2c_ppo.train import run

            try:
                run(request.config, checkpoint=request.checkpoint, notes=request.notes, signals=signals)
            except ConfigError as exc:
                fail(str(exc), prog="main.py")
            except EnvWorkerError as exc:
                return _report(f"an environment failed, training stopped: {exc}", EXIT_ENV_FAILED)
            except NonFiniteError as exc:
                return _report(
                    f"training stopped: {exc}. No checkpoint was written after it; the last good one is unchanged. "
                    "Look for the source (a reward or observation of the env, a too large --lr).",
                    EXIT_NON_FINITE,
                )
        except Interrupted as stop:
            sys.stdout.flush()
            sys.stderr.write(f"Stopped by {stop}.\n")
            return stop.exit_code
    finally:
        signals.ignore_further()
    return 0


def _report(message: str, code: int) -> int:
    sys.stdout.flush()
    sys.stderr.write(f"main.py: error: {message}\n")
    return code
