"""Resuming is exact: a run stopped (shorter budget, Ctrl-C, kill -9 after a save) and resumed
ends with the same parameters, optimizer state and logged scalars as one that never stopped."""

from __future__ import annotations

import csv
import glob
import os
import signal
import subprocess
import sys

import pytest
import torch

from a2c_ppo.arguments import resolve
from a2c_ppo.checkpoint import load_checkpoint
from a2c_ppo.session import launch
from tests.helpers import run_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARYING_COLUMNS = {"time", "charts/SPS", "charts/rollout_SPS"}  # wall-clock measurements, different in every run


def flags(folder, steps: int, *extra: str) -> list[str]:
    """--overlap pinned: ``auto`` decides by timing and the two schedules train differently, so
    two runs on a loaded machine could choose apart."""
    return ["--num-processes", "2", "--num-steps", "16", "--num-env-steps", str(steps), "--log-interval", "1",
            "--save-interval", "3", "--log-dir", str(folder / "runs"), "--save-dir", str(folder / "models"),
            "--overlap", "off", *extra]  # fmt: skip


def train(argv: list[str]) -> str:
    request = resolve(argv)
    return launch(request).checkpoint


def csv_rows(folder) -> list[dict[str, str]]:
    rows = []
    for path in sorted(glob.glob(str(folder / "runs" / "*" / "progress.csv"))):
        rows += [{k: v for k, v in row.items() if k not in VARYING_COLUMNS} for row in csv.DictReader(open(path))]
    return rows


def assert_same_state(a, b, where: str = "optimizer") -> None:
    """``a`` and ``b`` (nested dicts and lists of tensors and plain values) are bit-identical."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def assert_same_run(path_a: str, path_b: str, folder_a, folder_b) -> None:
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    assert a["counters"] == b["counters"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert_same_state(a["optimizer"], b["optimizer"])
    assert a["normalization"] == b["normalization"]
    rows_a, rows_b = csv_rows(folder_a), csv_rows(folder_b)
    assert [row["update"] for row in rows_b] == [str(u) for u in range(1, len(rows_b) + 1)]  # no duplicates
    assert rows_a == rows_b


@pytest.mark.parametrize(
    "extra",
    [
        ["--no-use-linear-lr-decay"],
        ["--no-use-linear-lr-decay", "--norm-obs", "--norm-reward", "--vec-env", "subproc", "--num-workers", "1"],
        ["--no-use-linear-lr-decay", "--env-name", "Pendulum-v1", "--num-mini-batch", "4"],  # its entry: gSDE
        ["--no-use-linear-lr-decay", "--precision", "bf16"],  # autocast acting and updates, autograd
        ["--no-use-linear-lr-decay", "--frame-stack", "3", "--frame-skip", "2", "--overlap", "on"],  # env state
    ],
    ids=["cartpole", "cartpole-normalised-subproc", "pendulum", "cartpole-bf16", "cartpole-stacked-skipped"],
)
def test_a_shorter_budget_then_resume_equals_one_run(tmp_path, extra):
    whole = train(flags(tmp_path / "a", 640, *extra))
    half = train(flags(tmp_path / "b", 320, *extra))
    resumed = train(["--resume", half, "--num-env-steps", "640", "--save-dir", str(tmp_path / "b" / "models")])
    assert_same_run(whole, resumed, tmp_path / "a", tmp_path / "b")
    model = load_checkpoint(whole)["model"]
    assert all(t.dtype == torch.float32 for t in model.values() if t.is_floating_point())  # bf16 too


def test_bf16_runs_are_deterministic_and_differ_from_float32(tmp_path):
    """The same seed and precision give the same run; bf16 is really in use (another run)."""
    bf16 = [train(flags(tmp_path / name, 320, "--precision", "bf16")) for name in ("a", "b")]
    fp32 = train(flags(tmp_path / "c", 320, "--precision", "fp32", "--fast-path", "off"))
    assert_same_run(*bf16, tmp_path / "a", tmp_path / "b")
    a, c = load_checkpoint(bf16[0])["model"], load_checkpoint(fp32)["model"]
    assert any(not torch.equal(a[name], c[name]) for name in a)


def main_process(folder, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_a_stopped_run_resumed_equals_one_run(tmp_path, how):
    """Linear LR decay on: the schedule runs over the same final budget in both runs."""
    whole = train(flags(tmp_path / "a", 960))
    proc = main_process(tmp_path / "b", *flags(tmp_path / "b", 960))
    for line in proc.stdout:
        if line.startswith("Updates 8/"):
            break
    proc.send_signal(how)
    proc.communicate(timeout=60)
    saved = run_checkpoint(tmp_path / "b")
    assert load_checkpoint(saved)["counters"]["update"] >= 6  # kill -9: the save of update 6
    resumed = train(["--resume", saved, "--save-dir", str(tmp_path / "b" / "models")])
    assert_same_run(whole, resumed, tmp_path / "a", tmp_path / "b")


def test_typed_log_dir_wins_on_resume(tmp_path):
    saved = train(flags(tmp_path, 64))
    request = resolve(["--resume", saved, "--num-env-steps", "128", "--log-dir", str(tmp_path / "elsewhere")])
    assert request.config.run_dir.startswith(str(tmp_path / "elsewhere"))
    assert request.config.num_processes == 2  # untyped flags keep the checkpoint's values


def test_a_resume_with_another_batch_counts_its_updates_in_that_batch(tmp_path, capsys):
    """4 updates of 2 x 16 steps, resumed with 4 envs (64 a batch) to 256 steps: 2 more updates,
    not 256 // 64 - 4 = 0 (nothing) nor 4 more (384 steps)."""
    saved = train(flags(tmp_path, 128))
    request = resolve(["--resume", saved, "--num-env-steps", "256", "--num-processes", "4", "--save-dir",
                       str(tmp_path / "models")])  # fmt: skip
    result = launch(request)
    counters = load_checkpoint(result.checkpoint)["counters"]
    assert (counters["update"], counters["env_steps"]) == (6, 256)
    assert "the checkpoint holds the states of 2 envs and this run has 4" in capsys.readouterr().out
    rates = {int(row["update"]): float(row["charts/learning_rate"]) for row in csv_rows(tmp_path)}
    assert rates[5] == pytest.approx(rates[1] * (1 - 128 / 256))  # the decay counts env steps, not updates


