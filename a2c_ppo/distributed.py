"""Data-parallel training under torchrun: process group, rank roles and all-reduce helpers.

torchrun (c10d rendezvous) starts one process per rank and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Every rank runs its own vector envs and
the same updates; gradients and every data-dependent statistic are summed across ranks, so
parameters stay identical. Without those variables a run is a single process and nothing
here talks to anyone. The process group has a timeout, so a rank that died makes the others
fail in their next collective instead of waiting for ever.

In a training loop, every rank: ``resolve_context`` (before anything starts, so bad launches
are ConfigErrors), ``with process_group(ctx, timeout)``, ``broadcast_module(policy)``, the
algorithm built with ``ctx.reducer()``, and at every update boundary
``sync_running_stats`` (normalisation) and, where it logs, ``pooled_means`` (episode
statistics) and ``check_in_sync``; rank 0 (``ctx.is_main``) alone writes logs and checkpoints.
Env worker processes start from the forkserver, never by forking a process that holds the
group's sockets.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from a2c_ppo.algo.common import Reducer
from a2c_ppo.console import TORCHRUN_VARIABLES
from a2c_ppo.envs.running_stats import RunningMeanStd
from a2c_ppo.errors import ConfigError
from a2c_ppo.signals import Interrupted

BACKENDS = ("nccl", "gloo")
DEFAULT_TIMEOUT_S = 300.0
JOIN_POLL_S = 0.1  # how often joining the group looks up from its wait


class PeerFailedError(RuntimeError):
    """A collective failed: another rank stopped (its own output says why) or did not answer
    within the process group's timeout."""


