"""A user's own vector env, checked: what it declares (``check_vector_env``: ConfigError before
anything starts) and what it returns, before the framework reads it (its failures and malformed
results become ``EnvWorkerError``, exit 3, naming the vector env, as a failing env of the
framework's own vector env does, rather than a traceback from deep in the rollout or, for a
batch of the wrong length that numpy broadcasts, a silently wrong result)."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from a2c_ppo.envs.subproc.protocol import EnvWorkerError
from a2c_ppo.errors import ConfigError

_MODES = ", ".join(f"AutoresetMode.{mode.name}" for mode in AutoresetMode)


def autoreset_mode(env: VectorEnv) -> AutoresetMode:
    """The autoreset mode ``env`` declares in ``metadata``; ConfigError where it declares none."""
    mode = env.metadata.get("autoreset_mode") if isinstance(env.metadata, dict) else None
    try:
        return AutoresetMode(mode)  # an AutoresetMode, or its value ("SameStep", ...)
    except (ValueError, TypeError):
        pass
    what = "has no metadata['autoreset_mode']" if mode is None else f"has metadata['autoreset_mode'] = {mode!r}"
    raise ConfigError(
        f"The vector env {type(env).__name__} {what}; set it to one of {_MODES} (gymnasium.vector.AutoresetMode), "
        "the mode in which the env resets finished sub-envs, so that the adapter can turn it into same-step "
        "autoreset."
    )


def _check_batched(env: VectorEnv, which: str) -> None:
    single: gym.Space = getattr(env, f"single_{which}_space")
    batched: gym.Space = getattr(env, f"{which}_space")
    try:
        expected = batch_space(single, env.num_envs)
    except Exception:  # a custom space gymnasium cannot batch: nothing to compare with
        return
    if batched == expected:
        return
    # Box bounds may be written differently; shape and dtype are what the learner relies on.
    if isinstance(single, gym.spaces.Box) and isinstance(batched, gym.spaces.Box):
        if batched.shape == expected.shape and batched.dtype == expected.dtype:
            return
    raise ConfigError(
        f"The vector env {type(env).__name__} has {which}_space {batched}, but num_envs={env.num_envs} copies of "
        f"its single_{which}_space {single} batch to {expected}. Set {which}_space = "
        f"gymnasium.vector.utils.batch_space(single_{which}_space, num_envs) and make num_envs the number of "
        "sub-envs (an EnvPool env: use a2c_ppo.envs.envpool_env.EnvPoolVecEnv instead)."
    )


def check_vector_env(env: Any) -> None:
    """A ConfigError, saying what to change, if ``env`` is not a gymnasium ``VectorEnv`` that
    :class:`NativeVecEnv` can adapt: a known ``metadata["autoreset_mode"]``, a positive
    ``num_envs`` and batched spaces consistent with the single ones. Unsupported (single) space
    types are left to the framework's own checks."""
    if not isinstance(env, VectorEnv):
        hint = (
            " It is a single gymnasium.Env: vectorize it with gymnasium.vector.SyncVectorEnv([make_env] * n, "
            "autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP) or gymnasium.make_vec(id, num_envs=n)."
            if isinstance(env, gym.Env)
            else " Build it with gymnasium.make_vec(id, num_envs=n) or gymnasium.vector.SyncVectorEnv / "
            "AsyncVectorEnv, or subclass gymnasium.vector.VectorEnv."
        )
        raise ConfigError(f"Expected a gymnasium.vector.VectorEnv, got {type(env).__name__}.{hint}")
    autoreset_mode(env)
    num_envs = getattr(env, "num_envs", None)
    if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ConfigError(
            f"The vector env {type(env).__name__} has num_envs = {num_envs!r}; set it to the number of sub-envs "
            "(a positive int) in its __init__."
        )
    for which in ("observation", "action"):
        if getattr(env, f"single_{which}_space", None) is None or getattr(env, f"{which}_space", None) is None:
            raise ConfigError(
                f"The vector env {type(env).__name__} lacks single_{which}_space or {which}_space; set both in its "
                f"__init__ ({which}_space = gymnasium.vector.utils.batch_space(single_{which}_space, num_envs))."
            )
        _check_batched(env, which)


