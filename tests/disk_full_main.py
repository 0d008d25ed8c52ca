"""``python main.py`` on a disk that fills up: every ``os.fsync`` after the first
``$A2C_PPO_TEST_FSYNCS_LEFT`` fails with ENOSPC, as a full disk makes a checkpoint write fail
(a2c_ppo fsyncs each checkpoint before renaming it into place)."""

from __future__ import annotations

import errno
import os
import sys

FSYNCS_LEFT_VARIABLE = "A2C_PPO_TEST_FSYNCS_LEFT"


def main() -> int:
    left = [int(os.environ[FSYNCS_LEFT_VARIABLE])]
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        left[0] -= 1
        real_fsync(fd)

    os.fsync = fsync
    from a2c_ppo.cli import train_main

    return train_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
