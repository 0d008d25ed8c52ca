"""MiniGrid tasks as Dict observations the framework takes (``minigrid`` installed separately).

MiniGrid observes ``{"image": (7, 7, 3) uint8, "direction": Discrete(4), "mission": text}``;
the text part has no encoder, so it is dropped (every DoorKey mission reads the same). The
image (with its true bounds, ``CodeBounds``) and the direction train as they are: a small CNN
and a one-hot.

    python main.py --env-name benchmarks.minigrid_env:doorkey_5x5
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class CodeBounds(gym.ObservationWrapper):
    """MiniGrid declares its image ``Box(0, 255)``, but its cells hold codes: object 0-10,
    colour 0-5, state 0-2. Declared as they are, an integer image is scaled by 1/its highest
    value (``encoders.image_scale``) to [0, 1], as VecNormalize spans them for the zoo's MLP;
    scaled by 1/255 the codes sit below 0.04 and the CNN learns several times slower."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space["image"]
        high = np.broadcast_to(np.array([10, 5, 2], dtype=space.dtype), space.shape)
        self.observation_space = gym.spaces.Dict({**env.observation_space.spaces,
                                                  "image": gym.spaces.Box(0, high, dtype=space.dtype)})  # fmt: skip

    def observation(self, observation: dict) -> dict:
        return observation


def doorkey_5x5(render_mode: str | None = None) -> gym.Env:
    import minigrid  # noqa: F401  (registers the MiniGrid ids)

    env = gym.make("MiniGrid-DoorKey-5x5-v0", render_mode=render_mode)
    return CodeBounds(gym.wrappers.FilterObservation(env, ["direction", "image"]))


def doorkey_5x5_flat() -> gym.Env:
    """The same task as rl-baselines3-zoo trains it (``minigrid.wrappers.FlatObsWrapper``): one
    vector of the image and the mission's characters, for the Stable-Baselines3 column."""
    import minigrid
    from minigrid.wrappers import FlatObsWrapper

    del minigrid  # imported to register the ids
    return FlatObsWrapper(gym.make("MiniGrid-DoorKey-5x5-v0"))
