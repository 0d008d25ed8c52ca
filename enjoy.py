"""Replay a trained policy: ``python enjoy.py --help`` lists every flag."""

import sys

from a2c_ppo.startup import collector_paused

try:
    with collector_paused():
        from a2c_ppo.enjoy import main
except KeyboardInterrupt:  # a Ctrl-C while torch loads: one line, as anywhere later
    sys.stderr.write("Stopped by Ctrl-C.\n")
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
