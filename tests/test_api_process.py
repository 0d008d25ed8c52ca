"""The Python API embedded in a researcher's process: what ``train`` and ``load`` leave behind
for forked children, for other threads and for the calls after them."""

from __future__ import annotations

import glob
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

import a2c_ppo
from a2c_ppo.api import train
from a2c_ppo.checkpoint import load_checkpoint
from tests.helpers import ROOT

SMALL = {"num_processes": 2, "num_steps": 16, "num_env_steps": 32, "vec_env": "sync"}

#: A script that, in a fresh process (torch's thread pool untouched: this test process's own
#: may not be), runs ``{call}`` with 2 torch threads, then forks a child that builds a network
#: (an orthogonal init: a LAPACK call that runs on torch's OpenMP threads). GNU OpenMP hangs a
#: forked child at its first parallel region where the parent had run one on several threads.
FORK_AFTER = """
import faulthandler, multiprocessing as mp, sys, torch
import a2c_ppo

def child():
    faulthandler.dump_traceback_later(20, exit=True)  # a hang ends the child, exit 1
    torch.nn.init.orthogonal_(torch.empty(64, 64))

if __name__ == "__main__":
    torch.set_num_threads(2)
    folder = sys.argv[1]
    {call}
    process = mp.get_context("fork").Process(target=child)
    process.start()
    process.join(60)
    sys.exit(process.exitcode)
"""


def folders(tmp_path: os.PathLike) -> dict[str, str]:
    return {"log_dir": os.path.join(tmp_path, "runs"), "save_dir": os.path.join(tmp_path, "models")}


@pytest.mark.parametrize(
    "call",
    [
        f"a2c_ppo.train('CartPole-v1', log_dir=folder + '/runs', save_dir=folder + '/models', **{SMALL})",
        "a2c_ppo.load(folder + '/checkpoint.pt')",
    ],
    ids=["train", "load"],
)
def test_a_child_forked_after_train_or_load_builds_networks(tmp_path, call):
    """A sweep in a fork pool after one ``train`` or ``load`` in the parent (Linux's default start
    method before Python 3.14): before, every child hung for good building its first network, as
    ``train`` checked the settings and ``load`` built the policy on the caller's torch threads,
    though the run itself took ``num_threads=1``."""
    if call.startswith("a2c_ppo.load"):  # a checkpoint trained here: the script only loads it
        shutil.copy(train("CartPole-v1", **SMALL, **folders(tmp_path)).checkpoint, tmp_path / "checkpoint.pt")
    script = textwrap.dedent(FORK_AFTER).replace("{call}", call)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": ROOT})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


