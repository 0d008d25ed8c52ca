"""The Python API embedded in a researcher's process: what ``train`` and ``load`` leave behind
for forked children, for other threads and for the calls after them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from a2c_ppo.api import train
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
