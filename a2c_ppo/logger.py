"""Console (progress bar or plain lines), TensorBoard and CSV logging in one place.

Every metric given is written: ``progress.csv`` gains a column when a new key appears (the
file is rewritten with the wider header). Rows are appended; a whole rewrite (a wider header,
a resumed run's kept rows) goes to a temporary file renamed over the old one, so that a crash
or a full disk then never loses the rows written before. TensorBoard is imported only when the first
scalars are written, so the first console line is not held up by it. Other destinations
(Weights & Biases, ``tracking.py``) are ``Sink``s: they get the same scalars at the same step.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TextIO

import numpy as np

from a2c_ppo.console import Console, out
from a2c_ppo.files import write_atomically, write_failed

CSV_NAME = "progress.csv"
LEADING_COLUMNS = ["update", "env_steps", "time"]


def summary(returns: Sequence[float], whose: str = "") -> str:
    """One line on the true returns of the last episodes (``whose``: "rank 0's " where the
    line shows one rank's of several; TensorBoard's are all ranks')."""
    if not returns:
        return "no episode finished yet"
    r = np.asarray(returns)
    return (
        f"{whose}last {len(r)} episode{'s' * (len(r) > 1)}: mean/median return {r.mean():.1f}/{np.median(r):.1f}, "
        f"min/max {r.min():.1f}/{r.max():.1f}"
    )


def _last_time(rows: list[dict[str, str]]) -> float:
    """The ``time`` of the last of ``rows`` read back from the CSV (0 if none or unreadable)."""
    try:
        value = float(rows[-1]["time"]) if rows else 0.0
    except (KeyError, TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) and value >= 0 else 0.0


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Sink(Protocol):
    """Another destination of what the Logger writes (e.g. ``tracking.Tracker``)."""

    def scalars(self, step: int, values: dict[str, float]) -> None: ...

    def video(self, tag: str, path: str, step: int) -> None: ...

    def close(self) -> None: ...


class Logger:
    """Writes to ``run_dir``: TensorBoard events and ``progress.csv``; prints to ``stream``.

    On a terminal a one-line progress bar with ETA is redrawn in place and log lines are
    printed above it; elsewhere (CI, files) only the plain log lines appear. ``resume_update``:
    a resumed run drops the CSV rows of updates after it (they are redone) and TensorBoard
    purges the events after ``start_step``. ``sinks`` get every scalar and video too, and are
    closed with the Logger.
    """

    def __init__(
        self,
        run_dir: str,
        config: dict[str, Any],
        total_steps: int,
        start_step: int = 0,
        resume_update: int | None = None,
        stream: TextIO | None = None,
        notes: list[str] | None = None,
        sinks: Sequence[Sink] = (),
    ) -> None:
        os.makedirs(run_dir, exist_ok=True)
        self.sinks = list(sinks)
        self.run_dir = run_dir
        self.config = config
        self.notes = notes or []
        self.stream = out if stream is None else Console(lambda: stream)
        self.is_tty = self.stream.isatty()
        self.total_steps = total_steps
        self.start_step = start_step
        self.start_time = time.monotonic()
        self._writer: Any = None
        self._csv_path = os.path.join(run_dir, CSV_NAME)
        self._last_row_at = 0  # where the CSV's last row starts (an evaluation rewrites it)
        self._columns, rows = self._read_csv(resume_update)
        # the CSV's time goes on from the kept rows' (seconds of training, over every invocation)
        self.time_offset = _last_time(rows)
        self._write_rows(rows)
        self._bar_drawn = False
        self._last_draw = 0.0
        self._closed = False

    def _read_csv(self, keep_through_update: int | None) -> tuple[list[str], list[dict[str, str]]]:
        """The existing header and rows (a resumed run keeps rows up to its update)."""
        if keep_through_update is None or not os.path.exists(self._csv_path):
            return list(LEADING_COLUMNS), []
        with open(self._csv_path, newline="") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or LEADING_COLUMNS)
            rows = [row for row in reader if row.get("update") and int(row["update"]) <= keep_through_update]
        return columns, rows

    def _write_rows(self, rows: list[dict[str, Any]]) -> None:
        """The whole file anew, with ``rows``, atomically; then open for appending."""
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self._columns)
        writer.writeheader()
        writer.writerows(rows[:-1])
        head = text.getvalue().encode()
        writer.writerows(rows[-1:])
        if hasattr(self, "_csv_file"):  # (not yet on the first write)
            self._csv_file.close()
        write_atomically(self._csv_path, lambda f: f.write(text.getvalue().encode()))
        self._csv_file: TextIO = open(self._csv_path, "a", newline="")
        self._last_row_at = len(head)  # where the last row starts (an evaluation rewrites it)
        self._rows = rows

    @property
    def writer(self) -> Any:
        """The TensorBoard SummaryWriter, created (and tensorboard imported) on first use."""
        if self._writer is None:
            self._writer = self._new_writer()
        return self._writer

    def _new_writer(self) -> Any:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(self.run_dir, purge_step=self.start_step + 1 if self.start_step else None)
        _hide_thread_traceback(writer._get_file_writer().event_writer._async_writer._worker)
        table = "\n".join(f"|{key}|{value}|" for key, value in sorted(self.config.items()))
        writer.add_text("hyperparameters", "|flag|value|\n|-|-|\n" + table, global_step=self.start_step)
        if self.notes:  # which preset, which flags overrode it, how a resume went
            writer.add_text("notes", "\n\n".join(self.notes), global_step=self.start_step)
        return writer

    def open_tensorboard(self) -> None:
        """Create the TensorBoard writer now, before the first update: importing tensorboard
        (0.1-0.2 s) otherwise fell into the first update, and so into ``charts/SPS``, where
        Stable-Baselines3 imports it with its package, before its ``learn`` starts timing."""
        with self._tensorboard_writes():
            _ = self.writer

    @contextlib.contextmanager
    def _tensorboard_writes(self) -> Iterator[None]:
        """An OSError of the TensorBoard writer (which re-raises its thread's failure at the next
        write) as a WriteFailedError naming the events."""
        try:
            yield
        except OSError as exc:
            raise write_failed(f"the TensorBoard events in {self.run_dir}", exc) from None

    def scalars(self, step: int, values: dict[str, float], update: int) -> None:
        """Log ``values`` (TensorBoard tags) at env step ``step`` to TensorBoard and CSV;
        WriteFailedError if the disk refuses (full, folder removed, permission lost)."""
        with self._tensorboard_writes():
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        seconds = self.time_offset + time.monotonic() - self.start_time
        row = {"update": update, "env_steps": step, "time": round(seconds, 2), **values}
        try:
            self._write_row(row, values)
        except OSError as exc:
            raise write_failed(self._csv_path, exc) from None
        for sink in self.sinks:
            sink.scalars(step, values)

    def video(self, tag: str, path: str, frames: np.ndarray, fps: float, step: int) -> None:
        """An episode's video, written as the mp4 ``path``: TensorBoard gets ``frames``, a small
        copy ``(T, H, W, 3)`` uint8, as an animated GIF; the sinks get the file."""
        with self._tensorboard_writes():  # the SummaryWriter has no public call that takes a ready-made summary
            self.writer._get_file_writer().add_summary(gif_summary(tag, frames, fps), step)
        for sink in self.sinks:
            sink.video(tag, path, step)

    def _write_row(self, row: dict[str, Any], values: dict[str, float]) -> None:
        new_columns = [key for key in values if key not in self._columns]
        if new_columns:
            self._columns += new_columns
        last = self._rows[-1] if self._rows else None
        if last is not None and str(last["update"]) == str(row["update"]):  # an evaluation after the update's row
            last.update(values)
            if new_columns:
                self._write_rows(self._rows)
            else:  # the last line rewritten in place
                self._csv_file.seek(self._last_row_at)
                self._csv_file.truncate()
                self._append(last)
            return
        if new_columns:
            self._write_rows([*self._rows, row])
            return
        self._rows.append(row)
        self._append(row)

    def _append(self, row: dict[str, Any]) -> None:
        self._last_row_at = self._csv_file.tell()
        csv.DictWriter(self._csv_file, fieldnames=self._columns).writerow(row)
        self._csv_file.flush()

    def print(self, line: str) -> None:
        if self._bar_drawn:
            self.stream.write("\r\033[K")
            self._bar_drawn = False
        self.stream.write(line + "\n")

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
        self._bar_drawn = True

    def close(self) -> None:
        """Close every destination (a second call does nothing); WriteFailedError, once all are
        closed, if the TensorBoard writer could not write what it still held (a full disk)."""
        if self._closed:
            return
        self._closed = True
        if self._bar_drawn:
            self.stream.write("\n")
        try:
            if self._writer is not None:
                with self._tensorboard_writes():
                    self._writer.close()
        finally:
            self._csv_file.close()
            for sink in self.sinks:
                sink.close()


