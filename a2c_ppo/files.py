"""Writing the files a run keeps (checkpoints, expert data) so that nothing is ever half
written or silently lost, and one live run per run folder.

* ``write_atomically``: write a temporary file beside the target (``.NAME.tmp-PID-RANDOM``,
  mode from the umask), fsync, rename over the target. A failure (disk full, folder removed,
  permission lost) removes the temporary file, leaves the previous target as it was and
  raises ``WriteFailedError`` naming the path and the cause. Temporary files that a killed
  process left behind (their PID is gone, and ten minutes have passed) are removed by the
  next write into that folder.
* ``check_archive``: a file about to be read (checkpoint, expert data) is a whole zip archive,
  every part matching its checksum: torch's reader does not check them, so a flipped byte
  would load as a wrong number; ``larger_than_its_data``: a tensor read that claims more.
* ``RunLock``: an exclusive ``flock`` on ``RUN_DIR/.lock``, held while a run writes there; a
  second run (or a resume of the same run) is refused while the first one lives. The kernel
  drops the lock when its process dies, however it dies; a run that ends removes the file.
  ``FileLock`` is the same lock on any file, waited for (the ``--save-dir`` copies' pair).
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import secrets
import time
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

from a2c_ppo.errors import ConfigError, WriteFailedError

LOCK_NAME = ".lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


#: A temporary file is stale once its writer's PID is gone and it is this old: a writer on
#: another host or in a container (another PID namespace) sharing the folder may still be at it.
STALE_AFTER_S = 600.0


def remove_stale_temporaries(path: str) -> None:
    """Remove ``.BASENAME.tmp-PID-*`` files beside ``path`` whose writer process is gone."""
    folder, name = os.path.split(os.path.abspath(path))
    for tmp in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.tmp-*")):
        pid = tmp.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)) and _age_s(tmp) > STALE_AFTER_S:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _age_s(path: str) -> float:
    try:
        return time.time() - os.path.getmtime(path)
    except OSError:  # removed meanwhile
        return 0.0


def write_atomically(path: str, write: Callable[[BinaryIO], object], make_folder: bool = True) -> None:
    """Call ``write(file)`` on a new temporary file beside ``path``, fsync it and rename it over
    ``path``; ``WriteFailedError`` (the old ``path`` intact, no temporary file left) if any of
    that fails. ``make_folder=False``: a folder that is not there is a failure (a run's own
    folder, removed during the run, is not made again)."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        if make_folder:
            os.makedirs(folder, exist_ok=True)
        remove_stale_temporaries(path)
        # 0o666: the umask decides the mode, as for any file the user creates.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch's zip writer reports a failed write as RuntimeError
        _remove(tmp)
        raise WriteFailedError(path, _cause(exc)) from None
    except BaseException:
        _remove(tmp)
        raise


def copy_atomically(source: str, path: str) -> None:
    """``path`` becomes a copy of file ``source``, atomically (as ``write_atomically``)."""
    with open(source, "rb") as f:
        data = f.read()
    write_atomically(path, lambda out: out.write(data))


def check_archive(path: str, name: str, kind: str, remedy: str) -> None:
    """ConfigError unless ``path`` is a zip archive, as ``torch.save`` and ``np.savez`` write,
    whose parts all match their CRC-32. ``name``: the file as the message names it (the flag
    and path); ``kind``: what it should be ("checkpoint file"); ``remedy``: what to do."""
    if os.path.isdir(path):
        raise ConfigError(f"{name} is a folder, not a {kind}; {remedy}")
    if not os.path.isfile(path):
        raise ConfigError(f"{name}: no such {kind}; {remedy}")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as exc:  # BadZipFile, OSError, zlib.error, an unsupported compression: unreadable
        raise ConfigError(
            f"{name} cannot be read ({_cause(exc)}): it was not written by a2c_ppo, or it is truncated or damaged "
            f"(e.g. copied while being written); {remedy}"
        ) from None
    if damaged is not None:
        raise ConfigError(f"{name} is damaged: its part {damaged!r} does not match its checksum; {remedy}")


def larger_than_its_data(tensor: Any) -> bool:
    """Whether a tensor read from a file claims more numbers than the file holds for it (a
    stride-0 view: a few bytes become a 160 GB tensor for the first op that reads it)."""
    return bool(tensor.numel() * tensor.element_size() > tensor.untyped_storage().nbytes())


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def write_failed(path: str, exc: OSError) -> WriteFailedError:
    """``exc``, met writing ``path``, as the WriteFailedError that names it (``exc`` itself where
    it is one already: a whole-file rewrite's, naming its own path and cause)."""
    return exc if isinstance(exc, WriteFailedError) else WriteFailedError(path, _cause(exc))


def _cause(exc: BaseException) -> str:
    """The reason in words: ``No space left on device`` rather than a chain of tracebacks."""
    for error in (exc, exc.__cause__, exc.__context__):
        if isinstance(error, OSError) and error.errno is not None:
            return os.strerror(error.errno)
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class FileLock:
    """An exclusive ``flock`` on the file ``path`` (made, and removed again by ``release``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait: bool = False) -> FileLock:
        """Take the lock: ``wait`` for a holder to release it, else ConfigError if one holds it.
        An exception while waiting (a signal's) leaves nothing open."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                raise self.busy(holder) from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.path):
                break
            os.close(fd)  # its holder removed the file as it released it: lock the one at the path now
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def busy(self, holder: str) -> ConfigError:
        """The refusal when process ``holder`` holds the lock (``acquire`` without ``wait``)."""
        return ConfigError(f"{self.path!r} is locked by a live process (pid {holder}).")

    def release(self) -> None:
        """Remove the lock file, then drop the lock (closing drops the flock): a process that
        opened the file meanwhile finds it gone once it holds the lock, and takes a new one."""
        if self._fd is not None:
            if _same_file(self._fd, self.path):  # not another holder's, made where this one was removed
                _remove(self.path)
            os.close(self._fd)
            self._fd = None


class RunLock(FileLock):
    """An exclusive lock on a run folder for this process's lifetime (or until ``release``)."""

    def __init__(self, run_dir: str) -> None:
        super().__init__(os.path.join(run_dir, LOCK_NAME))

    def acquire(self, wait: bool = False) -> RunLock:
        """Take the lock; ConfigError if a live run holds it."""
        super().acquire(wait)
        return self

    def busy(self, holder: str) -> ConfigError:
        return ConfigError(
            f"run folder {os.path.dirname(self.path)!r} is in use by a live run (pid {holder}); wait for it "
            "to end, or give this run its own folder (--log-dir, or resume another checkpoint)."
        )


def _same_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
