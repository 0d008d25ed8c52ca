"""Launchers for data-parallel tests on loopback: ranks in spawned processes, or torchrun.

Every launch has a deadline; whatever is still alive at the deadline is killed, so a test
that hangs in a collective fails instead of hanging the suite.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
LOOPBACK_ENV = {"MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_dynamo_imported() -> None:
    """Raises if ``torch._dynamo`` was imported in this rank. torch 2.13 then keeps the gloo
    group alive past ``destroy_process_group`` (a C++ reference), and its worker threads,
    releasing finished work at interpreter exit, abort the process (SIGABRT, about one run in
    five). ``main.py`` never imports it (``a2c_ppo.algo``'s optimizers avoid it); a test
    rank must not either, e.g. through a plain ``torch.optim`` optimizer."""
    if "torch._dynamo" in sys.modules:
        raise RuntimeError("torch._dynamo was imported in a data-parallel rank; see no_dynamo_imported's docstring")


def _rank_main(fn: Callable[..., Any], rank: int, world_size: int, port: int, out_dir: str, args: tuple) -> None:
    os.environ.update(LOOPBACK_ENV)
    os.environ.update(
        {"MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank)}
    )
    try:
        result = fn(*args)
        no_dynamo_imported()
    except BaseException:
        with open(os.path.join(out_dir, f"rank{rank}.err"), "w") as f:
            f.write(traceback.format_exc())
        raise
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


@dataclass
class RankRun:
    exitcodes: list[int | None]  # None: still running at the deadline (then killed)
    results: list[Any]  # what each rank's function returned (None where it did not finish)
    errors: list[str]  # the traceback of each rank that raised ("" for the others)
    elapsed_s: float


def run_ranks(fn: Callable[..., Any], world_size: int, out_dir: str, *args: Any, deadline_s: float = 60.0) -> RankRun:
    """Runs ``fn(*args)`` in ``world_size`` spawned processes set up like torchrun's ranks
    (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT on 127.0.0.1); ``fn`` must be importable."""
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [
        ctx.Process(target=_rank_main, args=(fn, rank, world_size, port, out_dir, args)) for rank in range(world_size)
    ]
    start = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(max(0.0, deadline_s - (time.monotonic() - start)))
    elapsed = time.monotonic() - start
    exitcodes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    results, errors = [], []
    for rank in range(world_size):
        path = os.path.join(out_dir, f"rank{rank}.pt")
        results.append(torch.load(path, weights_only=False) if os.path.exists(path) else None)
        error_path = Path(out_dir, f"rank{rank}.err")
        errors.append(error_path.read_text() if error_path.exists() else "")
    return RankRun(exitcodes, results, errors, elapsed)


def torchrun(script_args: list[str], torchrun_args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Starts ``python -m torch.distributed.run <torchrun_args> <script_args>``; wait on it
    with ``finish``."""
    # PYTHONFAULTHANDLER: a process sent SIGABRT prints every thread's Python stack (``finish``).
    full_env = {**os.environ, **LOOPBACK_ENV, "PYTHONPATH": ROOT, "PYTHONFAULTHANDLER": "1", **(env or {})}
    full_env.pop("MASTER_PORT", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", *torchrun_args, *script_args]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_no_core_files,
    )


def _no_core_files() -> None:
    """The SIGABRT of ``finish`` must not leave core files in the repository."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (torchrun puts each rank in a session of its own, so
    killing torchrun's process group would not reach them)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found.extend(below)
        todo.extend(below)
    return found


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def finish(proc: subprocess.Popen, deadline_s: float) -> tuple[int | None, str]:
    """Waits for a ``torchrun`` launch; at the deadline kills it and every process below it.
    Returns (exit code, None if killed at the deadline; combined output). A launch killed at the
    deadline is first sent SIGABRT, so the output shows where each of its processes stood
    (``torchrun`` sets PYTHONFAULTHANDLER): a hang fails with its stacks, not in silence."""
    try:
        out, _ = proc.communicate(timeout=deadline_s)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        below = descendants(proc.pid)
        # The ranks first: a launcher that dies first may take its ranks down with SIGKILL.
        _signal_all(below[::-1], signal.SIGABRT)
        time.sleep(1.0)  # the stacks reach the pipe
        _signal_all([proc.pid], signal.SIGABRT)
        time.sleep(1.0)
        _signal_all([proc.pid, *below], signal.SIGKILL)
        out, _ = proc.communicate()
        return None, f"{out}\n[killed at the {deadline_s:g} s deadline; the stacks above are from SIGABRT]"


def alive(pids: list[int]) -> list[int]:
    """The pids among ``pids`` that still run (zombies count as gone)."""
    running = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        if state != "Z":
            running.append(pid)
    return running


PID_DIR_VARIABLE = "A2C_PPO_DIST_TEST_PID_DIR"
RAISE_AT_VARIABLE = "A2C_PPO_DIST_TEST_RAISE_AT"
FAIL_RANK_VARIABLE = "A2C_PPO_DIST_TEST_FAIL_RANK"


def make_pid_env():
    """A CounterEnv (for ``make_vec_envs("tests.dist_helpers:make_pid_env", ...)``) that leaves
    its process's pid in ``$A2C_PPO_DIST_TEST_PID_DIR`` and raises at step
    ``$A2C_PPO_DIST_TEST_RAISE_AT`` when that is set, on the rank ``$A2C_PPO_DIST_TEST_FAIL_RANK``
    only when that is set (env workers inherit torchrun's ``RANK``)."""
    from tests.envs_for_tests import CounterEnv

    pid_dir = os.environ.get(PID_DIR_VARIABLE)
    if pid_dir:
        open(os.path.join(pid_dir, str(os.getpid())), "w").close()
    raise_at = os.environ.get(RAISE_AT_VARIABLE)
    fail_rank = os.environ.get(FAIL_RANK_VARIABLE)
    fails = bool(raise_at) and fail_rank in (None, os.environ.get("RANK"))
    return CounterEnv(raise_at=int(raise_at) if fails else None)


def make_env_unbuildable_on_one_rank():
    """CartPole-v1, except on the rank ``$A2C_PPO_DIST_TEST_FAIL_RANK``, which cannot build it
    (an env that binds a port, say): that rank's start-up check refuses it alone."""
    import gymnasium as gym

    if os.environ.get("RANK") == os.environ.get(FAIL_RANK_VARIABLE):
        raise RuntimeError("the port this env listens on is taken")
    return gym.make("CartPole-v1")


SLOW_RANK_VARIABLE = "A2C_PPO_DIST_TEST_SLOW_RANK"


def make_slow_rank_env():
    """CartPole-v1 that takes 10 ms a step on rank ``$A2C_PPO_DIST_TEST_SLOW_RANK``, so that
    the other ranks wait for that one in their collectives."""
    import gymnasium as gym

    class Slow(gym.Wrapper):
        def step(self, action):
            time.sleep(0.01)
            return self.env.step(action)

    env = gym.make("CartPole-v1")
    return Slow(env) if os.environ.get("RANK") == os.environ.get(SLOW_RANK_VARIABLE) else env


def rank_process(launcher: int, rank: int) -> int:
    """The pid of rank ``rank`` of the torchrun launch ``launcher`` (its child with that RANK)."""
    for pid in descendants(launcher):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if parent == launcher and f"RANK={rank}".encode() in environ:
            return pid
    raise LookupError(f"no rank {rank} below pid {launcher}")


def recorded_pids(pid_dir: str) -> list[int]:
    return [int(name) for name in os.listdir(pid_dir)]


SEED_DIR_VARIABLE = "A2C_PPO_DIST_TEST_SEED_DIR"


def make_seed_env():
    """CartPole-v1 (for ``--env-name tests.dist_helpers:make_seed_env``) that records every
    reset seed as a file ``RANK-SEED`` in ``$A2C_PPO_DIST_TEST_SEED_DIR``."""
    import gymnasium as gym

    class SeedRecorder(gym.Wrapper):
        def reset(self, *, seed=None, options=None):
            if seed is not None:
                path = os.path.join(os.environ[SEED_DIR_VARIABLE], f"{os.environ.get('RANK', '0')}-{seed}")
                open(path, "w").close()
            return self.env.reset(seed=seed, options=options)

    return SeedRecorder(gym.make("CartPole-v1"))
