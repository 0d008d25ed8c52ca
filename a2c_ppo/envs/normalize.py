"""VecNormalize: observation and discounted-return normalisation for a vector env."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv, VectorWrapper

from a2c_ppo.envs.finite import check_finite
from a2c_ppo.envs.running_stats import RunningMeanStd
from a2c_ppo.spaces import is_image

#: Normalised observations and scaled rewards are clipped to [-CLIP, CLIP] (SB3's VecNormalize's 10).
CLIP = 10.0
#: Added to a variance under the square root.
EPSILON = 1e-8


def normalized_parts(space: gym.Space) -> list[str | None]:
    """The observation parts normalisation applies to: float vectors (a float ``Box`` that is
    not an image); ``None`` stands for a single (non-Dict) space."""
    parts: dict[str | None, gym.Space] = {None: space}
    if isinstance(space, gym.spaces.Dict):
        parts = {key: part for key, part in space.spaces.items()}
    return [
        key
        for key, part in parts.items()
        if isinstance(part, gym.spaces.Box) and np.issubdtype(part.dtype, np.floating) and not is_image(part)
    ]


def observation_statistics(space: gym.Space) -> Any:
    """Fresh statistics of ``space``'s observations: a ``RunningMeanStd`` for a normalised single
    space, else a dict of them by normalised part of a Dict space (``normalized_parts``), empty
    where none is: an image or a Discrete observation keeps no statistics it never uses (nor
    saves them, nor merges them across data-parallel ranks)."""
    if not isinstance(space, gym.spaces.Dict):
        return RunningMeanStd(space.shape or ()) if normalized_parts(space) else {}
    return {key: RunningMeanStd(space.spaces[key].shape or ()) for key in normalized_parts(space) if key}


def load_observation_statistics(statistics: Any, state: Any) -> None:
    """``state`` (their ``state_dict``, or a dict of them by part) into ``observation_statistics``;
    an older checkpoint's statistics of a part that is not normalised are left out."""
    if isinstance(statistics, dict):
        for key, rms in statistics.items():
            rms.load_state_dict(state[key])
    else:
        statistics.load_state_dict(state)


def normalized(obs: Any, statistics: Any, clip: float = CLIP, epsilon: float = EPSILON) -> Any:
    """``obs`` (a batch, or a dict of batches by part) standardised by ``statistics`` (a
    ``RunningMeanStd``, or a dict of them by part: other parts pass as they are), clipped to
    ``[-clip, clip]``, float32."""

    def scaled(values: np.ndarray, rms: RunningMeanStd) -> np.ndarray:
        standardised = np.maximum((values - rms.mean) / np.sqrt(rms.var + epsilon), -clip)
        # the upper clip casts to float32 too: rounding is monotonic, so the order does not matter
        return np.minimum(standardised, clip, dtype=np.float32)

    if isinstance(statistics, dict):
        return {key: scaled(value, statistics[key]) if key in statistics else value for key, value in obs.items()}
    return scaled(obs, statistics)


def frozen_statistics(state: dict[str, Any], space: gym.Space) -> Any:
    """The observation statistics of a ``VecNormalize.state_dict()`` for observations of ``space``
    (as ``normalized`` takes them), or ``None`` where ``VecNormalize`` normalised none: off, or
    no part of ``space`` is a float vector (a Discrete observation, an image), which it passes
    as it is whatever ``norm_obs`` says. ``space`` tells a Dict's statistics from a single
    space's (a Dict part may be called ``"mean"``)."""
    if not state or not state["norm_obs"] or not normalized_parts(space):
        return None
    statistics = observation_statistics(space)
    load_observation_statistics(statistics, state["obs_rms"])
    return statistics


