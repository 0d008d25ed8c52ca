"""Environments: factories, vector envs, normalisation and the torch-facing adapter."""

from a2c_ppo.envs.make import check_env_id, make_env, make_vec_envs
from a2c_ppo.envs.normalize import VecNormalize
from a2c_ppo.envs.torch_env import StepResult, TorchVecEnv

__all__ = ["check_env_id", "make_env", "make_vec_envs", "VecNormalize", "StepResult", "TorchVecEnv"]
