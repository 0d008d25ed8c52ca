"""gymnasium's own vectorised CartPole (8 envs, next-step autoreset), as a native vector env:
``--env-name benchmarks.native_cartpole:make`` (benchmarks/throughput.py's cartpole-native)."""

import gymnasium as gym


def make() -> gym.vector.VectorEnv:
    return gym.make_vec("CartPole-v1", num_envs=8, vectorization_mode="vector_entry_point")
