"""Envs for the observation-space and action-mask tests, whose right answers are known.

They live in an importable module so worker processes can unpickle them by reference.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

EPISODE_STEPS = 10


class BitsDictEnv(gym.Env):
    """A Dict observation with a channels-last uint8 image, a float vector and a discrete part,
    each showing one random bit per step (a bright or dark image, a vector of +1 or -1, the
    value 0 or 1). The action names the three bits (MultiDiscrete([2, 2, 2])) and pays the
    fraction it gets right: 10 per episode for a policy that reads every part, about 8.3 for
    one blind to any part, 5 for random actions."""

    observation_space = gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 255, (6, 6, 3), np.uint8),
            "vector": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            "discrete": gym.spaces.Discrete(2),
        }
    )
    action_space = gym.spaces.MultiDiscrete([2, 2, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(np.mean(np.asarray(action) == self.bits))
        self.t += 1
        return self._observe(), reward, False, self.t == EPISODE_STEPS, {}

    def _observe(self) -> dict:
        self.bits = self.np_random.integers(2, size=3)
        image_bit, vector_bit, discrete_bit = (int(bit) for bit in self.bits)
        return {
            "image": np.full((6, 6, 3), 255 * image_bit, np.uint8),
            "vector": np.full(2, 2.0 * vector_bit - 1.0, np.float32),
            "discrete": discrete_bit,
        }


class MaskedChoiceEnv(gym.Env):
    """Four actions, two of them allowed at each step (``info["action_mask"]``, also shown in the
    observation); taking a forbidden one raises. The higher allowed action pays 1."""

    observation_space = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe()

    def step(self, action):
        action = int(action)
        if not self.mask[action]:
            raise ValueError(f"action {action} is forbidden by the mask {self.mask.astype(int).tolist()}")
        reward = float(action == int(np.flatnonzero(self.mask).max()))
        self.t += 1
        obs, info = self._observe()
        return obs, reward, False, self.t == EPISODE_STEPS, info

    def _observe(self) -> tuple[np.ndarray, dict]:
        self.mask = np.zeros(4, np.bool_)
        self.mask[self.np_random.choice(4, 2, replace=False)] = True
        return self.mask.astype(np.float32), {"action_mask": self.mask.copy()}


class MethodMaskEnv(MaskedChoiceEnv):
    """The same task with sb3-contrib's convention: an ``action_masks()`` method, no info."""

    def _observe(self) -> tuple[np.ndarray, dict]:
        obs, _ = super()._observe()
        return obs, {}

    def action_masks(self) -> np.ndarray:
        return self.mask.copy()


class PartMaskEnv(MaskedChoiceEnv):
    """The same task with the mask as an int8 ``Box`` part of a Dict observation (PettingZoo's
    convention); ``strict=False`` pays forbidden actions 0 instead of raising."""

    observation_space = gym.spaces.Dict(
        {"obs": gym.spaces.Box(0.0, 1.0, (4,), np.float32), "action_mask": gym.spaces.Box(0, 1, (4,), np.int8)}
    )

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict

    def step(self, action):
        if not self.strict and not self.mask[int(action)]:
            self.t += 1
            obs, info = self._observe()
            return obs, 0.0, False, self.t == EPISODE_STEPS, info
        return super().step(action)

    def _observe(self) -> tuple[dict, dict]:
        obs, _ = super()._observe()
        return {"obs": obs, "action_mask": self.mask.astype(np.int8)}, {}


class EmptyMaskEnv(MaskedChoiceEnv):
    """Its mask allows no action after the third step."""

    def _observe(self) -> tuple[np.ndarray, dict]:
        obs, info = super()._observe()
        if self.t == 3:
            info["action_mask"][:] = False
        return obs, info


