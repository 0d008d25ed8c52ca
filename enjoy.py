"""Replay a trained policy: ``python enjoy.py --help`` lists every flag."""

import sys

from a2c_ppo.signals import Interrupted
from a2c_ppo.startup import imports_holding_signals

try:
    with imports_holding_signals():
        from a2c_ppo.enjoy import main
except Interrupted as stop:  # a Ctrl-C while torch loads: one line, as anywhere later
    sys.stderr.write(f"Stopped by {stop.key}.\n")
    sys.exit(stop.exit_code)

if __name__ == "__main__":
    sys.exit(main())
