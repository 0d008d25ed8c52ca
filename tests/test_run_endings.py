"""Every way a run can end keeps what was learnt: the checkpoint of the last finished update is
written (env failure, killed worker, Ctrl-C once or twice, SIGTERM), a NaN never overwrites a
good checkpoint, and each ending has its own exit status and a short message."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from a2c_ppo.checkpoint import load_checkpoint
from tests.envs_failing import FAIL_AFTER_VARIABLE, LONG_ENV_ID
from tests.helpers import PID_DIR_VARIABLE, run_checkpoint
from tests.signalling_main import SIGNAL_AT_VARIABLE, SIGNALS_VARIABLE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS_PER_UPDATE = 2 * 16  # per env: --num-steps 16; --num-processes 2


def launch(tmp_path, env_name: str, *extra: str, fail_after: int | None = None, steps: int = 1_000_000,
           signal_at: str | None = None, signals: str = "INT"):  # fmt: skip
    """``python main.py`` (``tests/signalling_main.py``, which signals itself ``signal_at``)."""
    env = dict(os.environ)
    if fail_after is not None:
        env[FAIL_AFTER_VARIABLE] = str(fail_after)
    script = os.path.join(ROOT, "main.py")
    if signal_at is not None:
        env.update({SIGNAL_AT_VARIABLE: signal_at, SIGNALS_VARIABLE: signals})
        script = os.path.join(ROOT, "tests", "signalling_main.py")
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir(exist_ok=True)
    env[PID_DIR_VARIABLE] = str(pid_dir)
    argv = [sys.executable, script, "--env-name", env_name, "--num-processes", "2",
            "--num-steps", "16", "--num-env-steps", str(steps), "--log-interval", "1", "--save-interval", "1",
            "--log-dir", str(tmp_path / "runs"), "--save-dir", str(tmp_path / "models"), *extra]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def checkpoint_file(tmp_path, env_name: str) -> str:
    """The run's own checkpoint (an unfinished run writes nowhere else)."""
    assert not os.path.exists(tmp_path / "models"), "an unfinished run wrote the latest-finished copy"
    return run_checkpoint(tmp_path)


def assert_no_process_left(tmp_path) -> None:
    for name in os.listdir(tmp_path / "pids"):
        with pytest.raises(ProcessLookupError):
            os.kill(int(name), 0)


@pytest.mark.parametrize("quantity", ["reward", "observation"])
def test_a_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, quantity):
    env_name = f"tests.envs_failing:nan_{quantity}_env"
    # the env turns NaN after 100 of its steps: updates 1-6 finish (16 steps each), update 7 meets it
    # no periodic save: the ending saves update 6, whose parameters the NaN never reached
    proc = launch(tmp_path, env_name, "--norm-obs", "--norm-reward", "--save-interval", "1000", fail_after=100)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err
    assert f"non-finite {quantity}" in err and "Traceback" not in err
    assert "The checkpoint of the last finished update is saved" in err
    checkpoint = load_checkpoint(checkpoint_file(tmp_path, env_name))
    assert checkpoint["counters"]["update"] == 6
    assert "Updates 6/" in out and "Updates 7/" not in out and "Checkpoint of update 6 saved" in out


@pytest.mark.parametrize(("vec_env", "env_name"), [("sync", "raising_env"), ("subproc", "raising_env"),
                                                    ("sync", "exiting_env")])  # fmt: skip
def test_an_env_that_raises_leaves_the_last_finished_update_saved(tmp_path, vec_env, env_name):
    env_name = f"tests.envs_failing:{env_name}"
    proc = launch(tmp_path, env_name, "--vec-env", vec_env, "--save-interval", "1000", fail_after=100)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert "on purpose" in err and "env 0" in err
    assert load_checkpoint(checkpoint_file(tmp_path, env_name))["counters"]["update"] == 6
    assert "Checkpoint of update 6 saved" in out
    assert_no_process_left(tmp_path)


def test_the_resume_hint_is_printed_when_a_periodic_save_has_written_the_checkpoint_already(tmp_path):
    env_name = "tests.envs_failing:raising_env"
    proc = launch(tmp_path, env_name, "--vec-env", "sync", "--save-interval", "1", fail_after=100)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert load_checkpoint(checkpoint_file(tmp_path, env_name))["counters"]["update"] == 6
    assert "Checkpoint of update 6 saved" in out and "continue with: python main.py --resume" in out


