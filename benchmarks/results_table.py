"""What a user can expect on every popular task: train each env entry's settings for several
seeds and set the results beside the published ones (``benchmarks/published.py``).

For each id (``--ids``, or every id of ``--families``), algorithm (``--algos``) and seed
(``--seeds``, default 1 2 3) it runs, one run at a time,

    python main.py --env-name ID --algo ALGO --seed S --eval-interval K --eval-episodes 10

with the entry's settings (``a2c_ppo/env_entries.py``; K makes about 10 evaluations, the last at
the end), run folders under ``OUT/<family>/`` and console logs under ``OUT/logs/``. It resumes:
a run whose folder holds a finished checkpoint of the budget is skipped, an interrupted one
goes on with ``--resume RUN_DIR/checkpoint.pt``. Then it prints a Markdown table per id (mean ±
std over seeds of the final evaluation return and of the last 10 training episodes' return,
env steps, wall time, the published results and whether ours reaches them), draws
``OUT/<family>.png`` (a2c_ppo.plot) and merges the summary into a results JSON
(``docs/results.json`` at full budget with the default OUT, else ``OUT/results.json``), from
which ``--readme`` rewrites README.md's table. A row keeps each seed's record, so seeds run on
another machine (no run folder here) stay in it when the entry's settings and budget are the
same (``benchmarks/results_store.py``).
At full budget each run's training curve is kept too (``results_curves``), and the family plots
``docs/results_<family>.png`` are drawn from the kept curves.

    python benchmarks/results_table.py --families classic box2d    # all families: days on 2 cores
    python benchmarks/results_table.py --ids Acrobot-v1 --scale 0.002 --seeds 1 2   # smoke test
    python benchmarks/results_table.py --report-only               # tables from the runs in OUT
    python benchmarks/results_table.py --readme                    # README.md from docs/results.json
    python benchmarks/results_table.py --plots                     # docs plots from the kept curves
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from a2c_ppo.checkpoint import load_checkpoint  # noqa: E402
from a2c_ppo.config import defaults  # noqa: E402
from a2c_ppo.logger import format_duration  # noqa: E402
from a2c_ppo.paths import RUN_CHECKPOINT, safe_name  # noqa: E402
from a2c_ppo.presets import ENV_ENTRIES  # noqa: E402
from benchmarks import results_curves  # noqa: E402
from benchmarks.published import ZOO  # noqa: E402
from benchmarks.results_store import (  # noqa: E402
    DOCS_RESULTS,
    entry_settings,
    kept_records,
    load_results,
    read_json,
    same_run,
    save_results,
    seed_record,
    summary,
    write_json,
)
from benchmarks.results_text import mean_std, others_text, published_text, seeds_text, steps_text, verdict  # noqa: E402
from benchmarks.runs import positive_float, seed_number  # noqa: E402
from benchmarks.time_to_result import SB3_PPO_FIXED  # noqa: E402

#: The ids of each family, in table order (a family's runs and plot share OUT/<family>).
FAMILIES: dict[str, tuple[str, ...]] = {
    "classic": ("Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1"),
    "box2d": ("LunarLander-v3", "LunarLanderContinuous-v3", "BipedalWalker-v3", "CarRacing-v3"),
    "mujoco": ("Ant-v5", "HalfCheetah-v5", "Hopper-v5", "Humanoid-v5", "HumanoidStandup-v5", "InvertedPendulum-v5",
               "InvertedDoublePendulum-v5", "Pusher-v5", "Reacher-v5", "Swimmer-v5", "Walker2d-v5"),
}  # fmt: skip
ALGOS = ("ppo", "a2c")
EVALUATIONS = 10  # about this many evaluations per run
EVAL_EPISODES = 10
STOPPED = (130, 143)  # main.py's exit statuses after Ctrl-C and SIGTERM
DOCS_SB3 = os.path.join(ROOT, "docs", "sb3_results.json")  # benchmarks/sb3_entry.py's summaries
README = os.path.join(ROOT, "README.md")
DEFAULT_OUT = os.path.join(ROOT, "benchmarks", "results")
MARKERS = ("<!-- results-table -->", "<!-- /results-table -->")


def family_of(env_id: str) -> str:
    return next(family for family, ids in FAMILIES.items() if env_id in ids)


def budget(env_id: str, algo: str, scale: float = 1.0) -> tuple[int, int]:
    """(--num-env-steps, steps per update) of ``env_id``'s entry for ``algo``, the budget scaled
    by ``scale`` (at least one update). A run trains the whole updates that fit in the budget."""
    values = ENV_ENTRIES[env_id].values[algo]
    batch = values["num_processes"] * values["num_steps"]
    steps = values["num_env_steps"] if scale == 1.0 else max(int(values["num_env_steps"] * scale), batch)
    return steps, batch


def eval_interval(num_updates: int) -> int:
    """The interval whose number of evaluations of a run of ``num_updates`` is nearest
    ``EVALUATIONS`` (by ratio), among those that leave at least half an interval before the
    evaluation main.py adds after the last update."""

    def evaluations(k: int) -> int:
        return math.ceil(num_updates / k)

    spaced = [k for k in range(1, num_updates + 1) if num_updates % k == 0 or num_updates % k >= k / 2]
    return min(spaced, key=lambda k: (abs(math.log(evaluations(k) / EVALUATIONS)), -k))


# ----------------------------------------------------------------------------- runs


def run_dirs(out: str, env_id: str, algo: str, seed: int) -> list[str]:
    pattern = os.path.join(out, family_of(env_id), f"{safe_name(env_id)}__{algo}__seed{seed}__*")
    return sorted(glob.glob(pattern))


def stale_settings(config: dict[str, Any], env_id: str, algo: str) -> list[str]:
    """The entry's settings that a run's saved ``config`` trained with other values of (an entry
    changed since the run): such a run is not this entry's result. A setting the saved config
    lacks (it predates the setting) had its declared default, as a resumed checkpoint takes it."""
    return sorted(key for key, value in entry_settings(env_id, algo).items() if ran_with(config, key) != value)


def as_sb3_trains(settings: dict[str, Any], algo: str) -> dict[str, Any]:
    """``settings`` as Stable-Baselines3 trains them: its PPO standardises each minibatch's
    advantages whatever they say (``SB3_PPO_FIXED``)."""
    return {**settings, **(SB3_PPO_FIXED if algo == "ppo" else {})}


def sb3_stale_settings(settings: dict[str, Any], env_id: str, algo: str) -> list[str]:
    """``stale_settings`` of a Stable-Baselines3 run's saved ``settings``."""
    return stale_settings(as_sb3_trains(settings, algo), env_id, algo)