def parameters(path: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def assert_same_parameters(first: str, second: str) -> None:
    one, other = parameters(first), parameters(second)
    assert one.keys() == other.keys()
    for name in one:
        assert torch.equal(one[name], other[name]), name


def draws(info: a2c_ppo.UpdateInfo) -> None:
    """A callback of one's own that draws random numbers (a sampled evaluation, a diagnostic)."""
    torch.rand(3), np.random.rand(3), random.random()


def test_a_callback_that_draws_random_numbers_changes_neither_the_run_nor_its_resume(tmp_path):
    """Before, a callback's draws moved the run's generators: the run trained otherwise than
    without it, and a run stopped by Ctrl-C and resumed (from the states saved before the
    callbacks) ended otherwise than one that never stopped."""
    budget = {**SMALL, "num_env_steps": 160}
    plain = train("CartPole-v1", **budget, **folders(tmp_path / "plain"))
    drawn = train("CartPole-v1", callbacks=draws, **budget, **folders(tmp_path / "drawn"))
    assert_same_parameters(plain.checkpoint, drawn.checkpoint)
    assert drawn.history == plain.history

    def ctrl_c(info: a2c_ppo.UpdateInfo) -> None:
        if info.update == 2:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train("CartPole-v1", callbacks=[draws, ctrl_c], **budget, **folders(tmp_path / "stopped"))
    (stopped,) = glob.glob(str(tmp_path / "stopped" / "runs" / "*" / "checkpoint.pt"))
    assert load_checkpoint(stopped)["counters"]["update"] == 2
    resumed = train(resume=stopped, callbacks=draws, **budget, **folders(tmp_path / "stopped"))
    assert_same_parameters(plain.checkpoint, resumed.checkpoint)


def test_two_runs_started_at_once_in_two_threads_each_train_as_their_seed_says(tmp_path, capsys):
    """A web server or a thread pool starting two runs: before, they ran at once and drew each
    other's numbers from the process's generators, neither ending as its seed alone gives; now
    the second waits for the first, and says so."""
    alone = train("CartPole-v1", **SMALL, **folders(tmp_path / "alone"))
    second_started = threading.Event()
    results: dict[str, a2c_ppo.TrainResult] = {}

    def wait_for_the_second(info: a2c_ppo.UpdateInfo) -> None:
        second_started.wait(3)  # before: the second run's first update came meanwhile

    def run(name: str, callbacks: list) -> None:
        results[name] = train("CartPole-v1", callbacks=callbacks, **SMALL, **folders(tmp_path / name))

    first = threading.Thread(target=run, args=("first", [wait_for_the_second]))
    first.start()
    while first.is_alive() and not list((tmp_path / "first").glob("runs/*")):  # it has its folder: it runs
        first.join(0.01)
    second = threading.Thread(target=run, args=("second", [lambda info: second_started.set()]))
    second.start()
    first.join(60)
    second.join(60)
    for name in ("first", "second"):
        assert_same_parameters(alone.checkpoint, results[name].checkpoint)
    assert capsys.readouterr().out.count("another train() is running in this process") == 1


def test_a_run_started_by_a_callback_in_its_own_thread_goes_on(tmp_path):
    """Runs take turns across threads; a run a callback starts (its own thread) is not kept
    waiting for the run that called it, which would wait for ever."""
    inner: list[a2c_ppo.TrainResult] = []

    def start_another(info: a2c_ppo.UpdateInfo) -> None:
        if info.update == 1:
            inner.append(train("CartPole-v1", **SMALL, **folders(tmp_path / "inner")))

    outer = train("CartPole-v1", callbacks=start_another, **SMALL, **folders(tmp_path / "outer"))
    assert inner[0].env_steps == outer.env_steps == SMALL["num_env_steps"]
    assert_same_parameters(inner[0].checkpoint, outer.checkpoint)  # the outer run's draws untouched


def test_a_run_in_another_thread_says_what_it_goes_without(tmp_path, capsys):
    """Signals reach the main thread alone: a run in another thread (a web server's, a GUI's)
    neither stops on Ctrl-C nor limits the env code of this process (--env-timeout). Before, it
    went without both silently, and a hung env there hung it for good; now it says so first."""
    results: list[a2c_ppo.TrainResult] = []
    handler = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=lambda: results.append(train("CartPole-v1", **SMALL, **folders(tmp_path))))
    thread.start()
    thread.join(60)
    said = capsys.readouterr().out
    assert results and "not the main thread" in said and "--env-timeout limits only envs in worker processes" in said, (
        said
    )
    assert signal.getsignal(signal.SIGINT) is handler
    train("CartPole-v1", **SMALL, **folders(tmp_path))
    assert "not the main thread" not in capsys.readouterr().out


RENDERING_VARIABLES = ("SDL_VIDEODRIVER", "SDL_AUDIODRIVER", "MUJOCO_GL")


def test_a_run_that_films_leaves_the_processs_rendering_variables_as_they_were(tmp_path, monkeypatch):
    """Before, a run with videos left SDL_VIDEODRIVER=dummy (display or not) in the caller's
    process: a notebook's later ``render_mode="human"`` opened no window, and said nothing."""
    pytest.importorskip("imageio_ffmpeg")
    pytest.importorskip("pygame")
    for name in RENDERING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SDL_AUDIODRIVER", "pulse")  # the user's own stays
    train("CartPole-v1", capture_video=True, video_interval=1, **SMALL, **folders(tmp_path))
    assert {name: os.environ.get(name) for name in RENDERING_VARIABLES} == {
        "SDL_VIDEODRIVER": None,
        "SDL_AUDIODRIVER": "pulse",
        "MUJOCO_GL": None,
    }


