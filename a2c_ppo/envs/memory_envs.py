"""Small envs for testing and benchmarking memory (recurrent) and image (CNN) policies.

Usable from main.py as ``--env-name a2c_ppo.envs.memory_envs:FACTORY`` (e.g.
``make_cartpole_novel``) or, once this module is imported, by their registered ids
(``--env-name a2c_ppo.envs.memory_envs:CartPoleNoVel-v1``).

* ``CartPoleNoVel-v1`` / ``make_cartpole_novel``: CartPole-v1 that shows only the cart
  position and the pole angle. The velocities must be inferred from consecutive
  observations, so a feed-forward policy is stuck with a reactive controller.
* ``CueRecall-v0`` / ``make_cue_recall``: a one-hot cue is shown on the first step only;
  after ``delay`` blank steps the agent is asked (query bit) to name it. Reward 1 for the
  right answer, else 0. Without memory the best expected return is ``1 / num_cues``.
* ``ImageTarget-v0`` / ``make_image_target``: (4, 48, 48) uint8 frames with a bright patch
  in the left or right half; the action naming the side earns 1. A few steps per episode:
  a quick end-to-end check for the CNN policy.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

# CartPole's observation is (x, x_dot, theta, theta_dot); keep x and theta.
_CARTPOLE_POSITIONS = np.array([0, 2])


class CartPoleNoVelocity(gym.ObservationWrapper):
    """Hide the two velocity components of a CartPole observation."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space: Any = env.observation_space  # CartPole's Box
        self.observation_space = gym.spaces.Box(
            low=space.low[_CARTPOLE_POSITIONS], high=space.high[_CARTPOLE_POSITIONS], dtype=space.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[_CARTPOLE_POSITIONS]


def make_cartpole_novel(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """CartPole-v1 (500-step limit) with the velocities hidden."""
    return CartPoleNoVelocity(gym.make("CartPole-v1", render_mode=render_mode, **kwargs))


class CueRecallEnv(gym.Env):
    """Remember a cue over ``delay`` blank steps and name it when asked.

    Observation (num_cues + 1,) float32: the one-hot cue on step 0, zeros during the
    delay, and only the query bit (last entry) on the final step. Any action is accepted
    before the query; the action taken on the query step ends the episode with reward 1 if
    it names the cue. Episodes last ``delay + 2`` steps.
    """

    metadata = {"render_modes": []}

    def __init__(self, num_cues: int = 4, delay: int = 10, render_mode: str | None = None) -> None:
        if num_cues < 2 or delay < 0:
            raise ValueError("CueRecallEnv needs num_cues >= 2 and delay >= 0")
        self.num_cues, self.delay = num_cues, delay
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(num_cues + 1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(num_cues)
        self.render_mode = render_mode
        self._cue = 0
        self._t = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.num_cues + 1, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        elif self._t == self.delay + 1:
            obs[-1] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.num_cues))
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        if self._t == self.delay + 1:
            reward = float(int(np.asarray(action).reshape(-1)[0]) == self._cue)
            return self._obs(), reward, True, False, {}
        self._t += 1
        return self._obs(), 0.0, False, False, {}


def make_cue_recall(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    return CueRecallEnv(render_mode=render_mode, **kwargs)


class ImageTargetEnv(gym.Env):
    """Pick the side of the frame with the bright patch; channels-first uint8 frames."""

    metadata = {"render_modes": []}

    def __init__(
        self, size: int = 48, channels: int = 4, episode_length: int = 8, render_mode: str | None = None
    ) -> None:
        self.size, self.channels, self.episode_length = size, channels, episode_length
        self.observation_space = gym.spaces.Box(0, 255, shape=(channels, size, size), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.render_mode = render_mode
        self._side = 0
        self._t = 0

    def _obs(self) -> np.ndarray:
        frame = self.np_random.integers(0, 40, size=self.observation_space.shape, dtype=np.uint8)
        half = self.size // 2
        top = int(self.np_random.integers(0, self.size - 8))
        left = int(self.np_random.integers(0, half - 8)) + self._side * half
        frame[:, top : top + 8, left : left + 8] = 255
        return frame

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._side = int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        reward = float(int(np.asarray(action).reshape(-1)[0]) == self._side)
        self._t += 1
        self._side = int(self.np_random.integers(2))
        return self._obs(), reward, self._t >= self.episode_length, False, {}


def make_image_target(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    return ImageTargetEnv(render_mode=render_mode, **kwargs)


def _register() -> None:
    for env_id, entry_point, max_steps in (
        ("CartPoleNoVel-v1", make_cartpole_novel, None),
        ("CueRecall-v0", make_cue_recall, None),
        ("ImageTarget-v0", make_image_target, None),
    ):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=max_steps)


_register()
