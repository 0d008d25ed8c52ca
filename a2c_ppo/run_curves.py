"""The curves of run folders for the plot: which folders are runs (``ENV__ALGO__seedS__TIME``,
made by ``paths.new_run_dir``), one scalar metric read from each (``progress.csv``, else its
TensorBoard event files), and a resumed run's new folder joined to the run it continues."""

from __future__ import annotations

import csv
import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from a2c_ppo import console
from a2c_ppo.errors import ConfigError

RUN_NAME = re.compile(r"^(?P<env>.+)__(?P<algo>[^_]+)__seed(?P<seed>-?\d+)__(?P<time>[^_]+)$")
SEED_FOLDER = re.compile(r"seed-?\d+")
DEFAULT_METRIC = "charts/episodic_return"
EVAL_METRIC = "eval/mean_return"


@dataclass
class Curve:
    """One run's scalar ``metric``: ``steps`` and ``values`` are 1-D arrays of the same length;
    ``first_update``: the update its log starts at; ``run_dir``: its folder (``""``: joined runs)."""

    env: str
    label: str
    seed: str
    steps: np.ndarray
    values: np.ndarray
    first_update: int = 1
    run_dir: str = ""


def is_run_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "progress.csv")) or bool(glob.glob(os.path.join(path, "events.out.*")))


def find_run_dirs(paths: Sequence[str]) -> list[str]:
    """The run folders among ``paths`` and below them, sorted; ConfigError when there are none."""
    found: list[str] = []
    for path in paths:
        if not os.path.isdir(path):
            raise ConfigError(f"{path!r} is not a folder; give run folders or folders that contain them.")
        for root, dirs, _ in os.walk(path):
            if is_run_dir(root):
                found.append(root)
                dirs.clear()  # a run folder holds no further runs
    if not found:
        raise ConfigError(
            f"no runs found under {', '.join(map(repr, paths))}: a run folder holds progress.csv or "
            "TensorBoard event files (main.py writes them under --log-dir, default 'runs')."
        )
    return sorted(set(found))