class GameOverMaskEnv(PartMaskEnv):
    """A game that ends (terminated) at step 4 with no move left: its last mask allows nothing,
    and no action is chosen from it. ``mid_episode``: that empty mask comes at step 2 and the
    game goes on (an env fault)."""

    def __init__(self, mid_episode: bool = False) -> None:
        super().__init__()
        self.mid_episode = mid_episode

    def step(self, action):
        obs, reward, _, truncated, info = super().step(action)
        return obs, reward, self.t == 4 and not self.mid_episode, truncated, info

    def _observe(self) -> tuple[dict, dict]:
        obs, info = super()._observe()
        if self.t == (2 if self.mid_episode else 4):
            self.mask[:] = False
            obs["action_mask"][:] = 0
        return obs, info


class ShiftedClassEnv(gym.Env):
    """A ``Discrete(4, start=5)`` observation (classes 5..8) whose parity is the action that
    pays 1: 10 per episode for a policy that tells the classes apart, about 5 for one that
    cannot. ``outside``: the third step returns class 9, which the space does not have."""

    observation_space = gym.spaces.Discrete(4, start=5)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, outside: bool = False) -> None:
        self.outside = outside

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.obs = int(self.np_random.integers(5, 9))
        return self.obs, {}

    def step(self, action):
        reward = float(int(action) == self.obs % 2)
        self.t += 1
        self.obs = 9 if self.outside and self.t == 3 else int(self.np_random.integers(5, 9))
        return self.obs, reward, False, self.t == EPISODE_STEPS, {}


def _native(env_fn) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([env_fn] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def native_info_masks() -> gym.vector.VectorEnv:
    """A vector env of one's own whose envs give their masks in ``info``."""
    return _native(MaskedChoiceEnv)


def native_part_masks(strict: bool = True) -> gym.vector.VectorEnv:
    """A vector env of one's own whose Dict observations hold the mask (``strict``: its envs
    raise on a forbidden action)."""
    return _native(lambda: PartMaskEnv(strict))


def native_bits() -> gym.vector.VectorEnv:
    """A vector env of one's own with flat Dict observations (an image, a vector, a class)."""
    return _native(BitsDictEnv)


def native_game_over(mode: str = "SameStep", mid_episode: bool = False) -> gym.vector.VectorEnv:
    """``GameOverMaskEnv`` in a vector env of one's own, in autoreset ``mode``."""
    return gym.vector.SyncVectorEnv([lambda: GameOverMaskEnv(mid_episode)] * 2,
                                    autoreset_mode=gym.vector.AutoresetMode(mode))  # fmt: skip


class BinaryActionsWithMaskEnv(MaskedChoiceEnv):
    """Gives ``info["action_mask"]`` although its actions are MultiBinary, which masks do not fit."""

    action_space = gym.spaces.MultiBinary(4)

    def step(self, action):
        self.t += 1
        obs, info = self._observe()
        return obs, 0.0, False, self.t == EPISODE_STEPS, info


def native_blackjack(mode: str = "NextStep") -> gym.vector.VectorEnv:
    """gymnasium's Blackjack (Tuple observations of three classes) as a vector env of one's own."""
    return gym.make_vec("Blackjack-v1", num_envs=2, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode(mode)})  # fmt: skip


def native_box_actions() -> gym.vector.VectorEnv:
    """A vector env of one's own with Box actions (Pendulum's), which no mask fits."""
    return gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})  # fmt: skip


class ShiftedActionEnv(gym.Env):
    """Actions ``Discrete(3, start=start)`` (default 1: the actions 1, 2, 3), any other refused;
    the one-hot observation names the action (counted from ``start``) that pays 1."""

    observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)

    def __init__(self, start: int = 1) -> None:
        self.action_space = gym.spaces.Discrete(3, start=start)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        reward = float(int(action) - int(self.action_space.start) == self.target)
        self.t += 1
        return self._observe(), reward, False, self.t == EPISODE_STEPS, {}

    def _observe(self) -> np.ndarray:
        self.target = int(self.np_random.integers(3))
        return np.eye(3, dtype=np.float32)[self.target]
