"""Data-parallel training throughput: ``main.py`` under torchrun at 1, 2, ... ranks.

Each configuration trains the same per-rank workload (``--num-processes`` envs x
``--num-steps`` steps per update, ``--updates`` updates per rank, so the global
``--num-env-steps`` grows with the rank count) and reads the training SPS of the last
progress line from rank 0's ``progress.csv``; the wall time includes start-up. ``plain`` is
``python main.py`` without torchrun (the launcher's overhead shows against ``1 rank``).
Configurations run interleaved (A B A B ...) ``--repeats`` times, and the table shows medians
and the SPS ratio to the first of ``--ranks``. CPU and gloo unless ``--cuda`` (then NCCL, one GPU per rank).

    python benchmarks/distributed.py
    python benchmarks/distributed.py --env-name CartPole-v1 --updates 2 --repeats 1   # smoke test
    python benchmarks/distributed.py --ranks 1 2 4 8 --cuda                         # a GPU node
"""

from __future__ import annotations

import argparse
import csv
import datetime
import glob
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-name", default="HalfCheetah-v5")
    parser.add_argument("--algo", default="ppo", choices=["ppo", "a2c"])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--num-processes", type=int, default=4, help="envs per rank")
    parser.add_argument("--num-steps", type=int, default=256)
    parser.add_argument("--updates", type=int, default=8, help="updates per rank")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-plain", action="store_true", help="skip the run without torchrun")
    parser.add_argument("--cuda", action="store_true", help="train on GPUs (NCCL); default CPU and gloo")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before a launch is killed")
    return parser.parse_args()


def command(args: argparse.Namespace, ranks: int | None, out_dir: str) -> list[str]:
    """``ranks`` None: plain ``python main.py``; else torchrun with ``ranks`` processes."""
    world = ranks or 1
    flags = [
        "--env-name", args.env_name,
        "--algo", args.algo,
        "--num-processes", str(args.num_processes),
        "--num-steps", str(args.num_steps),
        "--num-env-steps", str(world * args.num_processes * args.num_steps * args.updates),
        "--log-dir", os.path.join(out_dir, "logs"),
        "--save-dir", os.path.join(out_dir, "models"),
        "--log-interval", "1",
        "--eval-interval", "0",
    ]  # fmt: skip
    if not args.cuda:
        flags.append("--no-cuda")
    main = os.path.join(ROOT, "main.py")
    if ranks is None:
        return [sys.executable, main, *flags]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", main, *flags]


def last_sps(out_dir: str, updates: int) -> float:
    """charts/SPS of the last progress line, from the one run folder rank 0 wrote.

    A ``main.py`` that ignores torchrun runs every rank as a whole run of its own: then the
    rows (one per update) are more than ``updates``, or there is more than one run folder.
    """
    found = glob.glob(os.path.join(out_dir, "logs", "*", "progress.csv"))
    rows = []
    if len(found) == 1:
        with open(found[0]) as f:
            rows = [row for row in csv.DictReader(f) if row.get("charts/SPS")]
    if len(found) != 1 or len(rows) != updates:
        raise SystemExit(
            f"expected one progress.csv with {updates} rows (rank 0's), found {len(found)} file(s) and "
            f"{len(rows)} rows under {out_dir}: is main.py wired for torchrun (rank 0 alone logs)?"
        )
    return float(rows[-1]["charts/SPS"])


def run_once(args: argparse.Namespace, ranks: int | None) -> tuple[float, float]:
    """(training SPS, wall seconds) of one launch."""
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.monotonic()
        proc = subprocess.run(
            command(args, ranks, out_dir), cwd=ROOT, capture_output=True, text=True, timeout=args.timeout
        )
        wall = time.monotonic() - start
        if proc.returncode != 0:
            raise SystemExit(f"launch failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return last_sps(out_dir, args.updates), wall


def main() -> None:
    args = parse()
    configs: list[int | None] = ([] if args.no_plain else [None]) + list(args.ranks)
    samples: dict[int | None, list[tuple[float, float]]] = {c: [] for c in configs}
    for _ in range(args.repeats):
        for config in configs:
            samples[config].append(run_once(args, config))
    device = "CUDA/NCCL" if args.cuda else "CPU/gloo"
    print(f"# {args.env_name}, {args.algo}, {args.num_processes} envs x {args.num_steps} steps per rank and update,")
    print(f"# {args.updates} updates per rank, {device}, median of {args.repeats}; {platform.node()}, ")
    print(f"# {os.cpu_count()} CPUs, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"{'launch':<10} {'SPS':>10} {'ratio':>9} {'wall s':>8}")
    base = statistics.median(s for s, _ in samples[args.ranks[0]]) if args.ranks else None
    for config in configs:
        sps = statistics.median(s for s, _ in samples[config])
        wall = statistics.median(w for _, w in samples[config])
        name = "plain" if config is None else f"{config} rank" + ("s" if config > 1 else "")
        ratio = f"{sps / base:.2f}" if base else "-"
        print(f"{name:<10} {sps:>10.0f} {ratio:>9} {wall:>8.1f}")


if __name__ == "__main__":
    main()