def ran_with(config: dict[str, Any], key: str) -> Any:
    """The value of setting ``key`` a run's saved ``config`` trained with."""
    return config.get(key, defaults().get(key))


def progress(run_dir: str, steps: int, env_id: str, algo: str) -> int | None:
    """Env steps done by the run in ``run_dir`` if its checkpoint trains for ``steps`` with the
    entry's current settings, else None."""
    path = os.path.join(run_dir, RUN_CHECKPOINT)
    if not os.path.isfile(path):
        return None
    checkpoint = load_checkpoint(path)
    config = checkpoint["config"]
    if config["num_env_steps"] != steps or stale_settings(config, env_id, algo):
        return None
    return checkpoint["counters"]["env_steps"]


def find_run(out: str, env_id: str, algo: str, seed: int, steps: int) -> tuple[str | None, bool]:
    """(the most advanced run folder for this budget or None, whether it is finished)."""
    runs = [(progress(d, steps, env_id, algo), d) for d in run_dirs(out, env_id, algo, seed)]
    done = [(n, d) for n, d in runs if n is not None]
    if not done:
        return None, False
    n, run_dir = max(done)
    _, batch = budget(env_id, algo)
    return run_dir, n >= steps // batch * batch


def wall_times(out: str) -> dict[str, float]:
    return read_json(os.path.join(out, "wall_times.json"))


