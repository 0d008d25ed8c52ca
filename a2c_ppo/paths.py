"""Where a run's files go, and the up-front check that they can be written there."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
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
        except FileNotFoundError:  # a run that failed to start removed the empty --log-dir meanwhile
            os.makedirs(os.path.dirname(os.path.abspath(run_dir)), exist_ok=True)


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

    Writes only in a private scratch folder (removed again) or, where ``path`` exists, a file
    without a name: other processes may be making or removing the same folders meanwhile
    (torchrun's rank 0 probing while its other ranks read; runs of several seeds started at
    once in one ``--log-dir``), and making and removing them here too made those checks fail
    by chance. ``probe=False`` only reads: the nearest folder that exists is one this user may
    write in (for the torchrun ranks that do not write, so that they fail as rank 0 does rather
    than wait for it).
    """
    existing = _nearest_existing_folder(path, flag)
    if not probe:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(
                f"{flag} {path!r} cannot be written (permission denied); choose a folder you can write to."
            )
        return
    rest = os.path.relpath(os.path.abspath(path), existing)
    try:
        if rest == os.curdir:
            with tempfile.TemporaryFile(dir=existing):
                pass
        else:  # the same folder names, made inside a scratch folder of this process's own
            scratch = tempfile.mkdtemp(prefix=".a2c_ppo-probe-", dir=existing)
            try:
                os.makedirs(os.path.join(scratch, rest))
                with tempfile.TemporaryFile(dir=os.path.join(scratch, rest)):
                    pass
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    except OSError as exc:
        raise ConfigError(
            f"{flag} {path!r} cannot be written ({exc.strerror or exc}); choose a folder you can write to."
        ) from None


def _nearest_existing_folder(path: str, flag: str) -> str:
    """The deepest folder of ``path`` (itself included) that exists now; ConfigError where that
    is a file. Each level is looked at once, so a folder removed meanwhile is passed over."""
    current = os.path.abspath(path)
    while True:
        try:
            is_folder = stat.S_ISDIR(os.stat(current).st_mode)
        except OSError:  # missing, under a file, or not ours to look into: its parent decides
            parent = os.path.dirname(current)
            if parent == current:
                raise ConfigError(f"{flag} {path!r}: no folder of it can be read; give a folder path.") from None
            current = parent
            continue
        if not is_folder:
            raise ConfigError(f"{flag} {path!r}: {current!r} is a file, not a folder; give a folder path.")
        return current
