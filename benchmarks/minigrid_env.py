"""MiniGrid tasks as Dict observations the framework takes (``minigrid`` installed separately).

MiniGrid observes ``{"image": (7, 7, 3) uint8, "direction": Discrete(4), "mission": text}``;
the text part has no encoder, so it is dropped (every DoorKey mission reads the same). The
image and the direction train as they are: a small CNN and a one-hot.

    python main.py --env-name benchmarks.minigrid_env:doorkey_5x5
"""

from __future__ import annotations

import gymnasium as gym


def doorkey_5x5(render_mode: str | None = None) -> gym.Env:
    import minigrid  # noqa: F401  (registers the MiniGrid ids)

    env = gym.make("MiniGrid-DoorKey-5x5-v0", render_mode=render_mode)
    return gym.wrappers.FilterObservation(env, ["direction", "image"])


def doorkey_5x5_flat() -> gym.Env:
    """The same task as rl-baselines3-zoo trains it (``minigrid.wrappers.FlatObsWrapper``): one
    vector of the image and the mission's characters, for the Stable-Baselines3 column."""
    import minigrid
    from minigrid.wrappers import FlatObsWrapper

    del minigrid  # imported to register the ids
    return FlatObsWrapper(gym.make("MiniGrid-DoorKey-5x5-v0"))
