"""The up-front check that a run's folders can be written, beside other processes making and
removing the same folders: torchrun's rank 0 probing while its other ranks read, and runs of
several seeds started at once in one ``--log-dir``."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from a2c_ppo import paths
from a2c_ppo.errors import ConfigError
from a2c_ppo.paths import check_writable_dir, claim_run_dir

RACE_SECONDS = 2.0


def _check_for_a_while(path: str, probe: bool, failures: multiprocessing.Queue) -> None:
    """Checks ``path`` again and again; puts the first failure's text (or None) on ``failures``."""
    deadline = time.monotonic() + RACE_SECONDS
    while time.monotonic() < deadline:
        try:
            check_writable_dir(path, "--log-dir", probe)
        except Exception as exc:  # a ConfigError (a false refusal) or an OSError (a traceback)
            failures.put(f"{type(exc).__name__}: {exc}")
            return
    failures.put(None)


def test_checks_beside_other_processes_making_and_removing_the_same_folders_never_fail(tmp_path):
    """Two runs' probes (rank 0 of each) and a torchrun rank that only reads, at once, on run
    folders in one --log-dir that does not exist yet. Before, the reader was refused about one
    time in 230 ("permission denied" or "is a file" for a folder a probe had just removed), and
    a probe could end in a traceback (rmdir of a --log-dir another probe had just filled)."""
    log_dir = tmp_path / "logs" / "sweep"
    context = multiprocessing.get_context("spawn")
    failures = context.Queue()
    checks = [
        context.Process(target=_check_for_a_while, args=(str(log_dir / f"run{i}"), probe, failures))
        for i, probe in enumerate((True, True, False))
    ]
    for process in checks:
        process.start()
    results = [failures.get(timeout=60) for _ in checks]
    for process in checks:
        process.join()
    assert results == [None, None, None]
    assert os.listdir(tmp_path) == []  # every probe's folders removed again


def test_a_missing_folder_is_proved_creatable_and_nothing_is_left_behind(tmp_path):
    check_writable_dir(str(tmp_path / "a" / "b"), "--log-dir")
    check_writable_dir(str(tmp_path), "--log-dir")  # an existing folder: a file without a name
    assert os.listdir(tmp_path) == []


def test_a_name_too_long_for_the_file_system_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"--log-dir .* cannot be written \(File name too long\)"):
        check_writable_dir(str(tmp_path / "ok" / ("x" * 300)), "--log-dir")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("probe", [True, False])
def test_a_file_in_the_path_is_named(tmp_path, probe):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ConfigError, match=r"'.*notes\.txt' is a file, not a folder"):
        check_writable_dir(str(tmp_path / "notes.txt" / "runs"), "--log-dir", probe)


def test_a_run_folder_is_claimed_although_another_run_removed_the_empty_log_dir_meanwhile(tmp_path, monkeypatch):
    """A run that fails to start removes the --log-dir it made, if empty: between this run's
    making of that folder and of its run folder inside it, that was a FileNotFoundError."""
    log_dir = tmp_path / "logs"
    make_folder = os.mkdir
    removed = []

    def mkdir_after_the_other_run_cleaned_up(path, *args, **kwargs):
        if os.fspath(path) == str(log_dir / "run") and not removed:
            removed.append(True)
            os.rmdir(log_dir)
        return make_folder(path, *args, **kwargs)

    monkeypatch.setattr(paths.os, "mkdir", mkdir_after_the_other_run_cleaned_up)
    assert claim_run_dir(str(log_dir / "run")) == str(log_dir / "run")
    assert os.path.isdir(log_dir / "run")