def test_an_env_that_exits_in_the_layout_probe_is_an_env_failure_naming_it(tmp_path):
    """``--vec-env auto`` times the env before the run starts; an env that calls sys.exit there
    fails the run as an env (exit 3, naming it), not with its own exit status."""
    proc = launch(tmp_path, "tests.envs_failing:exiting_env", fail_after=0)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert "on purpose" in err and "env 0" in err and "an environment failed" in err
    assert_no_process_left(tmp_path)


def test_a_killed_worker_leaves_the_last_finished_update_saved(tmp_path):
    env_name = "tests.envs_failing:tiny_env"
    proc = launch(tmp_path, env_name, "--vec-env", "subproc", "--num-workers", "2", "--save-interval", "1000")
    for line in proc.stdout:
        if line.startswith("Updates 3/"):
            break
    workers = [int(name) for name in os.listdir(tmp_path / "pids") if int(name) != proc.pid]
    os.kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "SIGKILL" in err
    assert load_checkpoint(checkpoint_file(tmp_path, env_name))["counters"]["update"] >= 3
    assert_no_process_left(tmp_path)


def test_a_closed_terminal_does_not_end_the_run(tmp_path):
    env_name = "tests.envs_failing:tiny_env"
    proc = launch(tmp_path, env_name, "--vec-env", "subproc", "--num-workers", "1", steps=20 * STEPS_PER_UPDATE)
    for line in proc.stdout:
        if line.startswith("Updates 2/"):
            break
    for pid in [int(name) for name in os.listdir(tmp_path / "pids")]:  # the terminal's SIGHUP reaches them all
        os.kill(pid, signal.SIGHUP)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert load_checkpoint(run_checkpoint(tmp_path))["counters"]["update"] == 20
    assert_no_process_left(tmp_path)


@pytest.mark.parametrize("signals", [(signal.SIGINT,), (signal.SIGINT, signal.SIGINT), (signal.SIGTERM,)])
def test_signals_save_and_exit_with_their_own_status(tmp_path, signals):
    env_name = "tests.envs_failing:tiny_env"
    proc = launch(tmp_path, env_name, "--save-interval", "1000")
    for line in proc.stdout:
        if line.startswith("Updates 2/"):
            break
    for signum in signals:
        proc.send_signal(signum)
        time.sleep(0.005)  # a second Ctrl-C lands while the first one's save is under way
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signals[0], err
    assert f"Stopped by {signal.Signals(signals[0]).name}" in err and "Traceback" not in err
    checkpoint = load_checkpoint(checkpoint_file(tmp_path, env_name))
    assert checkpoint["counters"]["update"] >= 2
    assert checkpoint["counters"]["env_steps"] == checkpoint["counters"]["update"] * STEPS_PER_UPDATE
    run_folder = os.path.dirname(checkpoint_file(tmp_path, env_name))
    assert not [name for name in os.listdir(run_folder) if name.startswith(".")]  # no temp file, no lock file


def test_a_very_long_env_id_gets_a_short_file_name(tmp_path):
    env_name = f"tests.envs_failing:{LONG_ENV_ID}"
    proc = launch(tmp_path, env_name, steps=64)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    (saved,) = os.listdir(tmp_path / "models" / "ppo")
    assert len(saved) < 100


def test_a_second_ctrl_c_stops_an_evaluation_that_never_ends(tmp_path):
    """Evaluation runs in the update's callbacks, where a first signal waits for the update to
    finish; an episode without end would hold it for good, so a second one stops at once."""
    env_name = "tests.envs_failing:endless_env"
    proc = launch(tmp_path, env_name, "--eval-interval", "1", "--eval-episodes", "1", "--save-interval", "1000",
                  fail_after=10**9)  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Updates 1/"):
            break
    time.sleep(1.0)  # in the evaluation
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert load_checkpoint(checkpoint_file(tmp_path, env_name))["counters"]["update"] == 1


