"""The logger writes every metric it is given and keeps progress.csv consistent on resume."""

from __future__ import annotations

import csv
import errno
import io
import os
import subprocess
import sys

import pytest

from a2c_ppo.errors import WriteFailedError
from a2c_ppo.logger import Logger
from tests.helpers import ROOT


def read_rows(run_dir) -> list[dict[str, str]]:
    return list(csv.DictReader(open(run_dir / "progress.csv")))


def test_new_metrics_widen_the_csv_and_nothing_is_dropped(tmp_path):
    logger = Logger(str(tmp_path), {"algo": "acktr"}, total_steps=100, stream=io.StringIO())
    logger.scalars(10, {"losses/policy_loss": 1.5}, update=1)
    logger.scalars(20, {"losses/policy_loss": 0.5, "losses/kl_estimate": 0.001}, update=2)
    logger.scalars(30, {"eval/mean_return": 7.0}, update=3)
    logger.close()
    rows = read_rows(tmp_path)
    assert list(rows[0]) == ["update", "env_steps", "time", "losses/policy_loss", "losses/kl_estimate",
                             "eval/mean_return"]  # fmt: skip
    assert [(r["update"], r["losses/policy_loss"], r["losses/kl_estimate"]) for r in rows] == [
        ("1", "1.5", ""), ("2", "0.5", "0.001"), ("3", "", "")]  # fmt: skip
    assert rows[2]["eval/mean_return"] == "7.0"


def test_a_resumed_run_drops_the_rows_it_redoes(tmp_path):
    logger = Logger(str(tmp_path), {}, total_steps=100, stream=io.StringIO())
    for update in range(1, 6):
        logger.scalars(update * 10, {"charts/SPS": float(update)}, update=update)
    logger.close()
    resumed = Logger(str(tmp_path), {}, total_steps=100, start_step=30, resume_update=3, stream=io.StringIO())
    resumed.scalars(40, {"charts/SPS": 40.0}, update=4)
    resumed.close()
    assert [(r["update"], r["charts/SPS"]) for r in read_rows(tmp_path)] == [
        ("1", "1.0"), ("2", "2.0"), ("3", "3.0"), ("4", "40.0")]  # fmt: skip


def test_an_evaluation_joins_its_updates_row_and_time_goes_on_after_a_resume(tmp_path):
    logger = Logger(str(tmp_path), {}, total_steps=100, stream=io.StringIO())
    logger.scalars(10, {"charts/SPS": 1.0}, update=1)
    logger.scalars(20, {"charts/SPS": 2.0}, update=2)
    logger.scalars(20, {"eval/mean_return": 9.0}, update=2)  # the evaluation after update 2 (a new column)
    logger.scalars(30, {"charts/SPS": 3.0}, update=3)
    logger.scalars(30, {"eval/mean_return": 8.0}, update=3)  # its row rewritten in place
    logger.close()
    rows = read_rows(tmp_path)
    assert [(r["update"], r["charts/SPS"], r["eval/mean_return"]) for r in rows] == [
        ("1", "1.0", ""), ("2", "2.0", "9.0"), ("3", "3.0", "8.0")]  # fmt: skip
    with open(tmp_path / "progress.csv") as f:  # the second update's training time, as if it took 50 s
        text = f.read().replace(f"2,20,{rows[1]['time']},", "2,20,50.0,")
    with open(tmp_path / "progress.csv", "w") as f:
        f.write(text)
    resumed = Logger(str(tmp_path), {}, total_steps=100, start_step=20, resume_update=2, stream=io.StringIO())
    resumed.scalars(30, {"charts/SPS": 3.0}, update=3)
    resumed.close()
    rows = read_rows(tmp_path)
    assert len(rows) == 3 and rows[2]["eval/mean_return"] == ""  # update 3 redone, without the old evaluation
    assert 50.0 <= float(rows[2]["time"]) < 60.0  # 50 s before the resume, and on from there


def test_console_lines_and_no_tensorboard_until_scalars(tmp_path):
    stream = io.StringIO()
    logger = Logger(str(tmp_path), {}, total_steps=100, stream=stream)
    logger.print("hello")
    assert logger._writer is None  # tensorboard is imported on first use, not before the first line
    logger.close()
    assert stream.getvalue() == "hello\n"


