"""Environments: factories, vector envs and normalisation.

The torch-facing adapter lives in ``a2c_ppo.envs.torch_env`` and is not imported here: env
worker processes import this package and must not import torch.
"""

from a2c_ppo.envs.check import check_env_id
from a2c_ppo.envs.frames import EnvRecipe, recipe_of
from a2c_ppo.envs.make import make_env, make_vec_envs
from a2c_ppo.envs.normalize import VecNormalize

__all__ = ["check_env_id", "EnvRecipe", "make_env", "make_vec_envs", "recipe_of", "VecNormalize"]
