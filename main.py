"""Train an agent: ``python main.py --help`` lists every flag."""

import sys

from a2c_ppo.arguments import parse_args
from a2c_ppo.train import run

if __name__ == "__main__":
    result = run(parse_args())
    sys.exit(130 if result.interrupted else 0)