def test_open_tensorboard_writes_the_events_file_before_any_scalar(tmp_path):
    logger = Logger(str(tmp_path), {"algo": "ppo"}, total_steps=100, stream=io.StringIO())
    assert not [name for name in os.listdir(tmp_path) if name.startswith("events.out.tfevents")]
    logger.open_tensorboard()
    writer = logger.writer
    logger.open_tensorboard()  # a second call keeps the same writer
    assert logger.writer is writer
    assert [name for name in os.listdir(tmp_path) if name.startswith("events.out.tfevents")]
    logger.close()


def test_open_tensorboard_on_a_folder_that_refuses_writes_names_it(tmp_path, monkeypatch):
    logger = Logger(str(tmp_path), {}, total_steps=100, stream=io.StringIO())

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(Logger, "_new_writer", refuse)
    with pytest.raises(WriteFailedError, match="the TensorBoard events in .*Permission denied"):
        logger.open_tensorboard()
    logger.close()


@pytest.mark.parametrize("time_text", ["nan", "inf", "-5", "soon"])
def test_a_damaged_time_in_the_kept_rows_restarts_the_clock_at_zero(tmp_path, time_text):
    with open(tmp_path / "progress.csv", "w") as f:
        f.write(f"update,env_steps,time,charts/SPS\n1,10,{time_text},1.0\n")
    resumed = Logger(str(tmp_path), {}, total_steps=100, start_step=10, resume_update=1, stream=io.StringIO())
    resumed.scalars(20, {"charts/SPS": 2.0}, update=2)
    resumed.close()
    assert 0.0 <= float(read_rows(tmp_path)[1]["time"]) < 10.0


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_a_rewrite_that_fails_leaves_the_rows_written_before(tmp_path):
    """A resumed run rewrites progress.csv with the rows it keeps; a disk that fills up then (a
    file size limit here) must leave the old file whole, where a rewrite in place had cut it."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rows = [{"update": u, "env_steps": 64 * u, "time": u / 10, "charts/SPS": 1000.5 + u} for u in range(1, 61)]
    with open(run_dir / "progress.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = (run_dir / "progress.csv").read_bytes()
    code = (
        "import os, resource, signal, sys\n"
        "from a2c_ppo.errors import WriteFailedError\n"
        "from a2c_ppo.logger import Logger\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"  # a write past the limit fails (EFBIG), as on a full disk
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) // 2}, resource.RLIM_INFINITY))\n"
        "try:\n"
        f"    Logger({str(run_dir)!r}, {{}}, 10_000, resume_update=50, stream=open(os.devnull, 'w'))\n"
        "except WriteFailedError:\n"
        "    sys.exit(7)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 7, proc.stderr
    assert (run_dir / "progress.csv").read_bytes() == before


def test_only_the_runs_own_writer_threads_lose_their_tracebacks(monkeypatch, tmp_path):
    """A run hides the traceback TensorBoard's writer thread prints on a full disk (its error
    comes back as one paragraph); the hook must leave every other thread's alone, such as a
    SummaryWriter of the researcher's own in the same process (the first version hid them all)."""
    import threading

    from a2c_ppo import logger

    printed = []
    monkeypatch.setattr(threading, "excepthook", lambda args: printed.append(args.thread))
    monkeypatch.setattr(logger, "_quiet_hook_installed", False)
    from torch.utils.tensorboard import SummaryWriter

    def writer_thread(folder) -> threading.Thread:
        writer = SummaryWriter(str(folder))
        writers.append(writer)
        return writer._get_file_writer().event_writer._async_writer._worker

    writers: list = []
    ours, theirs = writer_thread(tmp_path / "run"), writer_thread(tmp_path / "own")  # two TensorBoard threads
    logger._hide_thread_traceback(ours)

    def fail_in(thread: threading.Thread, error: BaseException) -> None:
        threading.excepthook(threading.ExceptHookArgs((type(error), error, None, thread)))

    fail_in(ours, OSError(errno.ENOSPC, "No space left on device"))
    fail_in(theirs, OSError(errno.ENOSPC, "No space left on device"))
    fail_in(ours, ValueError("not a write failure"))
    assert printed == [theirs, ours]
    for writer in writers:
        writer.close()
