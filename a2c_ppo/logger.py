"""Console (progress bar or plain lines), TensorBoard and CSV logging in one place."""

from __future__ import annotations

import csv
import os
import sys
import time
from typing import Any, TextIO

from torch.utils.tensorboard import SummaryWriter

CSV_FIELDS = [
    "update",
    "env_steps",
    "time",
    "charts/SPS",
    "charts/learning_rate",
    "charts/episodic_return",
    "charts/episodic_length",
    "losses/policy_loss",
    "losses/value_loss",
    "losses/entropy",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
    "eval/mean_return",
]


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Logger:
    """Writes to ``run_dir``: TensorBoard events and ``progress.csv``; prints to ``stream``.

    On a terminal a one-line progress bar with ETA is redrawn in place and log lines are
    printed above it; elsewhere (CI, files) only the plain log lines appear.
    """

    def __init__(
        self, run_dir: str, config: dict[str, Any], total_steps: int, start_step: int = 0, stream: TextIO | None = None
    ) -> None:
        os.makedirs(run_dir, exist_ok=True)
        self.run_dir = run_dir
        self.stream = stream or sys.stdout
        self.is_tty = self.stream.isatty()
        self.total_steps = total_steps
        self.start_step = start_step
        self.start_time = time.monotonic()
        self.writer = SummaryWriter(run_dir, purge_step=start_step or None)
        table = "\n".join(f"|{key}|{value}|" for key, value in sorted(config.items()))
        self.writer.add_text("hyperparameters", "|flag|value|\n|-|-|\n" + table, global_step=start_step)
        csv_path = os.path.join(run_dir, "progress.csv")
        new_file = not os.path.exists(csv_path)
        self._csv_file = open(csv_path, "a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new_file:
            self._csv.writeheader()
        self._bar_drawn = False
        self._last_draw = 0.0

    def scalars(self, step: int, values: dict[str, float], update: int | None = None) -> None:
        """Log ``values`` (TensorBoard keys) at env step ``step`` to TensorBoard and CSV."""
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        row = {"update": update, "env_steps": step, "time": round(time.monotonic() - self.start_time, 2), **values}
        self._csv.writerow(row)
        self._csv_file.flush()

    def print(self, line: str) -> None:
        if self._bar_drawn:
            self.stream.write("\r\033[K")
            self._bar_drawn = False
        self.stream.write(line + "\n")
        self.stream.flush()

    def progress(self, step: int) -> None:
        """Redraw the progress bar (terminals only, at most 10 times a second)."""
        now = time.monotonic()
        if not self.is_tty or now - self._last_draw < 0.1:
            return
        self._last_draw = now
        done = min(step / self.total_steps, 1.0)
        elapsed = now - self.start_time
        rate = (step - self.start_step) / elapsed if elapsed > 0 else 0.0
        eta = (self.total_steps - step) / rate if rate > 0 else 0.0
        width = 30
        bar = "#" * int(done * width) + "." * (width - int(done * width))
        self.stream.write(
            f"\r[{bar}] {done:6.1%} {step}/{self.total_steps} steps  {rate:,.0f} SPS  ETA {format_duration(eta)}\033[K"
        )
        self.stream.flush()
        self._bar_drawn = True

    def close(self) -> None:
        if self._bar_drawn:
            self.stream.write("\n")
        self.writer.close()
        self._csv_file.close()
