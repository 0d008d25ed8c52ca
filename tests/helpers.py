"""Small builders shared by the tests."""

from __future__ import annotations

import contextlib
import csv
import glob
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import torch

from a2c_ppo.distributions import action_shape
from a2c_ppo.model import Policy
from a2c_ppo.storage import RolloutStorage


def rollout_from_policy(
    policy: Policy, obs_space: gym.spaces.Box, action_space: gym.Space, T: int = 16, N: int = 4, seed: int = 0
) -> RolloutStorage:
    """A storage filled by ``policy.act`` on random observations, with returns computed."""
    g = torch.Generator().manual_seed(seed)
    dim, dtype = action_shape(action_space)
    storage = RolloutStorage(T, N, obs_space.shape, dim, dtype, policy.recurrent_hidden_state_size)
    storage.obs[0].copy_(torch.randn(N, *obs_space.shape, generator=g))
    for t in range(T):
        with torch.no_grad():
            value, action, log_prob, hxs = policy.act(
                storage.obs[t], storage.recurrent_hidden_states[t], storage.masks[t]
            )
        done = torch.rand(N, 1, generator=g) < 0.1
        storage.insert(
            obs=torch.randn(N, *obs_space.shape, generator=g),
            recurrent_hidden_states=hxs,
            actions=action,
            action_log_probs=log_prob,
            value_preds=value,
            rewards=torch.randn(N, 1, generator=g),
            terminated=done,
            truncated=torch.zeros(N, 1, dtype=torch.bool),
            bootstrap_values=torch.zeros(N, 1),
        )
    with torch.no_grad():
        next_value = policy.get_value(storage.obs[-1], storage.recurrent_hidden_states[-1], storage.masks[-1])
    storage.compute_returns(next_value, use_gae=True, gamma=0.99, gae_lambda=0.95)
    return storage


BOX_OBS = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def local_run_flags(tmp_path: os.PathLike) -> list[str]:
    """Flags for a small test run: in-process envs, one thread, output folders under ``tmp_path``."""
    return ["--vec-env", "sync", "--num-threads", "1"] + output_flags(tmp_path)


def output_flags(tmp_path: os.PathLike) -> list[str]:
    """``--log-dir tmp_path/runs --save-dir tmp_path/models``."""
    return ["--log-dir", os.path.join(tmp_path, "runs"), "--save-dir", os.path.join(tmp_path, "models")]


def run_checkpoint(tmp_path: os.PathLike, log_dir: str = "runs") -> str:
    """The checkpoint of the one run under ``tmp_path/runs`` (RUN_FOLDER/checkpoint.pt)."""
    (path,) = glob.glob(os.path.join(tmp_path, log_dir, "*", "checkpoint.pt"))
    return path


def run_main(*argv: str, timeout: int = 180) -> str:
    """Run ``python main.py ARGV`` as a user would; returns its stdout (it must exit 0)."""
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def progress_rows(log_dir: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of ``progress.csv`` of the one run folder under ``log_dir``."""
    (run_dir,) = glob.glob(os.path.join(log_dir, "*"))
    with open(os.path.join(run_dir, "progress.csv")) as f:
        return list(csv.DictReader(f))


PID_DIR_VARIABLE = "A2C_PPO_TEST_PID_DIR"


def make_crashing_env() -> gym.Env:
    """An env (for ``--env-name tests.helpers:make_crashing_env``) whose step 20 raises.

    The process that builds it leaves its pid in the folder ``$A2C_PPO_TEST_PID_DIR``.
    """
    from tests.envs_for_tests import CounterEnv

    pid_dir = os.environ.get(PID_DIR_VARIABLE)
    if pid_dir:
        open(os.path.join(pid_dir, str(os.getpid())), "w").close()
    return CounterEnv(raise_at=20)


def assert_exact_resume(tmp_path: os.PathLike, flags: list[str], steps: int) -> dict:
    """Trains ``flags`` for ``steps`` env steps in one go and in two halves (the second with
    ``--resume``) and asserts the same algorithm state and parameters; the halfway checkpoint."""
    from a2c_ppo.arguments import resolve
    from a2c_ppo.checkpoint import load_checkpoint
    from a2c_ppo.session import launch

    def train(folder: str, budget: int, *extra: str) -> str:
        out = os.path.join(tmp_path, folder)
        argv = [*flags, "--num-env-steps", str(budget), "--log-dir", out, "--save-dir", os.path.join(out, "m"), *extra]
        request = resolve(argv)
        return launch(request).checkpoint

    whole = load_checkpoint(train("a", steps))
    half = train("b", steps // 2)
    halfway = load_checkpoint(half)
    resumed = load_checkpoint(train("b", steps, "--resume", half))
    assert whole["algorithm"] == resumed["algorithm"]
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    return halfway


class SigtermNotHandled(Exception):
    """What ``sigterm_caught_by_the_test`` raises where the code under test installed no SIGTERM handler."""


@contextlib.contextmanager
def sigterm_caught_by_the_test() -> Iterator[None]:
    """For a test that sends SIGTERM to its own process: where the code under test does not
    handle it, the test fails (SigtermNotHandled) instead of pytest dying of it."""

    def unhandled(signum: int, frame: object) -> None:
        raise SigtermNotHandled("SIGTERM reached the test's handler: the command installed none")

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