class VecNormalize(VectorWrapper):
    """Normalises observations (and ``info["final_obs"]``) and scales rewards.

    Only float vector parts of observations are normalised (``normalized_parts``): images,
    discrete parts and action masks pass through. ``obs_rms`` holds the statistics of a single
    observation space, or a dict of them by part for a Dict space.

    Rewards are divided by the running std of the discounted return, the usual trick
    that keeps value targets near unit scale without shifting the optimum. In ``eval()``
    mode the statistics are frozen; ``state_dict()`` / ``load_state_dict()`` carry them in
    checkpoints. Episode statistics are recorded below this wrapper, so they stay true.
    """

    def __init__(
        self,
        env: VectorEnv,
        *,
        norm_obs: bool = True,
        norm_reward: bool = True,
        gamma: float = 0.99,
        clip: float = CLIP,
        epsilon: float = EPSILON,
    ) -> None:
        super().__init__(env)
        self.norm_obs = norm_obs
        self.norm_reward = norm_reward
        self.gamma = gamma
        self.clip = clip
        self.epsilon = epsilon
        self.training = True
        space = self.single_observation_space
        self.parts = normalized_parts(space)
        self.obs_rms: Any = observation_statistics(space)
        self.ret_rms = RunningMeanStd(())
        self._returns = np.zeros(self.num_envs, dtype=np.float64)

    def train(self, mode: bool = True) -> None:
        self.training = mode

    def eval(self) -> None:
        self.training = False

    def statistics(self) -> list[RunningMeanStd]:
        """Every running statistic, observations' first (for the data-parallel merge)."""
        return [*(self.obs_rms.values() if isinstance(self.obs_rms, dict) else [self.obs_rms]), self.ret_rms]

    def _update_obs(self, obs: Any) -> None:
        if isinstance(self.obs_rms, dict):
            for key, rms in self.obs_rms.items():
                rms.update(obs[key])
        elif self.parts:
            self.obs_rms.update(obs)

    def normalize_obs(self, obs: Any) -> Any:
        if not self.norm_obs or not self.parts:
            return obs
        return normalized(obs, self.obs_rms, self.clip, self.epsilon)

    def reset(self, *, seed=None, options=None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all envs, or those in ``options["reset_mask"]`` (only their running returns
        restart, and only their new observations enter the statistics)."""
        mask = None if options is None else options.get("reset_mask")  # read first: SyncVectorEnv pops it
        rows = slice(None) if mask is None else np.array(mask, dtype=np.bool_)
        obs, info = self.env.reset(seed=seed, options=options)
        self._returns[rows] = 0.0
        if self.training and self.norm_obs:
            self._update_obs(obs if mask is None else {k: v[rows] for k, v in obs.items()} if isinstance(obs, dict)
                             else obs[rows])  # fmt: skip
        return self.normalize_obs(obs), info

    def step(self, actions):
        return self._normalized(self.env.step(actions), slice(None))

    def step_async(self, actions, envs: slice) -> None:
        """Start stepping the envs ``envs`` (split-phase stepping, as SubprocVecEnv offers it)."""
        self.env.step_async(actions, envs)  # type: ignore[attr-defined]

    def step_wait(self, envs: slice):
        """The normalised result of ``step_async(..., envs)``. The statistics take in this
        block's observations and returns, so the blocks of one step update them in turn."""
        return self._normalized(self.env.step_wait(envs), envs)  # type: ignore[attr-defined]

    def _normalized(self, step: tuple, rows: slice) -> tuple:
        """``step`` (the envs ``rows``) normalised; the raw values are checked for NaN / inf
        first, so that the error names the env and the statistics stay clean."""
        obs, rewards, terminated, truncated, infos = step
        offset = rows.start or 0
        rewards = np.asarray(rewards, dtype=np.float64)
        if self.norm_obs:
            for key in self.parts:
                check_finite(obs if key is None else obs[key], "observation", env_offset=offset)
        if self.norm_reward:
            check_finite(rewards, "reward", env_offset=offset)
        if self.training and self.norm_obs:
            self._update_obs(obs)
        if "final_obs" in infos:
            infos = dict(infos)
            final = infos["final_obs"].copy()
            for i in np.flatnonzero(infos["_final_obs"]):
                final[i] = self._normalize_one(final[i])
            infos["final_obs"] = final
        if self.norm_reward:
            returns = self._returns[rows] * self.gamma + rewards
            if self.training:  # a next-step env's reset rows are no steps: their returns stay out
                counted = returns[~np.asarray(infos["_reset_step"])] if "_reset_step" in infos else returns
                if counted.size:
                    self.ret_rms.update(counted)
            std = math.sqrt(float(self.ret_rms.var) + self.epsilon)  # a scalar: Python floats
            rewards = np.minimum(np.maximum(rewards / std, -self.clip), self.clip, dtype=np.float32)
            returns[np.logical_or(terminated, truncated)] = 0.0
            self._returns[rows] = returns
        return self.normalize_obs(obs), rewards.astype(np.float32, copy=False), terminated, truncated, infos

    def _normalize_one(self, obs: Any) -> Any:
        """One observation (not a batch) normalised."""
        if not self.norm_obs or not self.parts:  # e.g. a Discrete observation: an int, not an array
            return obs
        if isinstance(obs, dict):
            batch = self.normalize_obs({key: np.asarray(value)[None] for key, value in obs.items()})
            return {key: value[0] for key, value in batch.items()}
        return self.normalize_obs(obs[None])[0]

    def state_dict(self) -> dict:
        """Plain data (JSON-able): the flags, both statistics and each env's running return."""
        return {
            "norm_obs": self.norm_obs,
            "norm_reward": self.norm_reward,
            "obs_rms": (
                {key: rms.state_dict() for key, rms in self.obs_rms.items()}
                if isinstance(self.obs_rms, dict)
                else self.obs_rms.state_dict()
            ),
            "ret_rms": self.ret_rms.state_dict(),
            "returns": self._returns.tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the statistics and the flags they were gathered with (a policy trained on
        normalised observations needs them normalised). The running returns are restored
        when the env count matches (an exact resume), else they start at zero (replay)."""
        self.norm_obs = bool(state["norm_obs"])
        self.norm_reward = bool(state["norm_reward"])
        load_observation_statistics(self.obs_rms, state["obs_rms"])
        self.ret_rms.load_state_dict(state["ret_rms"])
        returns = np.asarray(state["returns"], dtype=np.float64)
        self._returns = returns.copy() if returns.shape == (self.num_envs,) else np.zeros(self.num_envs)
