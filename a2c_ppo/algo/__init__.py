"""Algorithms: each has ``update(rollouts) -> dict of metrics`` and an ``optimizer``."""

from a2c_ppo.algo.a2c_acktr import A2C, ACKTR
from a2c_ppo.algo.common import Reducer
from a2c_ppo.algo.kfac import KFACConfig, KFACOptimizer
from a2c_ppo.algo.optimizers import make_rmsprop
from a2c_ppo.algo.ppo import PPO

__all__ = ["A2C", "ACKTR", "KFACConfig", "KFACOptimizer", "PPO", "Reducer", "make_rmsprop"]
