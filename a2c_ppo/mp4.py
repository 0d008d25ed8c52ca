"""Writing an mp4, frame by frame, so that a video is whole under its name or not there at all
(``Mp4Writer``): the training videos (``video.py``) and the replay's (``enjoy.py --video-dir``,
through ``WholeVideos``, gymnasium's RecordVideo writing with it)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from typing import Any

import numpy as np
from gymnasium.wrappers import RecordVideo

from a2c_ppo.errors import WriteFailedError

PREVIEW_SIDE = 160  # TensorBoard's copy of a video: small, as the events file holds it whole


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Mp4Writer:
    """Frames ``(H, W, 3)`` uint8 into the mp4 ``path`` as they come (a long episode is never
    held in memory), keeping small copies (``preview``, at most ``PREVIEW_SIDE`` pixels a side)
    for TensorBoard. A context manager: written to a temporary file and renamed at the end, so
    no half-written video is left; WriteFailedError if ffmpeg or the disk fails.

    ffmpeg (imageio-ffmpeg's) runs here rather than through ``imageio_ffmpeg.write_frames`` or
    MoviePy, which never look at its exit status: a disk that fills up as ffmpeg writes the
    file's index at the end left a broken video under the real name, said nowhere."""

    def __init__(self, path: str, fps: float) -> None:
        self.path, self.fps = path, fps
        folder, name = os.path.split(os.path.abspath(path))
        self.tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}.mp4")  # ffmpeg picks the format by the suffix
        self.preview: list[np.ndarray] = []
        self._ffmpeg: subprocess.Popen | None = None
        self._errors: Any = None  # ffmpeg's messages: a file, so that a full pipe never blocks it

    def add(self, frame: np.ndarray) -> None:
        try:
            if self._ffmpeg is None:
                self._start(*frame.shape[:2])
            assert self._ffmpeg is not None and self._ffmpeg.stdin is not None
            self._ffmpeg.stdin.write(np.ascontiguousarray(frame).tobytes())
        except OSError as exc:  # ffmpeg died (a full disk, a bad frame size), or could not start
            raise WriteFailedError(self.path, self._finish() or first_line(exc)) from None
        stride = -(-max(frame.shape[:2]) // PREVIEW_SIDE)  # ceil: every side within PREVIEW_SIDE
        self.preview.append(frame[::stride, ::stride].copy())

    def _start(self, height: int, width: int) -> None:
        import imageio_ffmpeg

        os.makedirs(os.path.dirname(self.tmp), exist_ok=True)
        # even sides, as the yuv420p pixels need, without rescaling most frames
        even = f"scale={width + width % 2}:{height + height % 2}"
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo",
                   "-s", f"{width}x{height}", "-pix_fmt", "rgb24", "-r", f"{self.fps:g}", "-i", "-", "-an",
                   "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "25", "-vf", even, "-v", "error",
                   self.tmp]  # fmt: skip
        self._errors = tempfile.TemporaryFile()
        # its own session: a Ctrl-C at the terminal reaches this process, which decides what ffmpeg does
        self._ffmpeg = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=self._errors, start_new_session=True)  # fmt: skip

    def _finish(self, kill: bool = False) -> str:
        """End ffmpeg (``kill``: at once, the video is dropped); its last error line, "" if it
        succeeded."""
        ffmpeg, self._ffmpeg = self._ffmpeg, None
        if ffmpeg is None:
            return ""
        if kill:
            ffmpeg.kill()
        with contextlib.suppress(OSError):  # a pipe ffmpeg closed first
            ffmpeg.stdin.close()  # type: ignore[union-attr]
        ffmpeg.wait()
        self._errors.seek(0)
        said = self._errors.read().decode(errors="replace").strip().splitlines()
        self._errors.close()
        if ffmpeg.returncode == 0 or kill:
            return ""
        if said:  # its first error names the cause: "[out#0/mp4 @ 0x..] Error ...: No space left on device"
            return said[0].split("] ", 1)[-1]
        code = ffmpeg.returncode  # killed (< 0): a file size limit (SIGXFSZ) says nothing first
        return f"ffmpeg was killed by {signal.strsignal(-code)}" if code < 0 else f"ffmpeg exited with status {code}"

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, kind: Any, *rest: Any) -> None:
        try:
            failure = self._finish(kill=kind is not None)
            if failure:
                raise WriteFailedError(self.path, failure)
            if kind is None:
                os.replace(self.tmp, self.path)
        except OSError as exc:
            if isinstance(exc, WriteFailedError):
                raise
            raise WriteFailedError(self.path, first_line(exc)) from None
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


class WholeVideos(RecordVideo):
    """gymnasium's RecordVideo (``VIDEO/rl-video-episode-N.mp4``) whose files are written by
    ``Mp4Writer``: whole under their name or not at all, and a disk that cannot hold one is a
    WriteFailedError naming it. (MoviePy, which RecordVideo writes with, never reads ffmpeg's
    exit status: a full disk left a broken mp4 and a replay that said the videos were written.)"""

    def stop_recording(self) -> None:
        frames, name = self.recorded_frames, self._video_name
        self.recorded_frames, self.recording, self._video_name = [], False, None
        if frames:
            with Mp4Writer(os.path.join(self.video_folder, f"{name}.mp4"), self.frames_per_sec) as video:
                for frame in frames:
                    video.add(np.asarray(frame))