#: TensorBoard writer threads of this process's runs (see ``_hide_thread_traceback``).
_QUIET_THREADS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
_quiet_hook_installed = False


def _hide_thread_traceback(thread: threading.Thread) -> None:
    """TensorBoard's writer ``thread`` prints its failure (a full disk) as a traceback and hands
    it to the writer's next call in the main thread, which reports it as a WriteFailedError: the
    traceback only buries that one paragraph, so it is dropped, for the runs' own writer threads
    only (a SummaryWriter of the caller's, in the same process, keeps its tracebacks)."""
    global _quiet_hook_installed
    if not _quiet_hook_installed:
        previous = threading.excepthook

        def hook(args: threading.ExceptHookArgs) -> None:
            if not (args.thread in _QUIET_THREADS and issubclass(args.exc_type, OSError)):
                previous(args)

        threading.excepthook = hook
        _quiet_hook_installed = True
    _QUIET_THREADS.add(thread)


#: Frames of a TensorBoard video at most: a longer episode is shown at a lower frame rate.
GIF_MAX_FRAMES = 300


def gif_summary(tag: str, frames: np.ndarray, fps: float) -> Any:
    """The summary TensorBoard shows as a video: an animated GIF image, as ``add_video`` writes
    it (torch's ``add_video`` itself needs moviepy 1.x's ``moviepy.editor``, gone in 2.x)."""
    import io

    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    step = -(-len(frames) // GIF_MAX_FRAMES)  # ceil: every step-th frame, each shown step times as long
    images = [Image.fromarray(frame) for frame in frames[::step]]
    buffer = io.BytesIO()
    duration = round(1000 * step / fps)
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    height, width = frames.shape[1:3]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=buffer.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=image)])