#: A script whose main thread forks a child that trains while another thread's run is training.
FORK_DURING_A_RUN = """
import faulthandler, multiprocessing as mp, sys, threading
import a2c_ppo

SMALL = dict(num_processes=2, num_steps=16, num_env_steps=64, vec_env="sync", save_dir=sys.argv[1] + "/models")

def child():
    faulthandler.dump_traceback_later(30, exit=True)  # a hang ends the child, exit 1
    a2c_ppo.train("CartPole-v1", log_dir=sys.argv[1] + "/child", **SMALL)

if __name__ == "__main__":
    running, forked = threading.Event(), threading.Event()

    def hold(info):
        running.set()
        forked.wait(60)

    thread = threading.Thread(target=a2c_ppo.train, args=("CartPole-v1",),
                              kwargs=dict(callbacks=hold, log_dir=sys.argv[1] + "/thread", **SMALL))
    thread.start()
    running.wait(60)
    process = mp.get_context("fork").Process(target=child)
    process.start()
    process.join(90)
    forked.set()
    thread.join(60)
    sys.exit(process.exitcode)
"""


def test_a_child_forked_while_another_thread_trains_trains_too(tmp_path):
    """Runs take turns; a child forked meanwhile has no such run (its thread stayed in the
    parent), and must not wait for it for ever."""
    script = textwrap.dedent(FORK_DURING_A_RUN)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": ROOT})  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def test_ctrl_c_during_the_start_up_checks_waits_for_them_then_reaches_the_caller(tmp_path, monkeypatch):
    """Before, the checks (which build the env: torch's and a simulator's C++ code calling back
    into Python) took the KeyboardInterrupt wherever it landed, and inside such a callback it
    aborts the process. Now the checks finish, nothing trains, and the caller gets the interrupt."""
    real_checks = a2c_ppo.api.resolve_request
    checked = []

    def checks_with_a_ctrl_c(*args: object) -> object:
        signal.raise_signal(signal.SIGINT)
        request = real_checks(*args)  # the real checks, after the signal came
        checked.append(request)
        return request

    monkeypatch.setattr(a2c_ppo.api, "resolve_request", checks_with_a_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train("CartPole-v1", **SMALL, **folders(tmp_path))
    assert len(checked) == 1
    assert not list(tmp_path.glob("runs/*"))  # nothing started


def test_ctrl_c_in_a_run_reaches_the_caller_and_leaves_the_process_as_it_was(tmp_path):
    """A notebook's Ctrl-C: KeyboardInterrupt, the update's checkpoint saved, no worker left, the
    caller's handlers (SIGHUP's too, ignored during the run) back, and the next run starts."""
    mine = {signum: lambda *_: None for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    before = {signum: signal.signal(signum, handler) for signum, handler in mine.items()}
    try:

        def ctrl_c(info: a2c_ppo.UpdateInfo) -> None:
            if info.update == 1:
                signal.raise_signal(signal.SIGINT)

        budget = {**SMALL, "num_env_steps": 96, "vec_env": "subproc"}  # 3 updates
        with pytest.raises(KeyboardInterrupt):
            train("CartPole-v1", callbacks=ctrl_c, **budget, **folders(tmp_path))
        assert not multiprocessing.active_children()
        assert {signum: signal.getsignal(signum) for signum in mine} == mine
        (checkpoint,) = glob.glob(str(tmp_path / "runs" / "*" / "checkpoint.pt"))
        assert load_checkpoint(checkpoint)["counters"]["update"] == 1
        assert train(resume=checkpoint, **folders(tmp_path)).env_steps == 96
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
