"""Algorithms: each has ``update(rollouts) -> dict of metrics`` and an ``optimizer``."""

from a2c_ppo.algo.a2c_acktr import A2C, ACKTR
from a2c_ppo.algo.kfac import KFACOptimizer
from a2c_ppo.algo.ppo import PPO

__all__ = ["A2C", "ACKTR", "KFACOptimizer", "PPO"]
