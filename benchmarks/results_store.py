"""The results JSON of ``benchmarks/results_table.py`` (``docs/results.json`` at full budget):
per env and algorithm, a summary over seeds and each seed's own record, so that seeds trained
on different machines make one row.

Run folders stay on the machine that trained them (git ignores ``benchmarks/results/``), and a
new machine starts without them. A row therefore keeps each seed's record (final evaluation,
last training return, Tianshou's test points, wall time, run folder), and a later run of other
seeds with the same settings and budget adds to the row instead of replacing it
(``kept_records``). A change of the entry's settings starts the row afresh.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from a2c_ppo.presets import ENV_ENTRIES
from benchmarks.published import TIANSHOU_TEST_EVERY
from benchmarks.runs import best_of_tests, last_logged, tianshou_tests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS_RESULTS = os.path.join(ROOT, "docs", "results.json")


def read_json(path: str) -> dict[str, Any]:
    """The JSON object in ``path``, or ``{}`` where there is no such file."""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write_json(path: str, data: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")


def entry_settings(env_id: str, algo: str) -> dict[str, Any]:
    """The entry's settings a result was trained with (kept with it, so that a later change of
    the entry shows: ``results_table.readme_table``)."""
    return {key: value for key, value in ENV_ENTRIES[env_id].values[algo].items() if key != "num_env_steps"}


def shown(path: str) -> str:
    """``path`` relative to the repository where it is inside it (as docs/results.json keeps it)."""
    relative = os.path.relpath(path, ROOT)
    return os.path.abspath(path) if relative.startswith("..") else relative


def seed_record(seed: int, run_dir: str, wall_s: float) -> dict[str, Any]:
    """One finished run's record, read from its folder."""
    return {
        "seed": seed, "run_dir": shown(run_dir), "wall_s": wall_s,
        "eval": last_logged(run_dir, "eval/mean_return"), "train": last_logged(run_dir, "charts/episodic_return"),
        **tianshou_tests(run_dir, TIANSHOU_TEST_EVERY),
    }  # fmt: skip


def same_run(row: dict[str, Any], settings: dict[str, Any], env_steps: int) -> bool:
    """Whether a stored ``row`` was trained with ``settings`` for ``env_steps``."""
    return row.get("env_steps") == env_steps and row.get("settings") == json.loads(json.dumps(settings))


def kept_records(row: dict[str, Any] | None, settings: dict[str, Any], env_steps: int) -> dict[int, dict[str, Any]]:
    """The seeds' records of a stored ``row`` if it was trained with ``settings`` for
    ``env_steps``, else none. A row stored before records were kept gives its one seed's (its
    summary is that seed's, without Tianshou's test points); a row of several such seeds, none."""
    if row is None or not same_run(row, settings, env_steps):
        return {}
    if "runs" in row:
        return {record["seed"]: record for record in row["runs"]}
    if len(row["seeds"]) != 1:
        return {}
    seed, run_dir = row["seeds"][0], row["run_dirs"][0]
    legacy = {"run_dir": run_dir, "wall_s": row["wall_s"], "eval": row["eval_mean"], "train": row["train_mean"]}
    return {seed: {"seed": seed, **legacy, "tests": None, "end": None}}


def summary(records: dict[int, dict[str, Any]], env_steps: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Mean and std over the seeds' ``records``: final evaluation return (and each seed's), last
    training return, the best training return (``best_of_tests``), env steps, wall time per run,
    which seeds and where they ran, and the records themselves."""
    runs = [records[seed] for seed in sorted(records)]
    evals, trains = [r["eval"] for r in runs], [r["train"] for r in runs]
    best_mean, best_std = best_of_tests(runs)
    return {
        "eval_mean": float(np.mean(evals)), "eval_std": float(np.std(evals)), "per_seed": evals,
        "train_mean": float(np.mean(trains)), "train_std": float(np.std(trains)),
        "best_train_mean": best_mean, "best_train_std": best_std, "env_steps": env_steps,
        "wall_s": float(np.mean([r["wall_s"] for r in runs])), "seeds": [r["seed"] for r in runs],
        "run_dirs": [r["run_dir"] for r in runs], "settings": settings, "runs": runs,
    }  # fmt: skip


def load_results(path: str = DOCS_RESULTS) -> dict[str, dict[str, dict[str, Any]]]:
    return read_json(path)


def save_results(path: str, results: dict[str, dict[str, dict[str, Any] | None]]) -> None:
    """Merge the summaries into the JSON file at ``path`` (ids and algorithms not run keep theirs),
    a line per env and algorithm, so that a rerun row changes one line."""
    merged = load_results(path)
    for env_id, by_algo in results.items():
        for algo, row in by_algo.items():
            if row is not None:
                merged.setdefault(env_id, {})[algo] = json.loads(json.dumps(row))
    envs = [
        f" {json.dumps(env_id)}: {{\n"
        + ",\n".join(f"  {json.dumps(algo)}: {json.dumps(row, sort_keys=True)}" for algo, row in sorted(rows.items()))
        + "\n }"
        for env_id, rows in sorted(merged.items())
    ]
    with open(path, "w") as f:
        f.write("{\n" + ",\n".join(envs) + "\n}\n")
