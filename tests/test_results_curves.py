"""The results table keeps each run's thinned training curve beside its results JSON, and the
docs plots are drawn from the kept curves only when a family has every row's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import results_curves
from tests.helpers import ROOT


def test_thin_takes_the_mean_step_and_value_of_each_equal_span_of_steps():
    steps = np.arange(10.0)  # spans of 1.8 steps over 0..9: {0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}
    values = np.array([0.0, 2, 4, 6, 8, 10, 12, 14, 16, 18])
    assert results_curves.thin(steps, values, points=5) == ([0, 2, 4, 6, 8], [1.0, 5.0, 9.0, 13.0, 17.0])
    # empty spans are dropped, the last step falls in the last span, 4 significant digits
    sparse = results_curves.thin(np.array([0.0, 1.0, 100.0]), np.array([1 / 3, 2 / 3, 123456.0]), points=4)
    assert sparse == ([0, 100], [0.5, 123500.0])


def _run(folder, name: str, returns: list[float]) -> str:
    run_dir = os.path.join(folder, name)
    os.makedirs(run_dir)
    rows = ["env_steps,charts/episodic_return,eval/mean_return"]
    rows += [f"{1000 * (i + 1)},{value}," for i, value in enumerate(returns)] + ["10000,,7.5"]  # an eval row
    with open(os.path.join(run_dir, "progress.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    return run_dir


def test_curves_are_kept_a_line_per_row_and_a_family_plot_names_the_rows_without_them(tmp_path):
    pytest.importorskip("matplotlib")
    path = str(tmp_path / results_curves.FILE)
    runs = [_run(tmp_path, f"Acrobot-v1__ppo__seed{s}__0", [-500.0 + 100 * s, -100.0]) for s in (1, 2)]
    results_curves.save(path, "Acrobot-v1", "ppo", [1, 2], runs)
    results_curves.save(path, "Pendulum-v1", "a2c", [3], [_run(tmp_path, "Pendulum-v1__a2c__seed3__0", [-900.0])])
    results_curves.save(path, "Acrobot-v1", "ppo", [1, 2], runs)  # a rerun row replaces its line
    lines = open(path).read().splitlines()
    assert lines[0] == "{" and lines[-1] == "}" and len(lines) == 4
    curves = results_curves.load(path)
    assert curves["Acrobot-v1 ppo"]["2"] == {"steps": [1000, 2000], "return": [-300.0, -100.0]}  # no eval row

    results = {"Acrobot-v1": {"ppo": {}, "a2c": {}}, "Pendulum-v1": {"a2c": {}}}
    out = str(tmp_path / "classic.png")
    ids = ("Acrobot-v1", "Pendulum-v1")
    assert results_curves.draw_family("classic", ids, results, curves, out) == (True, ["Acrobot-v1 a2c"])
    with_note = os.path.getsize(out)  # the rows with curves, the one without named under the panels
    del results["Acrobot-v1"]["a2c"]
    assert results_curves.draw_family("classic", ids, results, curves, out) == (True, [])
    assert 10_000 < os.path.getsize(out) < with_note
    assert results_curves.draw_family("classic", ids, {"Acrobot-v1": {"a2c": {}}}, curves, out) == (
        False,
        ["Acrobot-v1 a2c"],
    )  # nothing to draw: the file is left as it was


def test_the_runner_keeps_its_runs_curves_beside_its_results(tmp_path):
    """``results_table.py`` at a smoke scale: results and curves go to OUT, docs are untouched."""
    names = ("results.json", "results_curves.json", "results_classic.png")
    docs = {name: os.path.getmtime(os.path.join(ROOT, "docs", name)) for name in names}
    argv = [sys.executable, os.path.join(ROOT, "benchmarks", "results_table.py"), "--ids", "Pendulum-v1", "--algos",
            "a2c", "--seeds", "1", "--scale", "0.004", "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.load(open(tmp_path / "results.json"))
    curves = results_curves.load(str(tmp_path / results_curves.FILE))
    row = results["Pendulum-v1"]["a2c"]
    assert row["seeds"] == [1] and row["per_seed"] == [row["eval_mean"]] and list(curves) == ["Pendulum-v1 a2c"]
    steps = curves["Pendulum-v1 a2c"]["1"]["steps"]
    assert 0 < len(steps) <= results_curves.POINTS and steps[-1] <= row["env_steps"]
    assert {name: os.path.getmtime(os.path.join(ROOT, "docs", name)) for name in docs} == docs
    # another machine (a fresh OUT, no run folders of seed 1) trains seed 2 into the same results:
    # the row keeps seed 1's record and curve and adds seed 2's
    shutil.rmtree(tmp_path / "classic")
    argv = [*argv[:7], "2", *argv[8:11], str(tmp_path / "other"), "--results", str(tmp_path / "results.json")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    merged = json.load(open(tmp_path / "results.json"))["Pendulum-v1"]["a2c"]
    assert merged["seeds"] == [1, 2] and merged["per_seed"][0] == row["eval_mean"]
    assert [record["seed"] for record in merged["runs"]] == [1, 2] and merged["runs"][0] == row["runs"][0]
    assert merged["eval_mean"] == pytest.approx(np.mean(merged["per_seed"]))
    kept = results_curves.load(str(tmp_path / results_curves.FILE))["Pendulum-v1 a2c"]
    assert sorted(kept) == ["1", "2"] and kept["1"] == curves["Pendulum-v1 a2c"]["1"]
