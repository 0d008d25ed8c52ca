"""VecNormalize: observation and discounted-return normalisation for a vector env."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv, VectorWrapper

from a2c_ppo.envs.finite import check_finite
from a2c_ppo.envs.running_stats import RunningMeanStd


def _clip(array: np.ndarray, limit: float) -> np.ndarray:
    """``array`` clipped to ``[-limit, limit]`` in place (two ufuncs: half of ``np.clip``'s cost
    on the few values of one env step)."""
    return np.minimum(np.maximum(array, -limit, out=array), limit, out=array)


class VecNormalize(VectorWrapper):
    """Normalises observations (and ``info["final_obs"]``) and scales rewards.

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
        clip: float = 10.0,
        epsilon: float = 1e-8,
    ) -> None:
        super().__init__(env)
        self.norm_obs = norm_obs
        self.norm_reward = norm_reward
        self.gamma = gamma
        self.clip = clip
        self.epsilon = epsilon
        self.training = True
        self.obs_rms = RunningMeanStd(self.single_observation_space.shape or ())
        self.ret_rms = RunningMeanStd(())
        self._returns = np.zeros(self.num_envs, dtype=np.float64)

    def train(self, mode: bool = True) -> None:
        self.training = mode

    def eval(self) -> None:
        self.training = False

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.norm_obs:
            return obs
        scaled = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon)
        return _clip(scaled, self.clip).astype(np.float32)

    def reset(self, *, seed=None, options=None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all envs, or those in ``options["reset_mask"]`` (only their running returns
        restart, and only their new observations enter the statistics)."""
        mask = None if options is None else options.get("reset_mask")  # read first: SyncVectorEnv pops it
        rows = slice(None) if mask is None else np.array(mask, dtype=np.bool_)
        obs, info = self.env.reset(seed=seed, options=options)
        self._returns[rows] = 0.0
        if self.training and self.norm_obs:
            self.obs_rms.update(obs[rows])
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
            check_finite(obs, "observation", env_offset=offset)
        if self.norm_reward:
            check_finite(rewards, "reward", env_offset=offset)
        if self.training and self.norm_obs:
            self.obs_rms.update(obs)
        if "final_obs" in infos:
            infos = dict(infos)
            final = infos["final_obs"].copy()
            for i in np.flatnonzero(infos["_final_obs"]):
                final[i] = self.normalize_obs(final[i][None])[0]
            infos["final_obs"] = final
        if self.norm_reward:
            returns = self._returns[rows] * self.gamma + rewards
            if self.training:
                self.ret_rms.update(returns)
            rewards = _clip(rewards / np.sqrt(self.ret_rms.var + self.epsilon), self.clip)
            returns[np.logical_or(terminated, truncated)] = 0.0
            self._returns[rows] = returns
        return self.normalize_obs(obs), rewards.astype(np.float32), terminated, truncated, infos

    def state_dict(self) -> dict:
        """Plain data (JSON-able): the flags, both statistics and each env's running return."""
        return {
            "norm_obs": self.norm_obs,
            "norm_reward": self.norm_reward,
            "obs_rms": self.obs_rms.state_dict(),
            "ret_rms": self.ret_rms.state_dict(),
            "returns": self._returns.tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the statistics and the flags they were gathered with (a policy trained on
        normalised observations needs them normalised). The running returns are restored
        when the env count matches (an exact resume), else they start at zero (replay)."""
        self.norm_obs = bool(state["norm_obs"])
        self.norm_reward = bool(state["norm_reward"])
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.ret_rms.load_state_dict(state["ret_rms"])
        returns = np.asarray(state["returns"], dtype=np.float64)
        self._returns = returns.copy() if returns.shape == (self.num_envs,) else np.zeros(self.num_envs)
