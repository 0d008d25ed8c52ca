"""Exception types that carry a message meant for the user, and the exit statuses of main.py.

Exit statuses: 0 done; 2 bad input (flags, env ids, folders, checkpoints: one paragraph, no
traceback, before any worker starts); 3 an env failed (its own traceback is shown); 4 a NaN
or infinity appeared (nothing saved over the last good checkpoint); 5 another torchrun rank
stopped or did not answer within --dist-timeout; 6 a file could not be written (disk full, a
folder removed, a permission lost); 128 + the signal number for Ctrl-C (130) and SIGTERM (143).
"""

EXIT_BAD_INPUT = 2
EXIT_ENV_FAILED = 3
EXIT_NON_FINITE = 4
EXIT_PEER_FAILED = 5
EXIT_WRITE_FAILED = 6


class ConfigError(ValueError):
    """Raised for invalid flags, env ids, folders or checkpoints, before any worker starts.

    The message says what to change; ``main.py`` and ``enjoy.py`` print it as one paragraph
    and exit with status 2.
    """


class NonFiniteError(RuntimeError):
    """A NaN or infinity appeared in training data or in the model.

    The message names the quantity (observation, reward, loss, gradient norm, parameter), and
    where known the env index and the update, so that the user can find the source.
    """


class NonFiniteRolloutError(NonFiniteError):
    """A NaN or infinity in what the envs returned during a rollout: the parameters are still
    those of the last finished update, which can be saved."""


class WriteFailedError(OSError):
    """A file of the run could not be written (disk full, folder removed, permission lost).

    The previous version of the file is intact and no temporary file is left behind.
    """

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(f"could not write {path}: {cause}")
        self.path, self.cause = path, cause
        # what the run says of itself where this ended it: its checkpoint on disk (None where no
        # update had been saved yet) and whether training had finished (a copy or log after it)
        self.checkpoint: str | None = None
        self.training_finished = False


class RunFolderLostError(WriteFailedError):
    """The run's folder was removed or moved away while the run was using it: the run stops
    without making it again (a folder of a checkpoint without its logs would pass for the run)."""

    def __init__(self, run_dir: str) -> None:
        super().__init__(run_dir, "the run folder was removed or moved away while the run was using it")
