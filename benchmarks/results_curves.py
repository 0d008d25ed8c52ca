"""The results table's training curves, kept in the repository: each run's training return,
thinned to ``POINTS`` points, in ``docs/results_curves.json``, from which the family plots
``docs/results_<family>.png`` are drawn.

Run folders stay on the machine that trained them (git ignores ``benchmarks/results/``), so
without this a family plot could only be redrawn where every one of its runs was trained.
A family's plot shows the rows of the family in ``docs/results.json`` that have their curves
here and names the others (rows run before curves were kept) under its panels.

The file holds one line per env and algorithm, ``"ENV ALGO": {"SEED": {"steps": [...],
"return": [...]}}``, so that a rerun row changes one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILE = "results_curves.json"  # beside the results JSON it belongs to
DOCS = os.path.join(ROOT, "docs")
POINTS = 100  # per run: enough for the shape of a curve, small enough to commit
METRIC = "charts/episodic_return"


def thin(steps: np.ndarray, values: np.ndarray, points: int = POINTS) -> tuple[list[float], list[float]]:
    """``points`` equal spans of env steps over the run, each the mean step and mean value of the
    points logged in it (empty spans dropped); 4 significant digits. ``steps`` and ``values``:
    shape (N,), steps ascending."""
    edges = np.linspace(steps[0], steps[-1], points + 1)
    spans = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, points - 1)  # (N,)
    counts = np.bincount(spans, minlength=points)
    kept = counts > 0
    mean_steps = np.bincount(spans, weights=steps, minlength=points)[kept] / counts[kept]
    mean_values = np.bincount(spans, weights=values, minlength=points)[kept] / counts[kept]
    return [round(float(s)) for s in mean_steps], [float(f"{v:.4g}") for v in mean_values]


def run_curve(run_dir: str) -> dict[str, list[float]] | None:
    """A run's thinned training-return curve (None if it logged no episode)."""
    from a2c_ppo.run_curves import read_metric

    data = read_metric(run_dir, METRIC)
    if data is None or len(data[0]) == 0:
        return None
    steps, values = thin(*data)
    return {"steps": steps, "return": values}


def plot_runs(run_dirs: list[str], out: str) -> None:
    """Draw the runs' training curves from their folders into ``out`` (the runner's own plot)."""
    from a2c_ppo.errors import ConfigError
    from a2c_ppo.plot import plot

    try:
        plot(run_dirs, out)
        print(f"wrote {out}")
    except ConfigError as exc:
        print(f"no plot {out}: {exc}")


def load(path: str = os.path.join(DOCS, FILE)) -> dict[str, dict[str, dict[str, list[float]]]]:
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def save(path: str, env_id: str, algo: str, seeds: list[int], run_dirs: list[str]) -> None:
    """Store the curves of one row's runs (``run_dirs[i]`` trained seed ``seeds[i]``), replacing
    the row's earlier curves; a seed whose folder is not on this machine (kept from a run
    elsewhere: ``results_store``) keeps its stored curve."""
    curves = load(path)
    earlier = curves.get(f"{env_id} {algo}", {})
    found = {seed: run_curve(d) if os.path.isdir(d) else earlier.get(str(seed)) for seed, d in zip(seeds, run_dirs)}
    row = {str(seed): curve for seed, curve in found.items() if curve}
    curves[f"{env_id} {algo}"] = row
    with open(path, "w") as f:
        lines = [f" {json.dumps(key)}: {json.dumps(curves[key])}" for key in sorted(curves)]
        f.write("{\n" + ",\n".join(lines) + "\n}\n")


def missing_rows(results: dict[str, dict[str, Any]], ids: tuple[str, ...], curves: dict[str, Any]) -> list[str]:
    """The rows (``"ENV ALGO"``) of ``ids`` that have a result but no stored curve."""
    rows = [f"{env_id} {algo}" for env_id in ids for algo in results.get(env_id, {})]
    return [row for row in rows if row not in curves]


def draw_family(
    family: str,
    ids: tuple[str, ...],
    results: dict[str, dict[str, Any]],
    curves: dict[str, Any],
    out: str,
    stale: Collection[str] = (),
) -> tuple[bool, list[str]]:
    """Draw the family's plot from ``curves`` (``load``) into ``out``: mean ± std over seeds, a
    panel per env, a line per algorithm, for every row of ``results`` that has its curves, the
    ``stale`` rows (``"ENV ALGO"``, measured with earlier settings) labelled so. Returns whether
    it drew, and the rows without curves (named under the panels)."""
    from a2c_ppo.plot import draw
    from a2c_ppo.run_curves import Curve

    missing = missing_rows(results, ids, curves)
    lines = [Curve(env_id, algo + (", earlier settings" if f"{env_id} {algo}" in stale else ""), seed,
                   np.array(c["steps"], dtype=np.float64), np.array(c["return"], dtype=np.float64))
             for env_id in ids for algo in results.get(env_id, {}) if f"{env_id} {algo}" in curves
             for seed, c in curves[f"{env_id} {algo}"].items()]  # fmt: skip
    if not lines:
        return False, missing
    figure = draw(lines, f"training return ({family})")
    if missing:
        figure.supxlabel(f"not shown, no curves kept (rerun to add): {', '.join(missing)}", fontsize="small")
    figure.savefig(out, dpi=100)
    return True, missing


def draw_docs_plots(
    families: dict[str, tuple[str, ...]], results: dict[str, dict[str, Any]], stale: Collection[str] = ()
) -> None:
    """Redraw docs/results_<family>.png of each family (its ids) from the kept curves (see
    ``draw_family``), saying which rows of the family in ``results`` (docs/results.json) have none."""
    curves = load()
    for family, ids in families.items():
        out = os.path.join(DOCS, f"results_{family}.png")
        drawn, missing = draw_family(family, ids, results, curves, out, stale)
        shown = os.path.relpath(out, ROOT)
        absent = f"no curves kept for {', '.join(missing)} (rerun them to add)" if missing else ""
        print(f"wrote {shown}" + (f"; {absent}" if absent else "") if drawn else f"{shown} kept: {absent}")
