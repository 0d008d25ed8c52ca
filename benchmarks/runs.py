"""Resumable main.py runs for the long benchmarks: each run owns a folder (its ``--log-dir``).

``train(folder, flags)`` trains ``python main.py FLAGS`` with its run folder under ``folder``,
or, when that run was stopped, resumes it from its checkpoint, or skips it when it finished;
so a benchmark script can simply be started again after an interruption. Ctrl-C reaches
main.py too (it saves and exits 130) and stops the benchmark with a SystemExit.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from a2c_ppo.checkpoint import load_checkpoint  # noqa: E402
from a2c_ppo.paths import RUN_CHECKPOINT  # noqa: E402

STOPPED = (130, 143)  # main.py's exit statuses after Ctrl-C and SIGTERM


class ResultLog:
    """A benchmark's results as JSON lines in ``path``: the rows of earlier invocations, and
    each new row appended (and printed) as soon as it exists, so that the script, started
    again, skips what it has (``has``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: list[dict] = [json.loads(line) for line in open(path)] if os.path.isfile(path) else []

    def has(self, **key: object) -> bool:
        """Whether a row with these values exists."""
        return any(all(row.get(name) == value for name, value in key.items()) for row in self.rows)

    def add(self, row: dict) -> None:
        print(json.dumps(row), flush=True)
        self.rows.append(row)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def run_folder(folder: str) -> str | None:
    """The run folder under ``folder`` that holds a checkpoint (the latest), or None."""
    runs = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(folder, "*", RUN_CHECKPOINT)))
    return runs[-1] if runs else None


