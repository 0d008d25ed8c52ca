"""What ``python main.py`` does around the training run: signals, messages, exit codes
(``errors.py`` lists them). In every ending but bad input and a NaN the last finished update
is saved.

This module imports nothing heavy at load time: ``train_main`` installs the Ctrl-C / SIGTERM
handlers first and only then imports torch and the rest, so a Ctrl-C at any moment of the
start-up ends the program with one line and exit status 130, never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from a2c_ppo import console
from a2c_ppo.console import fail
from a2c_ppo.errors import (
    EXIT_ENV_FAILED,
    EXIT_NON_FINITE,
    EXIT_PEER_FAILED,
    EXIT_WRITE_FAILED,
    ConfigError,
    NonFiniteError,
    NonFiniteRolloutError,
    RunFolderLostError,
    WriteFailedError,
)
from a2c_ppo.signals import Interrupted, StopSignals
from a2c_ppo.startup import collector_paused

if TYPE_CHECKING:
    from a2c_ppo.config import RunConfig
    from a2c_ppo.distributed import DistContext
    from a2c_ppo.resolve import LaunchRequest


def train_main(argv: Sequence[str] | None = None) -> int:
    """``python main.py``: parse, train, and turn every way a run can end into an exit code."""
    # Not restored at the end: the program exits right after, and must not die of a late signal.
    signals = StopSignals().install()
    try:
        return _train(argv, signals)
    except RunFailed as failure:
        return failure.exit_code
    except Interrupted as stop:
        console.err.line(f"Stopped by {stop}.")
        return stop.exit_code
    finally:
        signals.ignore_further()


def _train(argv: Sequence[str] | None, signals: StopSignals) -> int:
    # C++ extensions (torch at import, simulators as their first env is built) can call back
    # into Python, and an exception raised there by a Ctrl-C aborts the process (pybind11:
    # "terminate called"). So a Ctrl-C during start-up waits for it to finish (a second one
    # does not: a user's env that never finishes building can still be stopped).
    with signals.deferred(escalate=True), collector_paused():
        from a2c_ppo.arguments import parse_command_line, settings_table
        from a2c_ppo.distributed import process_group
        from a2c_ppo.envs.subproc import EnvWorkerError

        try:
            request = parse_command_line(argv)
        except EnvWorkerError as exc:  # the start-up check's env ran past --env-timeout
            _report(f"an environment failed: {exc}", EXIT_ENV_FAILED)
    if request.show_settings:
        console.out.line(settings_table(request))
        return 0
    try:
        ctx = launch_context(request.config)
        request.notes += ignored_here(request.typed, ctx)
    except ConfigError as exc:  # the same on every rank of a node (its command line and machine)
        fail(str(exc), prog="main.py", node_wide=True)
    with process_group(ctx, request.config.dist_timeout):
        return _run_and_report(request, signals, ctx)


class RunFailed(Exception):
    """A failure already reported to the user; carries the exit status. Raised (not returned)
    so that the process group is left on its error path, without a final barrier."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


def _run_and_report(request: LaunchRequest, signals: StopSignals, ctx: DistContext) -> int:
    """Train, reporting a failure at once: under torchrun, before the group is torn down and
    the launcher stops this rank because another one exited. RunFailed after the report."""
    from a2c_ppo.distributed import PeerFailedError, PeerRefusedError
    from a2c_ppo.envs.subproc import EnvWorkerError
    from a2c_ppo.session import launch

    try:
        launch(request, signals=signals, ctx=ctx)
    except ConfigError as exc:  # rank 0's refusal: said by rank 0, and by each other node's first rank
        fail(str(exc), prog="main.py", node_wide=isinstance(exc, PeerRefusedError))
    except EnvWorkerError as exc:  # under torchrun, whose rank: env 0 of each rank is another env
        where = f"rank {ctx.rank} of {ctx.world_size}: " if ctx.is_distributed else ""
        _report(f"an environment failed, training stopped: {where}{exc}", EXIT_ENV_FAILED)
    except PeerFailedError as exc:
        _report(f"training stopped: {exc}", EXIT_PEER_FAILED)
    except NonFiniteError as exc:
        if isinstance(exc, NonFiniteRolloutError):  # the env's own value: the message names the env
            saved = "The checkpoint of the last finished update is saved (where one had finished)."
        else:
            saved = (
                "No checkpoint was written after it; the last good one is unchanged. Look for the source (a reward "
                "or observation of the env, a too large --lr)."
            )
        _report(f"training stopped: {exc}. {saved}", EXIT_NON_FINITE)
    except RunFolderLostError as exc:
        _report(f"training stopped: {exc}; nothing more was written (the folder is not made again). Resume a "
                "checkpoint kept elsewhere (a moved folder's), or start a new run.", EXIT_WRITE_FAILED)  # fmt: skip
    except WriteFailedError as exc:
        fix = "free space (or restore the folder or its permissions) and"
        if exc.checkpoint is None:
            then = f"No checkpoint had been written yet; {fix} start the run again."
        elif exc.training_finished:
            then = f"The run's checkpoint, {exc.checkpoint}, is whole; {fix} resume it to write the rest "
            then += "(it trains no more)."
        else:
            then = f"The last checkpoint written, {exc.checkpoint}, is whole, no partial file left; {fix} continue "
            then += "with --resume."
        what = "training finished, but" if exc.training_finished else "training stopped:"
        _report(f"{what} {exc}. {then}", EXIT_WRITE_FAILED)
    return 0


def launch_context(config: RunConfig) -> DistContext:
    """This process's place in a torchrun launch (a single process without one), checked."""
    from a2c_ppo.builders import select_device
    from a2c_ppo.distributed import check_algorithm, resolve_context

    ctx = resolve_context(use_cuda=select_device(config).type == "cuda", backend=config.dist_backend)
    check_algorithm(config.algo, ctx)
    if config.num_env_steps < config.batch_size * ctx.world_size:
        raise ConfigError(
            f"--num-env-steps {config.num_env_steps} is less than one update of all {ctx.world_size} ranks "
            f"({config.batch_size * ctx.world_size} steps); raise it or start fewer ranks."
        )
    return ctx


def ignored_here(typed: set[str], ctx: DistContext) -> list[str]:
    """Notes for typed flags this machine or launch does not use: accepted rather than refused,
    so that one command line serves a laptop, a GPU box and a torchrun launch."""
    notes = []
    from a2c_ppo.declaration import flag_name

    dist_flags = [flag_name(name) for name in ("dist_backend", "dist_timeout") if name in typed]
    if dist_flags and not ctx.is_distributed:
        notes.append(f"{' and '.join(dist_flags)} ignored: this run is not launched by torchrun.")
    if "cuda_deterministic" in typed and ctx.device.type != "cuda":
        notes.append("--cuda-deterministic ignored: this run trains on the CPU.")
    return notes


def _report(message: str, code: int) -> NoReturn:
    console.err.line(f"main.py: error: {message}")
    raise RunFailed(code)
