"""``python main.py`` that signals itself at a chosen moment, as a user's Ctrl-C or a job
scheduler's SIGTERM would land there: ``$A2C_PPO_TEST_SIGNAL_AT`` is ``save:N`` (while the
run's checkpoint of update N is being written) or ``rollout:N`` (in the rollout of update N);
``$A2C_PPO_TEST_SIGNALS`` the signals sent there, one after the other (``INT,INT``, ``TERM``)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

SIGNAL_AT_VARIABLE = "A2C_PPO_TEST_SIGNAL_AT"
SIGNALS_VARIABLE = "A2C_PPO_TEST_SIGNALS"


def send() -> None:
    for name in os.environ.get(SIGNALS_VARIABLE, "INT").split(","):
        os.kill(os.getpid(), getattr(signal, f"SIG{name}"))
        time.sleep(0.05)  # the handler runs between bytecodes: each lands here, one after the other


def signalling(real: Callable[..., Any], now: Callable[..., bool]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if now(*args, **kwargs):
            send()
        return real(*args, **kwargs)

    return call


def main() -> int:
    where, _, number = os.environ[SIGNAL_AT_VARIABLE].partition(":")
    at = int(number)
    if where == "save":
        import a2c_ppo.checkpointer as checkpointer

        checkpointer.save_checkpoint = signalling(
            checkpointer.save_checkpoint,
            lambda path, **parts: os.path.basename(path) == "checkpoint.pt" and parts["counters"]["update"] == at,
        )
    elif where == "rollout":
        import a2c_ppo.trainer as trainer

        calls = [0]

        def nth(*args: Any, **kwargs: Any) -> bool:
            calls[0] += 1
            return calls[0] == at

        trainer.collect_rollout = signalling(trainer.collect_rollout, nth)
    else:
        raise ValueError(f"{SIGNAL_AT_VARIABLE}: {where!r}")
    from a2c_ppo.cli import train_main

    return train_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