def guarded(name: str, what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, a call into the vector env ``name`` doing ``what``; an exception (or
    ``sys.exit``) it raises becomes an EnvWorkerError whose ``__cause__`` is that exception."""
    try:
        return fn()
    except (Exception, SystemExit) as exc:
        text = traceback.format_exc()
        raise EnvWorkerError(
            f"the vector env {name} raised during {what}: {type(exc).__name__}: {exc}\n--- traceback ---\n"
            f"{text.rstrip()}",
            env_index=None,
            worker_index=None,
            traceback_text=text,
            error_type=type(exc).__name__,
        ) from exc


def malformed(name: str, what: str, problem: str) -> EnvWorkerError:
    """The error for a result of the vector env ``name`` (from ``what``) that breaks the contract."""
    return EnvWorkerError(
        f"the vector env {name}'s {what} returned {problem}; fix the env (gymnasium's VectorEnv contract)",
        env_index=None,
        worker_index=None,
        error_type="MalformedResult",
    )


def obs_problem(
    obs: Any, space: gym.Space, path: str = "observations", which: str = "observation_space", single: bool = False
) -> str | None:
    """What is wrong with the observation ``obs`` for ``space`` (``None``: nothing), the env's
    ``which``: a Dict must come as a dict with its keys, a Tuple as a tuple of its length, any
    other part as an array of the space's shape (batched: the leading axis, one row per env; one
    env's observation, ``single``, may give a scalar part as a number)."""
    if isinstance(space, gym.spaces.Dict):
        if not isinstance(obs, dict) or set(obs) != set(space.spaces):
            keys = sorted(obs) if isinstance(obs, dict) else type(obs).__name__
            return f"{path} {keys} where its {which} has the parts {sorted(space.spaces)}"
        parts = (obs_problem(obs[k], s, f"{path}[{k!r}]", which, single) for k, s in space.spaces.items())
        return next(filter(None, parts), None)
    if isinstance(space, gym.spaces.Tuple):
        if not isinstance(obs, (tuple, list)) or len(obs) != len(space.spaces):
            return f"{path} of type {type(obs).__name__} where its {which} is a Tuple of {len(space.spaces)}"
        parts = (obs_problem(o, s, f"{path}[{i}]", which, single) for i, (o, s) in enumerate(zip(obs, space)))
        return next(filter(None, parts), None)
    if space.shape is None:  # a space of the user's own: nothing to compare with
        return None
    if not hasattr(obs, "dtype") and not (single and isinstance(obs, (int, float, bool))):
        return f"{path} as a {type(obs).__name__}, not an array"
    if tuple(np.shape(obs)) != tuple(space.shape):
        return f"{path} of shape {tuple(np.shape(obs))} where its {which} has {tuple(space.shape)}"
    return None


def check_step(name: str, num_envs: int, space: gym.Space, result: Any) -> None:
    """``result``, what a ``step`` of the vector env ``name`` returned, must be (obs, rewards,
    terminated, truncated, infos) with obs fitting ``space`` (batched), the three flags and
    rewards of shape (num_envs,) and infos a dict; EnvWorkerError saying what is not."""
    if not isinstance(result, tuple) or len(result) != 5:
        raise malformed(
            name, "step", f"a {type(result).__name__} where (obs, rewards, terminated, truncated, infos) belongs"
        )
    obs, *flags, infos = result
    for what, value in zip(("rewards", "terminated", "truncated"), flags):
        if np.shape(value) != (num_envs,):
            raise malformed(
                name, "step", f"{what} of shape {np.shape(value)} where one per env, ({num_envs},), belongs"
            )
    _check_obs_and_infos(name, "step", space, obs, infos)


def check_reset(name: str, space: gym.Space, result: Any) -> None:
    """``result``, what a ``reset`` of the vector env ``name`` returned, must be (obs, infos)."""
    if not isinstance(result, tuple) or len(result) != 2:
        raise malformed(name, "reset", f"a {type(result).__name__} where (obs, infos) belongs")
    _check_obs_and_infos(name, "reset", space, *result)


def _check_obs_and_infos(name: str, what: str, space: gym.Space, obs: Any, infos: Any) -> None:
    problem = obs_problem(obs, space)
    if problem is not None:
        raise malformed(name, what, problem)
    if not isinstance(infos, dict):
        raise malformed(name, what, f"infos of type {type(infos).__name__} where a dict ({{}} for none) belongs")
