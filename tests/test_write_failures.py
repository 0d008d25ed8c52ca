"""A log of the run that cannot be written (TensorBoard's events, progress.csv) ends the run as
a checkpoint that cannot be written does: one paragraph naming the file and the cause, exit
status 6, and the checkpoint of the last finished update kept (written, where the disk lets it)."""

from __future__ import annotations

import errno
import os
import re
import resource
import subprocess
import sys

import pytest

from a2c_ppo.api import train
from a2c_ppo.checkpoint import load_checkpoint
from a2c_ppo.errors import WriteFailedError
from a2c_ppo.logger import Logger
from tests.disk_full_main import EVENT_WRITES_LEFT_VARIABLE
from tests.helpers import ROOT, run_checkpoint

TINY = "tests.envs_failing:tiny_env"
SMALL_RUN = {"num_processes": 2, "num_steps": 16, "vec_env": "sync", "log_interval": 1}


def give_ffmpeg_little_room(monkeypatch) -> None:
    """Processes started from here on (ffmpeg) may write files of 4 KB at most, as on a full
    disk; the process's own files have room."""
    real_popen = subprocess.Popen

    def popen_with_little_room(*args, **kwargs):
        kwargs["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen_with_little_room)


def test_tensorboard_events_that_cannot_be_written_are_one_paragraph_with_the_checkpoint_kept(tmp_path):
    # the first append to the events file succeeds, the next finds the disk full: TensorBoard's
    # thread fails, and the writer's next call in the run (a scalar, or its close) re-raises that
    argv = [sys.executable, os.path.join(ROOT, "tests", "disk_full_main.py"), "--env-name", TINY,
            "--num-processes", "2", "--num-steps", "16", "--num-env-steps", "96", "--vec-env", "sync",
            "--save-interval", "1000", "--log-interval", "1",
            "--log-dir", str(tmp_path / "runs"), "--save-dir", str(tmp_path / "models")]  # fmt: skip
    env = {**os.environ, EVENT_WRITES_LEFT_VARIABLE: "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 6, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "could not write the TensorBoard events in" in proc.stderr and "No space left on device" in proc.stderr
    # which update meets the failure is the thread's timing; the checkpoint holds that update
    saved = re.search(r"Checkpoint of update (\d+) saved to", proc.stdout)
    assert saved is not None, proc.stdout
    assert load_checkpoint(run_checkpoint(tmp_path))["counters"]["update"] == int(saved.group(1)) >= 1


def test_a_progress_csv_that_cannot_be_written_still_leaves_the_last_update_saved(tmp_path, monkeypatch):
    appended = []
    real_append = Logger._append

    def append_until_the_disk_is_full(self: Logger, row: dict) -> None:
        # update 1's row comes with the header (a whole write), those of updates 2 and 3 are
        # appended; update 4's finds the disk full
        if len(appended) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        appended.append(row["update"])
        real_append(self, row)

    monkeypatch.setattr(Logger, "_append", append_until_the_disk_is_full)
    # no periodic save: the ending alone writes the checkpoint
    with pytest.raises(WriteFailedError, match=r"progress\.csv: No space left on device"):
        train(TINY, num_env_steps=160, save_interval=1000, log_dir=str(tmp_path / "runs"), **SMALL_RUN)
    assert appended == [2, 3]
    # update 4's log failed after its boundary was recorded: update 4 is the last finished one
    assert load_checkpoint(run_checkpoint(tmp_path))["counters"]["update"] == 4


def test_a_progress_csv_rewrite_that_fails_names_its_cause(tmp_path, monkeypatch):
    """An evaluation's new column rewrites progress.csv whole: a full disk there is said as
    such, not as "Success" (the cause of an error without an errno)."""
    from a2c_ppo import logger

    real = logger.write_atomically
    writes = []

    def full_after_the_header(path: str, write) -> None:
        writes.append(path)
        if len(writes) > 1:  # the header with update 1's row went through; the rewrite finds the disk full
            raise WriteFailedError(path, os.strerror(errno.ENOSPC))
        real(path, write)

    monkeypatch.setattr(logger, "write_atomically", full_after_the_header)
    with pytest.raises(WriteFailedError) as failure:
        train(TINY, num_env_steps=96, save_interval=1000, eval_interval=1, eval_episodes=1,
              log_dir=str(tmp_path / "runs"), **SMALL_RUN)  # fmt: skip
    assert str(failure.value).endswith("progress.csv: No space left on device")
    assert load_checkpoint(run_checkpoint(tmp_path))["counters"]["update"] == 1


def test_a_training_video_the_disk_cannot_hold_ends_the_run_with_its_checkpoint(tmp_path, monkeypatch):
    """ffmpeg stopped by a full disk (here a file size limit of its own) is a write failure naming
    the video, with the update's checkpoint kept and no video left, whole or not: its exit status
    went unread, and a broken mp4 took the real name."""
    pytest.importorskip("imageio_ffmpeg")
    pytest.importorskip("pygame")
    give_ffmpeg_little_room(monkeypatch)
    with pytest.raises(WriteFailedError, match=r"update-000001\.mp4: ffmpeg was killed by File size limit exceeded"):
        train("CartPole-v1", num_env_steps=96, save_interval=1000, capture_video=True, video_interval=1,
              log_dir=str(tmp_path / "runs"), **SMALL_RUN)  # fmt: skip
    checkpoint = run_checkpoint(tmp_path)
    assert load_checkpoint(checkpoint)["counters"]["update"] == 1
    assert os.listdir(os.path.join(os.path.dirname(checkpoint), "videos")) == []


def test_a_replay_video_the_disk_cannot_hold_is_a_write_failure_leaving_no_broken_file(tmp_path, monkeypatch, capsys):
    """enjoy.py --video-dir on a full disk: one line naming the video, exit 6, no broken mp4. (It
    said "an environment failed" with MoviePy's pages, exit 3, or where ffmpeg failed at the end,
    that the videos were written, exit 0, leaving a broken rl-video-episode-N.mp4.)"""
    pytest.importorskip("imageio_ffmpeg")
    pytest.importorskip("moviepy")
    from a2c_ppo import enjoy

    result = train("CartPole-v1", num_env_steps=32, log_dir=str(tmp_path / "runs"), save_dir=str(tmp_path / "models"),
                   **SMALL_RUN)  # fmt: skip
    videos = tmp_path / "videos"
    give_ffmpeg_little_room(monkeypatch)
    with pytest.raises(SystemExit) as ended:
        enjoy.main(["--checkpoint", result.checkpoint, "--video-dir", str(videos), "--num-episodes", "1"])
    assert ended.value.code == 6
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "rl-video-episode-0.mp4: ffmpeg was killed by File size limit exceeded; free space" in err
    assert os.listdir(videos) == []


def test_a_run_folder_moved_away_during_the_run_stops_it_without_making_the_folder_again(tmp_path):
    """The checkpoint writer made a removed (or moved) folder again and went on: a folder holding
    a checkpoint and TensorBoard events reopened by name, without progress.csv or the lock."""
    moved = tmp_path / "moved"

    def move_the_run_folder(info) -> None:  # as rm -rf, without racing TensorBoard's writer thread
        if info.update == 2:
            os.rename(os.path.dirname(run_checkpoint(tmp_path)), moved)

    with pytest.raises(WriteFailedError, match="the run folder was removed or moved away") as failure:
        train(TINY, num_env_steps=160, save_interval=1, log_dir=str(tmp_path / "runs"), callbacks=[move_the_run_folder],
              **SMALL_RUN)  # fmt: skip
    assert not os.path.exists(failure.value.path) and os.listdir(tmp_path / "runs") == []
    assert load_checkpoint(str(moved / "checkpoint.pt"))["counters"]["update"] == 1  # moved before update 2 saved
