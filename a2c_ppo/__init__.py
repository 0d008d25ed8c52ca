"""a2c_ppo: multi-process, vectorized on-policy RL (PPO, A2C, ACKTR) in PyTorch."""

__version__ = "0.1.0"
