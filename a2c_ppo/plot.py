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
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from a2c_ppo import console
from a2c_ppo.console import fail
from a2c_ppo.errors import ConfigError, WriteFailedError
from a2c_ppo.files import write_atomically
from a2c_ppo.run_curves import DEFAULT_METRIC, EVAL_METRIC, Curve, load_curves, runs_text
from a2c_ppo.signals import command_stops

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BOOTSTRAP_SAMPLES = 1000
DEFAULT_OUT = "curve.png"
OUT_FORMATS = (".png", ".svg", ".pdf")
PANELS_PER_ROW = 3


@dataclass
class Band:
    """The mean over seeds and its spread on a common step grid; every array has shape (G,)."""

    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    num_runs: int


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
    picture_format = os.path.splitext(out)[1].lstrip(".").lower()
    try:  # whole or not at all: a Ctrl-C or a full disk mid-write keeps the picture there was
        write_atomically(out, lambda file: fig.savefig(file, dpi=100, format=picture_format))
    except WriteFailedError as exc:
        raise ConfigError(f"--out {out!r} cannot be written ({exc.cause}); pick another path.") from None
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
        with command_stops():
            plot(args.runs, out, EVAL_METRIC if args.eval else args.metric or DEFAULT_METRIC, args.smooth, args.ci)
    except ConfigError as exc:
        fail(str(exc), prog)
    except KeyboardInterrupt as exc:  # reading many runs' event files takes a while
        return console.say_stopped(exc)
    console.out.line(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