def finished(run_dir: str) -> bool:
    """Whether the run's checkpoint has trained every whole update of its budget."""
    checkpoint = load_checkpoint(os.path.join(run_dir, RUN_CHECKPOINT))
    config, steps = checkpoint["config"], checkpoint["counters"]["env_steps"]
    batch = config["num_processes"] * config["num_steps"]
    return steps >= config["num_env_steps"] // batch * batch


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (bad input exits 2 with argparse's message)."""
    return _at_least(text, int, 1)


def seed_number(text: str) -> int:
    """An argparse type: a seed, a whole number of at least 0."""
    return _at_least(text, int, 0)


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0 (a budget's scale)."""
    value = _at_least(text, float, -np.inf)
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
    return value


def _at_least(text: str, kind: type, low: float) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a {'whole ' if kind is int else ''}number, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {text!r}")
    return value


def _check_flags(folder: str, flags: list[str], label: str) -> None:
    """Keep the flags a run under ``folder`` was started with (``flags.json``); SystemExit where
    they differ from ``flags``: the folder's results would be reported under other settings."""
    path = os.path.join(folder, "flags.json")
    if not os.path.isfile(path):
        with open(path, "w") as f:
            json.dump(flags, f)
        return
    with open(path) as f:
        kept = json.load(f)
    if kept != flags:
        raise SystemExit(
            f"{label}: {folder} holds a run started with other flags ({' '.join(kept)}), not {' '.join(flags)}; "
            "give another --out (or gail.py --variant), or remove that folder."
        )


def train(folder: str, flags: list[str], label: str) -> str | None:
    """Train, resume or skip the run that lives under ``folder``; its run folder (None if
    main.py failed before writing one). The console goes to ``folder/console.log`` and the
    wall time of every leg is added up in ``folder/wall_s``."""
    folder = os.path.abspath(folder)  # main.py runs in the repository's root, the caller anywhere
    os.makedirs(folder, exist_ok=True)
    _check_flags(folder, flags, label)
    run_dir = run_folder(folder)
    if run_dir is not None and finished(run_dir):
        print(f"{label}: finished in {run_dir}", flush=True)
        return run_dir
    main = [sys.executable, os.path.join(ROOT, "main.py")]
    # the folders are never a checkpoint's: a resumed leg is given its save folder again
    save_dir = ["--save-dir", os.path.join(folder, "models")]
    if run_dir is not None:
        argv = [*main, "--resume", os.path.join(run_dir, RUN_CHECKPOINT), *save_dir]
    else:
        argv = [*main, *flags, "--log-dir", folder, *save_dir]
    print(f"{label}: {'resuming ' + run_dir if run_dir else 'training'}", flush=True)
    start = time.monotonic()
    with open(os.path.join(folder, "console.log"), "a") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # main.py got the Ctrl-C too: it saves its checkpoint and exits
            code = proc.wait()
    _add_wall_time(folder, time.monotonic() - start)
    if code in STOPPED:
        raise SystemExit(f"{label}: stopped (status {code}); the same command resumes it.")
    if code != 0:
        print(f"{label}: main.py exited with status {code}; see {folder}/console.log", flush=True)
    return run_folder(folder)


def wall_time(folder: str) -> float:
    """Seconds spent training the run under ``folder``, all legs together (NaN if unknown)."""
    path = os.path.join(folder, "wall_s")
    return float(open(path).read()) if os.path.isfile(path) else float("nan")


def _add_wall_time(folder: str, seconds: float) -> None:
    total = 0.0 if not os.path.isfile(os.path.join(folder, "wall_s")) else wall_time(folder)
    with open(os.path.join(folder, "wall_s"), "w") as f:
        f.write(f"{total + seconds:.1f}\n")


def column(run_dir: str, name: str) -> list[tuple[int, float]]:
    """(env steps, value) of every row of the run's progress.csv that logged ``name``."""
    with open(os.path.join(run_dir, "progress.csv"), newline="") as f:
        return [(int(row["env_steps"]), float(row[name])) for row in csv.DictReader(f) if row.get(name)]


def last_logged(run_dir: str, name: str) -> float:
    """The last value of ``name`` in the run's progress.csv (NaN if it logged none)."""
    values = column(run_dir, name)
    return values[-1][1] if values else float("nan")


def markdown_table(title: str, columns: list[str], rows: list[list[str]]) -> str:
    """A benchmark's table: ``title``, then a Markdown table whose first column is left-aligned."""
    lines = [title, "", "| " + " | ".join(columns) + " |", "|---" + "|---:" * (len(columns) - 1) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def first_reaching(run_dir: str, name: str, threshold: float) -> int | None:
    """The env steps of the first row whose ``name`` is at least ``threshold``, or None."""
    return next((steps for steps, value in column(run_dir, name) if value >= threshold), None)


def tianshou_tests(run_dir: str, every: int) -> dict[str, Any]:
    """What Tianshou's tests would read of one run (its tests sample actions, so our stochastic
    training return stands for them): ``tests``, the last training return logged by each multiple
    of ``every`` env steps up to the run's last logged step (None before its first episode), and
    ``end``, its last training return (None if it logged none)."""
    curve = np.array(column(run_dir, "charts/episodic_return")).reshape(-1, 2)
    if len(curve) == 0:
        return {"tests": [], "end": None}
    index = np.searchsorted(curve[:, 0], np.arange(every, curve[-1, 0] + 1, every), side="right") - 1
    return {"tests": [float(curve[i, 1]) if i >= 0 else None for i in index], "end": float(curve[-1, 1])}


def best_of_tests(seeds: list[dict[str, Any]]) -> tuple[float, float]:
    """Tianshou's measure from each seed's ``tianshou_tests``: the best over the test points of
    the seeds' mean return (the first peak), and the std over seeds there. Read at the end where
    the runs are shorter than one interval (smoke tests); NaN where the seeds share no point at
    which each has a return, or a seed's tests are unknown (a result kept from before they were)."""
    if not seeds or any(seed.get("tests") is None for seed in seeds):
        return float("nan"), float("nan")
    shared = min(len(seed["tests"]) for seed in seeds)
    rows = [seed["tests"][:shared] if shared else [seed["end"]] for seed in seeds]
    values = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)  # (seeds, points)
    complete = ~np.isnan(values).any(axis=0)
    if not complete.any():
        return float("nan"), float("nan")
    best = int(np.argmax(np.where(complete, values.mean(axis=0), -np.inf)))
    return float(values[:, best].mean()), float(values[:, best].std())


def best_training_return(run_dirs: list[str], every: int) -> tuple[float, float]:
    """``best_of_tests`` of the runs in ``run_dirs``."""
    return best_of_tests([tianshou_tests(d, every) for d in run_dirs])