def _read_csv(run_dir: str, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values) of ``metric`` from progress.csv; None when the file lacks that column."""
    with open(os.path.join(run_dir, "progress.csv"), newline="") as f:
        reader = csv.DictReader(f)
        if metric not in (reader.fieldnames or []):
            return None
        # Rows that do not carry the metric (e.g. evaluation rows) leave its cell empty.
        try:
            pairs = [(float(row["env_steps"]), float(row[metric])) for row in reader if row.get(metric)]
        except (KeyError, TypeError, ValueError) as exc:  # a hand-edited or cut file
            raise ConfigError(
                f"{os.path.join(run_dir, 'progress.csv')} line {reader.line_num} cannot be read as numbers "
                f"({type(exc).__name__}: {exc}); repair or remove that run folder."
            ) from None
    return _as_arrays(pairs)


def _read_events(run_dir: str, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values) of ``metric`` from the TensorBoard event files; None when absent."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    if metric not in events.Tags()["scalars"]:
        return None
    return _as_arrays([(float(e.step), float(e.value)) for e in events.Scalars(metric)])


def _as_arrays(pairs: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by step; a step logged twice (a resumed run redoes an update) keeps its last value."""
    by_step = dict(pairs)
    steps = np.array(sorted(by_step), dtype=np.float64)
    return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def read_metric(run_dir: str, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """progress.csv first (cheap), then the event files."""
    if os.path.isfile(os.path.join(run_dir, "progress.csv")):
        data = _read_csv(run_dir, metric)
        if data is not None:
            return data
    if glob.glob(os.path.join(run_dir, "events.out.*")):
        return _read_events(run_dir, metric)
    return None


def _name_parts(run_dir: str) -> tuple[str, str, str]:
    """(env, algo, seed) from ``ENV__ALGO__seedS__TIME``; other names are their own env."""
    name = os.path.basename(os.path.normpath(run_dir))
    match = RUN_NAME.match(name)
    if match is None:
        return name, "run", "0"
    return match["env"], match["algo"], match["seed"]


def _group_folder(run_dir: str) -> str:
    """The folder that tells ``run_dir``'s setting apart: its parent, or the first one above it
    not named ``seedN`` (a folder per seed, as ``benchmarks/gail.py`` makes; the seed is in the
    run's name already)."""
    folder = os.path.dirname(os.path.normpath(run_dir))
    while SEED_FOLDER.fullmatch(os.path.basename(folder)) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def load_curves(paths: Sequence[str], metric: str) -> list[Curve]:
    """Every run's ``metric`` under ``paths``; ConfigError if no run logged it."""
    run_dirs = find_run_dirs(paths)
    parents = {_group_folder(d) for d in run_dirs}
    curves, skipped = [], []
    for run_dir in run_dirs:
        data = read_metric(run_dir, metric)
        if data is None or len(data[0]) == 0:
            skipped.append(run_dir)
            continue
        env, algo, seed = _name_parts(run_dir)
        # Runs from several folders are told apart by their folder (e.g. runs/baseline, runs/lr1e-3).
        parent = os.path.basename(_group_folder(run_dir))
        label = f"{parent}/{algo}" if len(parents) > 1 else algo
        curves.append(Curve(env, label, seed, *data, first_update=_first_update(run_dir), run_dir=run_dir))
    if not curves:
        hint = " (evaluation runs only with main.py --eval-interval N)" if metric == EVAL_METRIC else ""
        raise ConfigError(
            f"none of the {len(run_dirs)} runs found logged the metric {metric!r}{hint}; "
            f"pick one with --metric TAG, e.g. {DEFAULT_METRIC}, charts/SPS or losses/value_loss."
        )
    if skipped:
        console.err.line(f"skipped {runs_text(len(skipped))} without {metric!r}: {', '.join(skipped)}")
    return join_resumed(curves)


def _first_update(run_dir: str) -> int:
    """The update progress.csv starts at (1 without one: event files alone do not say)."""
    path = os.path.join(run_dir, "progress.csv")
    if not os.path.isfile(path):
        return 1
    with open(path, newline="") as f:
        row = next(csv.DictReader(f), None)
    try:
        return int(row["update"]) if row else 1
    except (KeyError, TypeError, ValueError):
        return 1


def _resumed(curve: Curve) -> bool:
    """Whether ``curve``'s run continues a checkpoint in a new folder: every run writes its
    TensorBoard config text at the env steps it starts from, 0 for a new one. Without event files,
    whether its progress.csv starts after update 1 (a new run's starts at --log-interval's first)."""
    if curve.run_dir and glob.glob(os.path.join(curve.run_dir, "events.out.*")):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(curve.run_dir, size_guidance={"scalars": 1, "tensors": 0})
        events.Reload()
        if "hyperparameters/text_summary" in events.Tags()["tensors"]:
            return min(e.step for e in events.Tensors("hyperparameters/text_summary")) > 0
    return curve.first_update > 1


def _key(curve: Curve) -> tuple[str, str, str]:
    return curve.env, curve.label, curve.seed


def join_resumed(curves: Sequence[Curve]) -> list[Curve]:
    """Each run resumed into a new folder (``_resumed``) joined to the run of its env, label and
    seed that starts before it, as one seed: the earlier run's points up to where the resumed one
    starts, then the resumed one's (which redoes the updates after its checkpoint). A resumed run
    without such an earlier run stays as it is, starting late; new runs of one seed stay apart."""
    joined: list[Curve] = []
    for curve in sorted(curves, key=lambda c: (c.env, c.label, c.seed, c.steps[0])):
        before = joined[-1] if joined else None
        if before is None or _key(before) != _key(curve) or not _resumed(curve):
            joined.append(curve)
            continue
        kept = before.steps < curve.steps[0]
        dropped = int((~kept).sum())
        left_out = f" ({dropped} later point{'s' * (dropped > 1)} of that run left out)" if dropped else ""
        console.err.line(
            f"{curve.env} / {curve.label}, seed {curve.seed}: a resumed run (logged from update {curve.first_update}) "
            "joined to the run it continues, as one seed" + left_out
        )
        joined[-1] = Curve(curve.env, curve.label, curve.seed, np.concatenate([before.steps[kept], curve.steps]),
                           np.concatenate([before.values[kept], curve.values]), before.first_update)  # fmt: skip
    return joined


def runs_text(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"
