"""Where a run's files go, and the up-front check that they can be written there."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time

from a2c_ppo.errors import ConfigError

#: Longest env part of a file or folder name; longer ids are cut and keep a short hash.
MAX_NAME_PART = 80


def safe_name(env_name: str) -> str:
    """``env_name`` as one path component that every file system takes: characters other than
    letters, digits, ``.``, ``-`` and ``_`` (``/``, ``:``, a lambda's ``<>``) become ``_``; long
    ids are cut."""
    name = re.sub(r"[^\w.-]", "_", env_name)
    if len(name) > MAX_NAME_PART:
        digest = hashlib.sha1(env_name.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME_PART - 9]}-{digest}"
    return name


#: The checkpoint of a run, inside its run folder.
RUN_CHECKPOINT = "checkpoint.pt"


def new_run_dir(log_dir: str, env_name: str, algo: str, seed: int) -> str:
    """``LOG_DIR/ENV__ALGO__seedS__TIME`` (``claim_run_dir`` makes it this run's own)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(log_dir, f"{safe_name(env_name)}__{algo}__seed{seed}__{stamp}")


def claim_run_dir(run_dir: str) -> str:
    """Create ``run_dir`` for this run alone: if another run made it first (same env, algo,
    seed and second), ``run_dir-2``, ``run_dir-3``, ...; the folder made."""
    os.makedirs(os.path.dirname(os.path.abspath(run_dir)), exist_ok=True)
    candidate, n = run_dir, 1
    while True:
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            n += 1
            candidate = f"{run_dir}-{n}"


def missing_folders(path: str) -> list[str]:
    """The folders of ``path`` (itself included) that do not exist yet, deepest first: those
    that creating it would make."""
    missing: list[str] = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def run_checkpoint_path(run_dir: str) -> str:
    """Where a run writes its checkpoint: ``RUN_DIR/checkpoint.pt``, its own."""
    return os.path.join(run_dir, RUN_CHECKPOINT)


def latest_checkpoint_path(save_dir: str, algo: str, env_name: str) -> str:
    """``SAVE_DIR/ALGO/ENV.pt``: a copy of the checkpoint of the latest run that finished."""
    return os.path.join(save_dir, algo, safe_name(env_name) + ".pt")


def check_writable_file(path: str, flag: str, reading: str) -> None:
    """ConfigError unless ``path`` can be written as a file: not a folder, not the file
    ``reading`` that the command reads (it would be replaced), in a folder that can be written."""
    if os.path.isdir(path):
        raise ConfigError(f"{flag} {path!r} is a folder; give the path of a file to write.")
    if os.path.exists(path) and os.path.exists(reading) and os.path.samefile(path, reading):
        raise ConfigError(f"{flag} {path!r} is the file being read; writing it would replace it. Give another path.")
    check_writable_dir(os.path.dirname(os.path.abspath(path)), flag)


def check_writable_dir(path: str, flag: str, probe: bool = True) -> None:
    """Prove that folder ``path`` can be created (if missing) and written to; else ConfigError.

    Leaves nothing behind: folders made for the test are removed again. ``probe=False`` only
    reads: the nearest folder that exists is one this user may write in (for the torchrun
    ranks that do not write, so that they fail as rank 0 does rather than wait for it).
    """
    made = missing_folders(path)
    existing = os.path.dirname(made[-1]) if made else os.path.abspath(path)
    if not os.path.isdir(existing):
        raise ConfigError(f"{flag} {path!r}: {existing!r} is a file, not a folder; give a folder path.")
    if not probe:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(
                f"{flag} {path!r} cannot be written (permission denied); choose a folder you can write to."
            )
        return
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{flag} {path!r} cannot be written ({exc.strerror or exc}); choose a folder you can write to."
        ) from None
    finally:
        for folder in made:
            if os.path.isdir(folder):
                os.rmdir(folder)
