"""The subprocess vector env: env blocks on worker processes (and the main process).

Modules: ``protocol`` (commands, replies, :class:`EnvWorkerError`), ``block`` (a block of
envs over the shared buffers), ``worker`` (the worker process), ``infos`` (the info codec),
``handles`` (one submit / collect interface for local and remote blocks), ``vec_env``.
"""

from a2c_ppo.envs.subproc.protocol import EnvWorkerError
from a2c_ppo.envs.subproc.vec_env import SubprocVecEnv
from a2c_ppo.envs.subproc.worker import default_in_main

__all__ = ["EnvWorkerError", "SubprocVecEnv", "default_in_main"]
