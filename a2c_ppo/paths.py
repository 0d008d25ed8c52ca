"""Where a run's files go, and the up-front check that they can be written there."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time

from a2c_ppo.errors import ConfigError

#: Longest env part of a file or folder name; longer ids are cut and keep a short hash.
MAX_NAME_PART = 80


def safe_name(env_name: str) -> str:
    """``env_name`` as one path component: ``/`` and ``:`` become ``_``, long ids are cut."""
    name = env_name.replace("/", "_").replace(":", "_").replace(os.sep, "_")
    if len(name) > MAX_NAME_PART:
        digest = hashlib.sha1(env_name.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME_PART - 9]}-{digest}"
    return name


def new_run_dir(log_dir: str, env_name: str, algo: str, seed: int) -> str:
    """``LOG_DIR/ENV__ALGO__seedS__TIME``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(log_dir, f"{safe_name(env_name)}__{algo}__seed{seed}__{stamp}")


def checkpoint_path(save_dir: str, algo: str, env_name: str) -> str:
    """The classic layout: ``SAVE_DIR/ALGO/ENV.pt``."""
    return os.path.join(save_dir, algo, safe_name(env_name) + ".pt")


def check_writable_dir(path: str, flag: str) -> None:
    """Prove that folder ``path`` can be created (if missing) and written to; else ConfigError.

    Leaves nothing behind: folders made for the test are removed again.
    """
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{flag} {path!r}: {existing!r} is a file, not a folder; give a folder path.")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{flag} {path!r} cannot be written ({exc.strerror or exc}); choose a folder you can write to."
        ) from None
    finally:
        made = os.path.abspath(path)
        while made != existing and os.path.isdir(made):
            os.rmdir(made)
            made = os.path.dirname(made)
