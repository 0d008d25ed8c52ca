"""Train an agent: ``python main.py --help`` lists every flag."""

import signal
import sys

from a2c_ppo.arguments import parse_args
from a2c_ppo.train import run


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    # `kill` (SIGTERM, e.g. from a job scheduler) saves and exits like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    result = run(parse_args())
    sys.exit(130 if result.interrupted else 0)
