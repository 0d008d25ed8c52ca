"""A run's folder: claimed and locked while the run lives, watched after each update, and
removed again at the end where the run left nothing of value in it.

``own_run_folder`` gives a run its folder (a resumed run's own, else a new one that never
existed) under ``files.RunLock``; ``FolderGuard`` stops a run whose folder was removed or moved
away meanwhile, rather than making it again.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

from a2c_ppo import console
from a2c_ppo.callbacks import UpdateInfo
from a2c_ppo.checkpointer import BEST_CHECKPOINT
from a2c_ppo.errors import RunFolderLostError
from a2c_ppo.files import LOCK_NAME, RunLock
from a2c_ppo.logger import CSV_NAME
from a2c_ppo.paths import claim_run_dir, missing_folders
from a2c_ppo.tracking import WANDB_FOLDER


@dataclass
class FolderUse:
    """What a run did with its folder, for ``own_run_folder`` at its end."""

    trained_nothing: bool = False  # it ended (stopped, failed) before its first update finished


#: What a run writes into a new folder before its first update finishes: the lock, W&B's files,
#: the log's header, TensorBoard's first events, and a resumed run's best model (a copy).
START_FILES = (LOCK_NAME, WANDB_FOLDER, CSV_NAME, BEST_CHECKPOINT, "events.out.tfevents.*")


@contextlib.contextmanager
def own_run_folder(run_dir: str, in_place: bool, use: FolderUse | None = None) -> Iterator[str]:
    """This run's folder, locked while the run lives: a resumed run's own (``in_place``), else
    a new one (``paths.claim_run_dir``), never a folder that exists. A new folder the run left
    empty is removed again, with the folders made to hold it; so is one that holds only what
    the run wrote at its start, where it trained nothing (``use``). A resumed run's own folder
    is never removed."""
    use = use or FolderUse()
    new = not in_place
    made = missing_folders(os.path.dirname(os.path.abspath(run_dir))) if new else []  # --log-dir's, say
    if new:
        run_dir = claim_run_dir(run_dir)
    lock = RunLock(run_dir).acquire()
    identity = os.stat(run_dir)
    try:
        yield run_dir
    finally:
        lock.release()
        # the run ended before it wrote anything but W&B's files (a run that failed to start), or
        # before its first update finished (stopped or failed in its first rollout): nothing of value
        left = os.listdir(run_dir) if _same_folder(run_dir, identity) else None  # None: removed or moved away
        empty = left is not None and set(left) <= {LOCK_NAME, WANDB_FOLDER}
        if use.trained_nothing and not new:
            console.out.line(f"Nothing was trained (no update had finished since the resume); the run folder {run_dir} "
                             "keeps its checkpoint as it was.")  # fmt: skip
        elif use.trained_nothing and left is not None:
            others = sorted(name for name in left if not any(fnmatch.fnmatch(name, f) for f in START_FILES))
            empty = not others
            kept = f"is kept: it holds {', '.join(others)}" if others else "is removed: it held nothing else"
            console.out.line(f"Nothing was trained (no update had finished); the run folder {run_dir} {kept}.")
        if new and empty:
            shutil.rmtree(run_dir, ignore_errors=True)
            for folder in made:  # the folders it made for the run folder, unless another run uses them
                with contextlib.suppress(OSError):
                    os.rmdir(folder)


def _same_folder(path: str, identity: os.stat_result) -> bool:
    """Whether ``path`` is still the folder ``identity`` was taken of: one made there since it
    was removed or moved away (another run's, claiming the free name) is not this run's."""
    try:
        return os.path.samestat(identity, os.stat(path))
    except FileNotFoundError:
        return False


class FolderGuard:
    """After each update: RunFolderLostError once the run folder is gone (removed, or moved
    away: another folder at its path is not it). Writing on would make it again, holding a
    checkpoint and what logs happen to be reopened by name (TensorBoard's, not progress.csv)."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir, self.identity = run_dir, os.stat(run_dir)

    def __call__(self, info: UpdateInfo) -> None:
        try:
            same = os.path.samestat(self.identity, os.stat(self.run_dir))
        except FileNotFoundError:
            same = False
        if not same:
            raise RunFolderLostError(self.run_dir)
