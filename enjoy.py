"""Replay a trained policy: ``python enjoy.py --help`` lists every flag."""

import sys

from a2c_ppo.startup import collector_paused

with collector_paused():
    from a2c_ppo.enjoy import main

if __name__ == "__main__":
    sys.exit(main())
