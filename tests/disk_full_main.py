"""``python main.py`` on a disk that fills up: every ``os.fsync`` after the first
``$A2C_PPO_TEST_FSYNCS_LEFT`` fails with ENOSPC, as a full disk makes a checkpoint write fail
(a2c_ppo fsyncs each checkpoint before renaming it into place); every append to TensorBoard's
events file after the first ``$A2C_PPO_TEST_EVENT_WRITES_LEFT`` fails so too (in TensorBoard's
writer thread, which hands the error to the writer's next call)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import Any

FSYNCS_LEFT_VARIABLE = "A2C_PPO_TEST_FSYNCS_LEFT"
EVENT_WRITES_LEFT_VARIABLE = "A2C_PPO_TEST_EVENT_WRITES_LEFT"


def failing_after(calls: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, which raises ENOSPC from its ``calls + 1``-th call on."""
    left = [calls]

    def call(*args: Any, **kwargs: Any) -> Any:
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        left[0] -= 1
        return real(*args, **kwargs)

    return call


def main() -> int:
    if FSYNCS_LEFT_VARIABLE in os.environ:
        os.fsync = failing_after(int(os.environ[FSYNCS_LEFT_VARIABLE]), os.fsync)
    if EVENT_WRITES_LEFT_VARIABLE in os.environ:
        from tensorboard.compat.tensorflow_stub.io.gfile import LocalFileSystem

        writes = int(os.environ[EVENT_WRITES_LEFT_VARIABLE])
        LocalFileSystem.append = failing_after(writes, LocalFileSystem.append)  # type: ignore[method-assign]
    from a2c_ppo.cli import train_main

    return train_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