def test_a_resume_with_another_thread_count_says_it_is_not_exact(tmp_path, capsys):
    """torch's CPU sums split by thread count, so a larger net's updates differ in their last
    bits: a resume with another --num-threads was silently not exact."""
    saved = train(flags(tmp_path, 64, "--num-threads", "1"))
    capsys.readouterr()
    train(["--resume", saved, "--num-env-steps", "128", "--num-threads", "2", "--save-dir", str(tmp_path / "models")])
    assert "Resume is not exact: the run trained with --num-threads 1 and this one has 2" in capsys.readouterr().out
    train(["--resume", saved, "--num-env-steps", "192", "--save-dir", str(tmp_path / "models")])  # keeps its 2
    assert "Resume is not exact" not in capsys.readouterr().out


def test_a_resume_cannot_switch_a_normalisation_off(tmp_path):
    """Before, ``--no-norm-obs`` on a normalised run was ignored while the config said off (the
    statistics kept normalising), and with ``--no-norm-reward`` too the statistics were dropped:
    the network read raw observations. ``--norm-*`` on a run without them: test_cli_errors."""
    from a2c_ppo.errors import ConfigError

    half = train(flags(tmp_path, 32, "--norm-obs", "--norm-reward", "--vec-env", "sync"))
    for typed, phrase in [
        (["--no-norm-obs"], "network reads observations over their running mean and std, and with --no-norm-obs"),
        (["--no-norm-reward"], "critic learned returns of rewards over their running std, and with --no-norm-reward"),
        (["--no-norm-obs", "--no-norm-reward"], "drop --no-norm-obs"),
    ]:
        with pytest.raises(ConfigError, match=phrase):
            resolve(["--resume", half, "--num-env-steps", "64", *typed])
