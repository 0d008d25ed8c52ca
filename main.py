"""Train an agent: ``python main.py --help`` lists every flag."""

import sys

from a2c_ppo.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
