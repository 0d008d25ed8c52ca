"""Learning curves from run folders: ``python -m a2c_ppo.plot RUN_DIR [RUN_DIR ...] [--out FILE.png]``.

A run folder (``ENV__ALGO__seedS__TIME``, made by ``paths.new_run_dir``) holds ``progress.csv``
and TensorBoard event files. Runs are grouped by env (one panel each) and by a label (one line
each: the algorithm, prefixed by the parent folder's name when the runs come from several
folders); a line is the mean over the group's seeds with a shaded spread. Without ``--out`` the
picture goes next to the runs (``curve.png`` in the folder that holds them all), not into the
current folder, which may be a source tree.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from a2c_ppo import console
from a2c_ppo.console import fail
from a2c_ppo.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_METRIC = "charts/episodic_return"
EVAL_METRIC = "eval/mean_return"
RUN_NAME = re.compile(r"^(?P<env>.+)__(?P<algo>[^_]+)__seed(?P<seed>-?\d+)__(?P<time>[^_]+)$")
SEED_FOLDER = re.compile(r"seed-?\d+")
BOOTSTRAP_SAMPLES = 1000
DEFAULT_OUT = "curve.png"
OUT_FORMATS = (".png", ".svg", ".pdf")
PANELS_PER_ROW = 3


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


@dataclass
class Band:
    """The mean over seeds and its spread on a common step grid; every array has shape (G,)."""

    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    num_runs: int


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
            f"{curve.env} / {curve.label}, seed {curve.seed}: a run resumed at update {curve.first_update} joined to "
            "the run it continues, as one seed" + left_out
        )
        joined[-1] = Curve(curve.env, curve.label, curve.seed, np.concatenate([before.steps[kept], curve.steps]),
                           np.concatenate([before.values[kept], curve.values]), before.first_update)  # fmt: skip
    return joined


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (fewer at the start); shape kept."""
    if window <= 1:
        return values
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def aggregate(curves: Sequence[Curve], window: int = 1, ci: bool = False, seed: int = 0) -> Band:
    """Mean over runs on a common grid, with the std over runs or a 95% bootstrap interval.

    The grid is every step any run logged within the range all runs cover; each run is
    linearly interpolated onto it. The std is the population std (ddof 0) over runs.
    """
    start = max(c.steps[0] for c in curves)
    end = min(c.steps[-1] for c in curves)
    if start > end:
        names = ", ".join(f"seed {c.seed}" for c in curves)
        raise ConfigError(
            f"the runs of {curves[0].env} / {curves[0].label} ({names}) cover no common range of env steps, "
            "so they have no mean; plot them from separate folders."
        )
    grid = np.unique(np.concatenate([c.steps for c in curves]))
    grid = grid[(grid >= start) & (grid <= end)]
    values = np.stack([np.interp(grid, c.steps, smooth(c.values, window)) for c in curves])  # (runs, G)
    mean = values.mean(axis=0)
    if ci:
        rng = np.random.default_rng(seed)  # fixed: the same runs draw the same picture
        picks = rng.integers(0, len(curves), size=(BOOTSTRAP_SAMPLES, len(curves)))
        low, high = np.percentile(values[picks].mean(axis=1), [2.5, 97.5], axis=0)
    else:
        std = values.std(axis=0)
        low, high = mean - std, mean + std
    return Band(grid, mean, low, high, len(curves))


#: A mean that starts later than its earliest run by more than this fraction of the runs' span is noted.
LATE_START = 0.05


def cut_notes(curves: Sequence[Curve]) -> list[str]:
    """A line per (env, label) whose mean starts after its earliest run or stops before its
    longest: the mean covers only the steps every run reached."""
    notes = []
    for env, label in sorted({(c.env, c.label) for c in curves}):
        runs = [c for c in curves if c.env == env and c.label == label]
        starts, ends = [int(c.steps[0]) for c in runs], [int(c.steps[-1]) for c in runs]
        cuts = []
        # a run's first point waits for its first finished episode: a few updates apart is no cut
        if max(starts) - min(starts) > LATE_START * (max(ends) - min(starts)):
            cuts.append(
                f"starts at {max(starts):,} env steps, where the latest starts (the earliest at {min(starts):,})"
            )
        if min(ends) < max(ends):
            cuts.append(
                f"ends at {min(ends):,} env steps, where the shortest ends (the longest goes on to {max(ends):,})"
            )
        if cuts:
            notes.append(f"{env} / {label}: the mean of {len(runs)} runs {' and '.join(cuts)}; plot a run from a "
                         "folder of its own to see it all.")  # fmt: skip
    return notes