@contextmanager
def _collective(what: str) -> Iterator[None]:
    """Turns a failed collective (gloo: RuntimeError; NCCL: DistBackendError, a RuntimeError)
    into a PeerFailedError with a one-line message."""
    try:
        yield
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PeerFailedError(
            f"rank {dist.get_rank()} of {dist.get_world_size()}: {what} failed because another rank stopped "
            f"(see its message) or did not answer within --dist-timeout, as rank 0 evaluating or saving may not "
            f"({first_line})"
        ) from exc


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel run (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: no process group

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.backend is not None

    def reducer(self) -> TorchDistReducer | None:
        """The reducer the algorithms take, or None for a single process."""
        return TorchDistReducer(self.world_size, self.device) if self.is_distributed else None


def _env_int(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name)
    if value is None or not value.strip().lstrip("-").isdigit():
        raise ConfigError(
            f"torchrun variable {name} is {value!r}, not an integer; launch with torchrun, or set "
            f"{', '.join(TORCHRUN_VARIABLES)} together (e.g. from SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID)."
        )
    return int(value)


def resolve_context(*, use_cuda: bool, backend: str = "auto", environ: Mapping[str, str] | None = None) -> DistContext:
    """This process's context from torchrun's variables, checked before anything starts.

    ``use_cuda``: CUDA is available and wanted; rank ``r`` then uses GPU ``LOCAL_RANK``.
    ``backend``: ``--dist-backend``; ``auto`` is ``nccl`` with CUDA, ``gloo`` on CPU. Without
    torchrun it is ignored (a resumed run may carry the one it was trained with).
    Raises ConfigError for inconsistent variables or a backend the device cannot use.
    """
    environ = os.environ if environ is None else environ
    device = torch.device("cuda") if use_cuda else torch.device("cpu")
    if not any(name in environ for name in TORCHRUN_VARIABLES):
        return DistContext(device=device)
    rank, world_size, local_rank = (_env_int(environ, name) for name in TORCHRUN_VARIABLES)
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ConfigError(
            f"torchrun variables are inconsistent: RANK={rank}, WORLD_SIZE={world_size}, LOCAL_RANK={local_rank} "
            "(need 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0)."
        )
    if use_cuda:
        num_gpus = torch.cuda.device_count()
        if local_rank >= num_gpus:
            raise ConfigError(
                f"LOCAL_RANK {local_rank} has no GPU of its own: this node shows {num_gpus} GPU(s). Start at most "
                f"{num_gpus} processes per node (--nproc_per_node), or train on CPU with --no-cuda."
            )
        device = torch.device("cuda", local_rank)
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if backend not in BACKENDS:
        raise ConfigError(f"--dist-backend {backend!r} is not one of {', '.join(BACKENDS)}.")
    if backend == "nccl" and not use_cuda:
        raise ConfigError("--dist-backend nccl needs CUDA GPUs; on CPU use --dist-backend gloo (the CPU default).")
    return DistContext(rank, world_size, local_rank, device, backend)


@contextmanager
def process_group(ctx: DistContext, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """Joins the process group for the ``with`` block (no-op for a single process).

    Every collective fails after ``timeout_s`` seconds without its peers. The group is
    destroyed on the way out (after a barrier), also when the block raises under gloo.
    Nothing in the block may import ``torch._dynamo`` (``torch.compile``, or a plain
    ``torch.optim`` optimizer's first call): torch 2.13 then keeps a gloo group alive past
    its destruction, and its worker threads abort the process at exit about one time in five.
    """
    if not ctx.is_distributed:
        yield
        return
    if timeout_s <= 0:
        raise ConfigError(f"--dist-timeout must be positive (got {timeout_s}).")
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    _join_group(ctx, timeout_s)
    try:
        yield
    except BaseException:
        # Gloo's teardown is local; NCCL's may wait for peers that are gone: skip it.
        if ctx.backend == "gloo":
            dist.destroy_process_group()
        raise
    # Nobody tears down the group (rank 0 hosts its store) while a peer still uses it.
    with _collective("the final barrier"):
        dist.barrier()
    dist.destroy_process_group()


def _join_group(ctx: DistContext, timeout_s: float) -> None:
    """``dist.init_process_group``, waited for where signals are heard. Its rendezvous waits in
    C++ until every rank has joined and no Python signal handler runs meanwhile: a rank that
    ended before joining (its own start-up check refused, its node failed) left the others
    waiting, deaf to torchrun's SIGTERM, until its SIGKILL 30 s later, without a word."""
    failure: list[BaseException] = []

    def join() -> None:
        try:
            if ctx.device.type == "cuda":  # the current device is per thread
                torch.cuda.set_device(ctx.device)
            dist.init_process_group(
                ctx.backend,
                timeout=timedelta(seconds=timeout_s),
                device_id=ctx.device if ctx.device.type == "cuda" else None,
            )
        except BaseException as exc:  # raised again in the main thread
            failure.append(exc)

    # a daemon: a signal ends the program while the rendezvous may still wait for a rank that is gone
    joining = threading.Thread(target=join, name="a2c_ppo-join-group", daemon=True)
    joining.start()
    try:
        while joining.is_alive():
            joining.join(JOIN_POLL_S)  # the main thread's waits let a SIGTERM's handler run
    except Interrupted as stop:
        during = "while waiting for every rank to join (a rank that ended first says why)"
        raise Interrupted(stop.signum, during) from None
    if failure:
        raise failure[0]


class TorchDistReducer:
    """Implements ``a2c_ppo.algo.common.Reducer`` with ``torch.distributed.all_reduce``.

    Tensors off the communication device (e.g. CPU statistics under NCCL) are staged there
    and copied back, so callers need not care which backend runs.
    """

    def __init__(self, world_size: int, device: torch.device) -> None:
        self.world_size = world_size
        self.device = device

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sums ``tensor`` over all ranks, in place; returns it."""
        staged = tensor if tensor.device == self.device else tensor.to(self.device)
        with _collective("an all-reduce"):
            dist.all_reduce(staged, op=dist.ReduceOp.SUM)
        if staged is not tensor:
            tensor.copy_(staged)
        return tensor


class PeerRefusedError(ConfigError):
    """Rank 0 refused to start (its run folder in use, W&B not logged in): every other rank
    stops with it, as for bad input, before its envs start."""


def share_refusal(refusal: ConfigError | None, ctx: DistContext) -> None:
    """Raise rank 0's ``refusal`` to start on every rank (``PeerRefusedError`` on the others;
    None: all go on). A collective: every rank calls it at the same point."""
    if ctx.is_distributed:
        message = [None if refusal is None else str(refusal)]
        with _collective("the start"):
            dist.broadcast_object_list(message, src=0)
        if message[0] is not None and refusal is None:
            raise PeerRefusedError(f"rank 0 did not start: {message[0]}")
    if refusal is not None:
        raise refusal


def broadcast_module(module: nn.Module, ctx: DistContext) -> None:
    """Copies rank 0's parameters and buffers to every rank (no-op for a single process)."""
    if not ctx.is_distributed:
        return
    with torch.no_grad(), _collective("the broadcast of rank 0's parameters"):
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def module_digest(module: nn.Module) -> str:
    """A short digest of the exact bytes of ``module``'s parameters and buffers."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_in_sync(module: nn.Module, ctx: DistContext, when: str) -> None:
    """Raises RuntimeError unless ``module`` is bit-identical on every rank (no-op for a
    single process). A collective: call it on every rank at the same point (``when`` names
    it in the message, e.g. "after update 12")."""
    if not ctx.is_distributed:
        return
    digests: list[str | None] = [None] * ctx.world_size
    with _collective("the parameter check"):
        dist.all_gather_object(digests, module_digest(module))
    if len(set(digests)) > 1:
        differ = [rank for rank, digest in enumerate(digests) if digest != digests[0]]
        raise RuntimeError(
            f"data-parallel ranks diverged {when}: the model on rank(s) {differ} differs from rank 0's. "
            "Every rank must take the same steps from the same all-reduced values; this is a bug."
        )


def sync_running_stats(rms_list: Sequence[RunningMeanStd], reducer: Reducer | None) -> None:
    """Gives every rank the statistics of all ranks' data, with one all-reduce.

    Call on every rank at the same point (an update boundary). Afterwards each ``rms`` equals
    what one ``RunningMeanStd`` would hold after seeing every rank's batches since the last
    sync, up to rounding.
    """
    if reducer is None or not rms_list:
        return
    payloads = [rms.sync_payload() for rms in rms_list]
    summed = reducer.all_reduce_sum(torch.from_numpy(np.concatenate(payloads))).numpy()
    offset = 0
    for rms, payload in zip(rms_list, payloads):
        rms.apply_sync(summed[offset : offset + payload.size])
        offset += payload.size


def pooled_means(series: Sequence[Sequence[float]], reducer: Reducer | None) -> tuple[float, ...] | None:
    """Means over all ranks of equally long series (e.g. recent episode returns and lengths).

    Each rank passes its own values; the result, one mean per series, pools every rank's
    values and is the same on every rank; None when no rank has any.
    """
    count = len(series[0])
    totals = np.array([count, *(float(np.sum(s)) for s in series)], dtype=np.float64)
    if reducer is not None:
        totals = reducer.all_reduce_sum(torch.from_numpy(totals)).numpy()
    if totals[0] == 0:
        return None
    return tuple(float(t / totals[0]) for t in totals[1:])


def stop_requests(stop: bool, signum: int | None, reducer: Reducer | None) -> tuple[bool, int | None]:
    """Every rank's requests to stop at an update boundary, the same on every rank: whether one
    asked to stop (``stop``: a callback), and the signal one received (``signum``: SIGTERM
    before SIGINT; None: none did)."""
    if reducer is None:
        return stop, signum
    flags = [float(stop), float(signum == signal.SIGINT), float(signum == signal.SIGTERM)]
    counts = reducer.all_reduce_sum(torch.tensor(flags, dtype=torch.float64)).tolist()
    return counts[0] > 0, signal.SIGTERM if counts[2] else signal.SIGINT if counts[1] else None


def check_algorithm(algo: str, ctx: DistContext) -> None:
    """ACKTR's K-FAC factors are per-process statistics: refuse it under data parallelism."""
    if algo == "acktr" and ctx.world_size > 1:
        raise ConfigError(
            f"--algo acktr cannot run data-parallel (WORLD_SIZE={ctx.world_size}): its K-FAC curvature factors "
            "are not all-reduced across ranks. Use --algo ppo or --algo a2c under torchrun, or run ACKTR alone."
        )