def add_wall_time(out: str, run_dir: str, seconds: float) -> None:
    """Wall time per run folder, summed over its legs (a resumed run's console starts afresh)."""
    times = wall_times(out)
    key = os.path.relpath(run_dir, out)
    times[key] = times.get(key, 0.0) + seconds
    write_json(os.path.join(out, "wall_times.json"), times)


def train(out: str, env_id: str, algo: str, seed: int, scale: float) -> None:
    """Train (or resume) one run unless it is finished; a failure is reported and skipped."""
    steps, batch = budget(env_id, algo, scale)
    run_dir, finished = find_run(out, env_id, algo, seed, steps)
    what = f"{env_id} {algo} seed {seed} ({steps:,} steps)"
    if finished:
        print(f"{what}: finished in {run_dir}", flush=True)
        return
    main = [sys.executable, os.path.join(ROOT, "main.py"), "--save-dir", os.path.join(out, "models")]
    if run_dir is not None:
        argv = [*main, "--resume", os.path.join(run_dir, RUN_CHECKPOINT)]
    else:
        argv = [*main, "--env-name", env_id, "--algo", algo, "--seed", str(seed), "--log-dir",
                os.path.join(out, family_of(env_id)), "--eval-interval", str(eval_interval(steps // batch)),
                "--eval-episodes", str(EVAL_EPISODES)]  # fmt: skip
        if scale != 1.0:
            argv += ["--num-env-steps", str(steps)]
    print(f"{what}: {'resuming ' + run_dir if run_dir else 'training'}", flush=True)
    log = os.path.join(out, "logs", f"{safe_name(env_id)}__{algo}__seed{seed}.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    before = set(run_dirs(out, env_id, algo, seed))
    start = time.monotonic()
    with open(log, "a") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # Ctrl-C reaches main.py too: it saves its checkpoint and exits
            code = proc.wait()
    made = run_dir or next(iter(set(run_dirs(out, env_id, algo, seed)) - before), None)
    if made is not None:
        add_wall_time(out, made, time.monotonic() - start)
    if code in STOPPED:
        raise SystemExit(f"{what}: stopped (status {code}); the same command resumes it.")
    if code != 0:
        print(f"{what}: main.py exited with status {code}; see {log}", flush=True)


# ----------------------------------------------------------------------------- results


def summarise(
    out: str, env_id: str, algo: str, seeds: list[int], scale: float, stored: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The row of ``env_id`` and ``algo``: the runs of ``seeds`` finished in ``out``, and the
    seeds of the ``stored`` row trained elsewhere with the same settings and budget
    (``results_store.kept_records``); None where no seed finished in ``out``."""
    steps, batch = budget(env_id, algo, scale)
    env_steps, settings = steps // batch * batch, entry_settings(env_id, algo)
    times, fresh = wall_times(out), {}
    for seed in seeds:
        run_dir, done = find_run(out, env_id, algo, seed, steps)
        if done and run_dir is not None:
            fresh[seed] = seed_record(seed, run_dir, times.get(os.path.relpath(run_dir, out), float("nan")))
    if not fresh:  # nothing new here: the stored row stays as it is
        return None
    records = {**kept_records(stored, settings, env_steps), **fresh}
    lost = sorted(set(stored["seeds"]) - set(records)) if stored and same_run(stored, settings, env_steps) else []
    if lost:  # a row stored without its seeds' records cannot take some of them: it stays whole
        print(f"{env_id} {algo}: the stored row's seeds {lost} keep no records to merge with seeds "
              f"{sorted(fresh)}; it stays as stored (run all of {sorted(set(stored['seeds']) | set(fresh))} to "
              "replace it).", flush=True)  # fmt: skip
        return None
    return summary(records, env_steps, settings)


def id_table(env_id: str, summaries: dict[str, dict[str, Any] | None], scale: float) -> str:
    """The runner's Markdown table of one id: a row per algorithm."""
    title = f"### {env_id}" + ("" if scale == 1.0 else f" (budgets x{scale:g}: not comparable with the published)")
    rows = [title, "", "| algo | seeds | env steps | wall time per run (h:mm:ss) | final eval return (10 ep.) | "
            "training return (last 10 ep.) | rl-baselines3-zoo | CleanRL / Tianshou | ours vs zoo |",
            "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for algo, s in summaries.items():
        steps, _ = budget(env_id, algo, scale)
        zoo = ZOO.get((env_id, algo))
        zoo_text = published_text(zoo, steps) if zoo else "-"
        if s is None:
            ours = ["-", f"{steps:,}", "-", "not run yet", "-"]
        else:
            ours = [" ".join(map(str, s["seeds"])), f"{s['env_steps']:,}", format_duration(s["wall_s"]),
                    mean_std(s["eval_mean"], s["eval_std"]), mean_std(s["train_mean"], s["train_std"])]  # fmt: skip
        judged = verdict(s, zoo, env_id, algo, steps) if scale == 1.0 else "- (budget scaled)"
        rows.append("| " + " | ".join([algo, *ours, zoo_text, others_text(env_id, algo, steps), judged]) + " |")
    return "\n".join(rows)


def readme_table(results: dict[str, dict[str, dict[str, Any]]], sb3: dict[str, dict[str, dict[str, Any]]]) -> str:
    """README.md's table: every entry, its budget, our result (``results``, docs/results.json),
    the published ones, SB3's with the same settings where measured (``sb3``,
    docs/sb3_results.json) and the verdict."""
    rows = ["| env | algo | budget | ours: final eval return, mean ± std over seeds | rl-baselines3-zoo | "
            "CleanRL / Tianshou | Stable-Baselines3 with these settings | ours vs zoo |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for env_id in (env_id for ids in FAMILIES.values() for env_id in ids):
        for algo in ENV_ENTRIES[env_id].values:
            steps, _ = budget(env_id, algo)
            ours = results.get(env_id, {}).get(algo)
            zoo = ZOO.get((env_id, algo))
            judged = verdict(ours, zoo, env_id, algo, steps)
            result = "not run yet"
            if ours:
                result = seeds_text(ours)
                changed = stale_settings(ours.get("settings", {}), env_id, algo)
                if changed:  # measured before the entry changed: shown, but not judged as the entry's
                    earlier = ", ".join(f"{key} {ran_with(ours['settings'], key)}" for key in changed)
                    result += f" with earlier {earlier}"
                    judged = "not rerun with the entry's current settings yet"
            theirs = sb3.get(env_id, {}).get(algo)
            sb3_text = "-"
            if theirs and not sb3_stale_settings(theirs.get("settings", {}), env_id, algo):
                sb3_text = seeds_text(theirs)
                if ours and "below" in judged:  # is the shortfall the settings' or ours?
                    # SB3's against the zoo's result, or the other one where the zoo has none
                    theirs_judged = verdict(theirs, zoo, env_id, algo, steps)
                    judged += "; SB3's: " + theirs_judged.removeprefix("no zoo result; ").split("; ")[0]
            cells = [env_id, algo, steps_text(steps), result, published_text(zoo, steps) if zoo else "-",
                     others_text(env_id, algo, steps), sb3_text, judged]  # fmt: skip
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def stale_rows(results: dict[str, dict[str, dict[str, Any]]]) -> set[str]:
    """The rows (``"ENV ALGO"``) of ``results`` measured with settings their entry no longer has."""
    return {f"{env_id} {algo}" for env_id, by_algo in results.items() for algo, summary in by_algo.items()
            if summary and stale_settings(summary.get("settings", {}), env_id, algo)}  # fmt: skip


def write_readme(path: str = README, results_path: str = DOCS_RESULTS, sb3_path: str = DOCS_SB3) -> None:
    """Replace the table between README.md's results-table markers."""
    with open(path) as f:
        text = f.read()
    head, rest = text.split(MARKERS[0], 1)
    tail = rest.split(MARKERS[1], 1)[1]
    with open(path, "w") as f:
        table = readme_table(load_results(results_path), read_json(sb3_path))
        f.write(f"{head}{MARKERS[0]}\n{table}\n{MARKERS[1]}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", nargs="+", choices=[i for ids in FAMILIES.values() for i in ids], metavar="ID")
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    parser.add_argument("--seeds", nargs="+", type=seed_number, default=[1, 2, 3])
    parser.add_argument("--scale", type=positive_float, default=1.0, help="multiply every budget (smoke tests)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="runs, logs and plots")
    parser.add_argument("--results", help="results JSON to merge into (default: docs/results.json at scale 1 with "
                        "the default --out, else OUT/results.json)")  # fmt: skip
    parser.add_argument("--report-only", action="store_true", help="train nothing; report the runs in OUT")
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite README.md's table from docs/results.json (in the repository)")  # fmt: skip
    parser.add_argument("--plots", action="store_true", help="only redraw docs/results_<family>.png from "
                        "docs/results_curves.json (in the repository)")  # fmt: skip
    opts = parser.parse_args()
    opts.out = os.path.abspath(opts.out)  # the runs' main.py works in the repository's root
    if opts.readme:
        write_readme()
        return
    if opts.plots:
        results_curves.draw_docs_plots(FAMILIES, load_results(), stale_rows(load_results()))
        return
    ids = opts.ids or [i for family in opts.families for i in FAMILIES[family]]
    jobs = [(i, algo) for i in ids for algo in opts.algos if algo in ENV_ENTRIES[i].values]
    if not opts.report_only:
        for env_id, algo in jobs:
            for seed in opts.seeds:
                train(opts.out, env_id, algo, seed, opts.scale)
    # the repository's results only from its own runs folder at full budget: another --out keeps its own
    into_docs = opts.scale == 1.0 and opts.out == DEFAULT_OUT
    results_path = opts.results or (DOCS_RESULTS if into_docs else os.path.join(opts.out, "results.json"))
    stored = load_results(results_path)
    results: dict[str, dict[str, dict[str, Any] | None]] = {}
    for env_id, algo in jobs:
        row = stored.get(env_id, {}).get(algo)
        results.setdefault(env_id, {})[algo] = summarise(opts.out, env_id, algo, opts.seeds, opts.scale, row)
    for env_id, summaries in results.items():
        print(f"\n{id_table(env_id, summaries, opts.scale)}")
    print(
        "\nzoo: one seed, ± over its evaluation episodes; CleanRL: training return ± over seeds; Tianshou: best "
        "mean test return (stochastic policy) ± over seeds. Each is judged against the same measure of ours."
    )
    save_results(results_path, results)
    for family in dict.fromkeys(family_of(i) for i in ids):
        folders = [os.path.join(ROOT, d) for summaries in (results[i] for i in ids if family_of(i) == family)
                   for s in summaries.values() if s for d in s["run_dirs"]]  # fmt: skip
        here = [d for d in folders if os.path.isdir(d)]  # seeds kept from another machine have no folder here
        if here:
            results_curves.plot_runs(here, os.path.join(opts.out, f"{family}.png"))
    for env_id, by_algo in results.items():  # the curves beside the results JSON
        for algo, row in by_algo.items():
            if row is not None:
                results_curves.save(os.path.join(os.path.dirname(results_path), results_curves.FILE), env_id, algo,
                                    row["seeds"], [os.path.join(ROOT, d) for d in row["run_dirs"]])  # fmt: skip
    if os.path.abspath(results_path) == DOCS_RESULTS:
        docs, families = load_results(), {f: FAMILIES[f] for f in dict.fromkeys(map(family_of, ids))}
        results_curves.draw_docs_plots(families, docs, stale_rows(docs))


if __name__ == "__main__":
    main()