def _load_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"plotting needs matplotlib, which did not import ({exc}); install the extra with "
            "pip install -e '.[plot]' (or pip install matplotlib)."
        ) from exc


def draw(curves: Sequence[Curve], metric: str, window: int = 1, ci: bool = False) -> Figure:
    """One panel per env, one line (mean) and one shaded band (spread) per label."""
    _load_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    envs = sorted({c.env for c in curves})
    cols = min(len(envs), PANELS_PER_ROW)
    rows = -(-len(envs) // cols)
    fig = Figure(figsize=(5 * cols, 3.8 * rows), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas: no display or global pyplot state needed
    spread = "95% bootstrap CI" if ci else "std"
    for i, env in enumerate(envs):
        ax = fig.add_subplot(rows, cols, i + 1)
        for label in sorted({c.label for c in curves if c.env == env}):
            band = aggregate([c for c in curves if c.env == env and c.label == label], window, ci)
            (line,) = ax.plot(band.steps, band.mean, label=f"{label} ({runs_text(band.num_runs)})")
            ax.fill_between(band.steps, band.low, band.high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", title=f"mean ± {spread}", title_fontsize="small")
    return fig


def runs_text(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def default_out(paths: Sequence[str]) -> str:
    """``curve.png`` in the folder holding every path given (``runs/curve.png`` for ``runs``)."""
    return os.path.join(os.path.commonpath([os.path.abspath(p) for p in paths]), DEFAULT_OUT)


def plot(paths: Sequence[str], out: str, metric: str = DEFAULT_METRIC, window: int = 1, ci: bool = False) -> Figure:
    """Read the runs under ``paths``, draw them and write the picture to ``out``."""
    check_out(out)
    curves = load_curves(paths, metric)
    fig = draw(curves, metric, window, ci)
    for note in cut_notes(curves):
        console.out.line(note)
    try:
        fig.savefig(out, dpi=100)
    except OSError as exc:
        raise ConfigError(f"--out {out!r} cannot be written ({exc.strerror or exc}); pick another path.") from None
    return fig


def check_out(out: str) -> None:
    """ConfigError unless ``out`` names a picture (png, svg or pdf) in a folder that exists."""
    if os.path.isdir(out) or out.endswith(os.sep):
        raise ConfigError(f"--out {out!r} is a folder; give the picture's file name (e.g. {DEFAULT_OUT}).")
    if os.path.splitext(out)[1].lower() not in OUT_FORMATS:
        raise ConfigError(f"--out {out!r}: give a file name ending in {', '.join(OUT_FORMATS)}.")
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise ConfigError(f"--out {out!r}: the folder {out_dir!r} does not exist; create it or pick another path.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="a2c-ppo-plot",
        description="Draw learning curves (mean over seeds with a shaded spread) from run folders.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders, or folders that contain run folders")
    p.add_argument(
        "--out", metavar="FILE.png", help=f"picture to write, png, svg or pdf (default: {DEFAULT_OUT} beside the runs)"
    )
    p.add_argument(
        "--metric",
        metavar="TAG",
        help=f"scalar to draw, a TensorBoard tag (default: {DEFAULT_METRIC})",
    )
    p.add_argument("--eval", action="store_true", help=f"draw {EVAL_METRIC} (instead of --metric)")
    p.add_argument(
        "--smooth", type=int, default=1, metavar="N", help="trailing moving average over N points (default: 1)"
    )
    p.add_argument("--ci", action="store_true", help="shade a 95%% bootstrap interval of the mean instead of the std")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = "a2c-ppo-plot"
    if args.smooth <= 0:
        fail(f"--smooth must be a positive integer, got {args.smooth}.", prog)
    if args.eval and args.metric:
        fail(f"--eval draws {EVAL_METRIC}, and --metric {args.metric} another scalar: give one of them.", prog)
    out = args.out or default_out(args.runs)
    try:
        plot(args.runs, out, EVAL_METRIC if args.eval else args.metric or DEFAULT_METRIC, args.smooth, args.ci)
    except ConfigError as exc:
        fail(str(exc), prog)
    console.out.line(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
