"""A checkpoint restored once into fresh CPU objects before anything starts, so that a damaged
or crafted one is refused with one paragraph (exit 2) instead of a traceback after the workers
have started.

``load_checkpoint`` (checkpoint.py) reads only tensors and plain data, so a file cannot run code;
this checks that the data fits the run: the model's parameters the policy's, the optimizer's
state the algorithm's, the statistics the observation space, the saved rollout state the
storage. Each part is loaded exactly as the resumed run will load it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from a2c_ppo.checkpoint import first_non_finite, set_rng_state
from a2c_ppo.config import RunConfig
from a2c_ppo.errors import ConfigError
from a2c_ppo.observations import TensorDict, copy_obs, empty_obs
from a2c_ppo.precision import preserved_rng

if TYPE_CHECKING:
    from a2c_ppo.algo.gail import GAIL

#: What a part of a checkpoint that does not fit raises while it is loaded.
UNFIT = (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, StopIteration)


def restored(part: str, what: str, load: Callable[[], Any]) -> Any:
    """``load()``, or a ConfigError saying that ``part`` of checkpoint ``what`` does not fit."""
    try:
        return load()
    except UNFIT as exc:
        reason = " ".join(line.strip() for line in str(exc).splitlines()) or type(exc).__name__
        reason = f"missing {reason}" if isinstance(exc, KeyError) else reason
        reason = reason if len(reason) <= 240 else reason[:237] + "..."
        raise ConfigError(
            f"{what} is damaged or was not written by this a2c_ppo for this run: {part} cannot be restored "
            f"({reason}). Use another checkpoint, or start a new run without it."
        ) from None


def check_finite(checkpoint: dict[str, Any], what: str) -> None:
    """ConfigError where a parameter of the checkpoint's model is NaN or infinite."""
    bad = first_non_finite(checkpoint["model"])
    if bad is not None:
        raise ConfigError(
            f"{what} is refused: its parameter {bad!r} is not finite (NaN or infinity), so the policy it holds "
            "cannot act. Use an earlier checkpoint of the run."
        )


def check_normalization(checkpoint: dict[str, Any], observation_space: gym.Space, what: str) -> None:
    """ConfigError where the checkpoint's normalisation statistics do not fit ``observation_space``."""
    statistics = checkpoint.get("normalization")
    if statistics:
        restored("the normalisation statistics", what, lambda: _normalization(statistics, observation_space))


def load_model(
    policy: torch.nn.Module,
    checkpoint: dict[str, Any],
    what: str,
    named_base: str | None = None,
    resuming: bool = False,
) -> None:
    """The checkpoint's parameters into ``policy`` (ConfigError where they do not fit).
    ``named_base``: the network the user named in place of the checkpoint's, then blamed;
    ``resuming``: a resume, which also takes --policy-kwargs (a replay keeps the checkpoint's)."""
    if not named_base:
        restored("the model", what, lambda: policy.load_state_dict(checkpoint["model"]))
        return
    try:
        policy.load_state_dict(checkpoint["model"])
    except UNFIT:
        saved = checkpoint["config"]
        trained = saved.get("policy_base") or "the built-in network"
        if saved.get("policy_base"):
            kwargs = saved.get("policy_kwargs", "{}")
            trained += f" and --policy-kwargs '{kwargs}'" if kwargs != "{}" else " and no --policy-kwargs"
        raise ConfigError(
            f"--policy-base {named_base!r}: the weights of {what} do not fit that network (it was trained with "
            f"{trained}); name the network it was trained with{', with its --policy-kwargs' if resuming else ''}."
        ) from None


def check_restorable(
    checkpoint: dict[str, Any],
    config: RunConfig,
    spaces: tuple[gym.Space, gym.Space],
    what: str,
    gail: GAIL | None = None,
    named_base: str | None = None,
) -> None:
    """Load every part of ``checkpoint`` the way a resumed run of ``config`` (with ``gail``, its
    discriminator, where it has one) will, into objects built here on the CPU; ConfigError
    naming the first part that does not fit (``named_base``: a network the user typed, then
    blamed where the weights do not fit it, as ``load_model`` does). The envs' own states are checked where they are
    restored, in the workers (``Checkpointer.restore``)."""
    from a2c_ppo.builders import make_agent, policy_for
    from a2c_ppo.value_norm import ValueNormalizer

    observation_space, action_space = spaces
    check_finite(checkpoint, what)
    policy = policy_for(config, observation_space, action_space)
    agent = make_agent(config, policy)
    load_model(policy, checkpoint, what, named_base, resuming=True)
    restored("the optimizer state", what, lambda: agent.optimizer.load_state_dict(checkpoint["optimizer"]))
    algorithm = checkpoint.get("algorithm") or {}
    if "agent" in algorithm and hasattr(agent, "load_state_dict"):
        restored("the algorithm's state", what, lambda: agent.load_state_dict(algorithm["agent"]))
    if "value_norm" in algorithm and config.norm_value:
        restored("the value normalisation", what, lambda: ValueNormalizer().load_state_dict(algorithm["value_norm"]))
    if "gail" in algorithm and gail is not None:
        discriminator = gail
        restored("the GAIL discriminator", what, lambda: discriminator.load_state_dict(algorithm["gail"]))
    check_normalization(checkpoint, observation_space, what)
    state = checkpoint["resume_state"]
    restored("the saved rollout state", what, lambda: _rollout_state(state, observation_space, policy))
    with preserved_rng():
        restored("the random number generators' state", what, lambda: set_rng_state(checkpoint["rng"]))


def _normalization(state: dict[str, Any], observation_space: gym.Space) -> None:
    from a2c_ppo.envs.normalize import load_observation_statistics, observation_statistics
    from a2c_ppo.envs.running_stats import RunningMeanStd

    missing = {"norm_obs", "norm_reward", "obs_rms", "ret_rms", "returns"} - set(state)
    if missing:
        raise KeyError(", ".join(sorted(missing)))
    load_observation_statistics(observation_statistics(observation_space), state["obs_rms"])
    RunningMeanStd(()).load_state_dict(state["ret_rms"])
    if np.asarray(state["returns"], dtype=np.float64).ndim != 1:
        raise ValueError("the running returns are not one per env")


def _rollout_state(state: dict[str, Any], observation_space: gym.Space, policy: Any) -> None:
    """The first step of the saved rollout, copied into storage of the saved number of envs."""
    saved = TensorDict(state["obs"]) if isinstance(state["obs"], dict) else state["obs"]
    envs = len(next(iter(saved.values())) if isinstance(saved, TensorDict) else saved)
    copy_obs(empty_obs(observation_space, (envs,)), saved)
    torch.zeros(envs, policy.recurrent_hidden_state_size).copy_(state["recurrent_hidden_states"])
    torch.zeros(envs, 1).copy_(state["masks"])
    episodes = [*state["returns"], *state["lengths"]]
    if not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in episodes):
        raise TypeError("the last episodes' returns and lengths are not numbers")
    if not np.isfinite(np.asarray(episodes, dtype=np.float64)).all():
        raise ValueError("a last episode's return is not finite")
    if state["env_states"] is not None and not isinstance(state["env_states"], list):
        raise TypeError("the envs' states are not a list")
    if not isinstance(state["why_not_exact"], (str, type(None))):
        raise TypeError("why_not_exact is not text")