@pytest.mark.parametrize("signals", ["INT", "TERM", "INT,INT"])
def test_a_signal_during_the_final_save_ends_the_run_as_a_finished_one(tmp_path, signals):
    """The budget is trained: the final checkpoint and its copy to --save-dir are finished (the
    signal waits for them; a second one inside the save too, which is never cut), exit 0, and
    the run says the stop came after training had ended."""
    env_name = "tests.envs_failing:tiny_env"
    proc = launch(tmp_path, env_name, "--save-interval", "1000", steps=4 * STEPS_PER_UPDATE, signal_at="save:4",
                  signals=signals)  # fmt: skip
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    key = "Ctrl-C" if signals.startswith("INT") else "SIGTERM"
    assert f"{key} came after training had ended" in out and "Done: 128 env steps" in out
    assert "Traceback" not in err and "Stopped by" not in err
    (copy,) = glob.glob(str(tmp_path / "models" / "ppo" / "*.pt"))
    with open(copy, "rb") as f, open(run_checkpoint(tmp_path), "rb") as g:
        assert f.read() == g.read()
    assert load_checkpoint(copy)["counters"]["update"] == 4


def test_a_signal_in_the_last_rollout_still_stops_the_run(tmp_path):
    """The last update has not trained yet: the run stops as in any other rollout (its budget
    not trained, no copy to --save-dir)."""
    env_name = "tests.envs_failing:tiny_env"
    proc = launch(tmp_path, env_name, "--save-interval", "1000", steps=4 * STEPS_PER_UPDATE, signal_at="rollout:4")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert load_checkpoint(checkpoint_file(tmp_path, env_name))["counters"]["update"] == 3


def test_a_stop_in_the_first_rollout_leaves_no_run_folder(tmp_path):
    """Nothing was trained: the run folder it made, which holds only an empty log and events
    file, is removed (with the --log-dir it made for it), and the run says so."""
    proc = launch(tmp_path, "tests.envs_failing:tiny_env", signal_at="rollout:1", signals="TERM")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Nothing was trained (no update had finished); the run folder " in out and "is removed" in out
    assert "Stopped by SIGTERM" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["pids"]  # no runs/, no models/


def test_a_stop_in_the_first_rollout_of_a_resumed_run_keeps_its_folder(tmp_path):
    """A run resumed in its own folder never has it removed: its checkpoint stays as it was."""
    env_name = "tests.envs_failing:tiny_env"
    proc = launch(tmp_path, env_name, steps=2 * STEPS_PER_UPDATE)
    assert proc.communicate(timeout=120) and proc.returncode == 0
    checkpoint = run_checkpoint(tmp_path)
    with open(checkpoint, "rb") as f:
        before = f.read()
    proc = launch(tmp_path, env_name, "--resume", checkpoint, steps=4 * STEPS_PER_UPDATE, signal_at="rollout:1")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Nothing was trained (no update had finished since the resume)" in out
    with open(checkpoint, "rb") as f:
        assert f.read() == before
    assert {"checkpoint.pt", "progress.csv"} <= set(os.listdir(os.path.dirname(checkpoint)))


def test_a_run_that_trained_nothing_never_removes_another_runs_folder_made_where_its_own_was(tmp_path):
    """A new run's folder is moved away during its first rollout, and another run claims the
    free name (its lock, its log's header): the first run, stopped before an update finished,
    removes nothing of the other's, neither the folder nor its lock."""
    from a2c_ppo.files import RunLock
    from a2c_ppo.run_folder import FolderUse, own_run_folder

    use = FolderUse()
    with own_run_folder(str(tmp_path / "logs" / "run"), in_place=False, use=use) as run_dir:
        (tmp_path / "logs" / "run" / "progress.csv").write_text("update\n")
        os.rename(run_dir, tmp_path / "moved")
        os.mkdir(run_dir)  # the other run's, as paths.claim_run_dir makes it
        other = RunLock(run_dir).acquire()
        (tmp_path / "logs" / "run" / "progress.csv").write_text("update\n")
        use.trained_nothing = True
    try:
        assert sorted(os.listdir(tmp_path / "logs" / "run")) == [".lock", "progress.csv"]
    finally:
        other.release()
