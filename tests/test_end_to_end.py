"""main.py and enjoy.py run as a user runs them: as programs, in a fresh process."""

import csv
import glob
import os
import signal
import subprocess
import sys

import pytest

from a2c_ppo.checkpoint import load_checkpoint
from tests.helpers import PID_DIR_VARIABLE, run_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script, *argv, timeout=120):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def train_flags(tmp_path, steps=512):
    return [
        "--num-env-steps",
        str(steps),
        "--num-processes",
        "2",
        "--num-steps",
        "32",
        "--log-interval",
        "2",
        "--save-interval",
        "3",
        "--eval-interval",
        "4",
        "--eval-episodes",
        "2",
        "--log-dir",
        str(tmp_path / "runs"),
        "--save-dir",
        str(tmp_path / "models"),
    ]


def test_train_then_enjoy(tmp_path):
    out = run_script("main.py", *train_flags(tmp_path))
    assert "Updates 8/8, timesteps 512" in out and "Evaluation over 2 episodes" in out
    checkpoint = tmp_path / "models" / "ppo" / "CartPole-v1.pt"
    assert checkpoint.is_file()

    (run_dir,) = glob.glob(str(tmp_path / "runs" / "CartPole-v1__ppo__seed1__*"))
    assert glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
    rows = list(csv.DictReader(open(os.path.join(run_dir, "progress.csv"))))
    train_rows = [r for r in rows if r["losses/policy_loss"]]
    assert [int(r["env_steps"]) for r in train_rows] == [128, 256, 384, 512]
    lrs = [float(r["charts/learning_rate"]) for r in train_rows]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < 1e-3  # linear decay
    assert any(r["eval/mean_return"] for r in rows)

    out = run_script(
        "enjoy.py", "--load-dir", str(tmp_path / "models"), "--env-name", "CartPole-v1", "--num-episodes", "3"
    )
    assert out.count("episode ") == 3 and "mean return over 3 episodes" in out

    videos = tmp_path / "videos"
    run_script("enjoy.py", "--checkpoint", str(checkpoint), "--num-episodes", "2", "--video-dir", str(videos))
    assert sorted(os.listdir(videos)) == ["rl-video-episode-0.mp4", "rl-video-episode-1.mp4"]


def test_resume_continues_the_counters(tmp_path):
    run_script("main.py", *train_flags(tmp_path, steps=256))
    checkpoint = str(tmp_path / "models" / "ppo" / "CartPole-v1.pt")
    resumed = ["--log-dir", str(tmp_path / "resumed"), "--save-dir", str(tmp_path / "resumed_models")]
    out = run_script("main.py", "--resume", checkpoint, "--num-env-steps", "512", *resumed)
    # the resumed run keeps the checkpoint's flags (2 envs x 32 steps) and goes on from update 4
    assert "Updates 6/8, timesteps 384" in out and "Updates 8/8, timesteps 512" in out


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path, inherited):
    """main.py installs its SIGINT handler itself: a parent that ignores SIGINT (a background
    job of a non-interactive shell) does not make it deaf to Ctrl-C."""
    flags = train_flags(tmp_path, steps=10_000_000)
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "main.py"), *flags, "--save-interval", "100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=ignore_sigint if inherited == "ignored" else None,
    )
    try:
        for line in proc.stdout:
            if line.startswith("Updates"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Checkpoint of update" in out and "--resume" in out and "Stopped by SIGINT" in err
    assert "Traceback" not in err
    counters = load_checkpoint(run_checkpoint(tmp_path))["counters"]
    # the counters of the last finished update, whatever the update was doing at Ctrl-C
    assert counters["env_steps"] == counters["update"] * 2 * 32


def test_bad_flags_fail_before_training(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), "--env-name", "NoSuchEnv-v0", "--log-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "not a registered gymnasium id" in proc.stderr
    assert not os.listdir(tmp_path)


def test_enjoy_with_missing_checkpoint_says_so(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "enjoy.py"), "--load-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "no such checkpoint file" in proc.stderr


def test_an_env_crash_stops_training_with_the_env_index_and_leaves_no_process(tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "main.py"),
            "--env-name",
            "tests.helpers:make_crashing_env",
            "--vec-env",
            "subproc",
            "--num-workers",
            "2",
            "--num-processes",
            "2",
            "--log-dir",
            str(tmp_path / "runs"),
            "--save-dir",
            str(tmp_path / "models"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, PID_DIR_VARIABLE: str(pid_dir)},
    )
    assert proc.returncode == 3, proc.stderr
    assert "an environment failed" in proc.stderr and "env 0" in proc.stderr and "ValueError" in proc.stderr
    assert "Traceback (most recent call last)" not in proc.stderr.split("--- traceback ---")[0]
    worker_pids = [int(name) for name in os.listdir(pid_dir)]
    assert len(worker_pids) >= 2  # the spaces probe in main.py, and each worker
    for pid in worker_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
