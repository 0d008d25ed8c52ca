"""How each env of a run is built beyond its id (``EnvRecipe``): the constructor's keyword
arguments (``--env-kwargs``) and the frame processing of ``--frame-skip``, ``--frame-size``,
``--grayscale`` and ``--frame-stack``, as rl-baselines3-zoo's env wrappers and SB3's
``VecFrameStack`` give them (its CarRacing entry: every 2nd frame, 64x64 gray, 2 stacked).
A policy trained so acts on processed frames: ``make_env(id, recipe=recipe_of(config))``
builds the env that gives them (and repeats each action).

The processing sits above ``RecordEpisodeStatistics``, so episode returns stay the env's own
and lengths count the env's frames; Atari ids have their own pipeline (``atari.py``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import GrayscaleObservation, ResizeObservation

from a2c_ppo.config import RunConfig, json_object
from a2c_ppo.envs.atari import FRAME_SKIP, FRAME_STACK, SCREEN_SIZE, is_atari_id
from a2c_ppo.errors import ConfigError


@dataclass(frozen=True)
class EnvRecipe:
    """``kwargs`` go to the env's constructor; the rest processes its frames (1, 0, off, 1: none)."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    frame_skip: int = 1
    frame_size: int = 0
    grayscale: bool = False
    frame_stack: int = 1

    @property
    def processes_frames(self) -> bool:
        return (self.frame_skip, self.frame_size, self.grayscale, self.frame_stack) != (1, 0, False, 1)

    def flags(self) -> str:
        """The frame flags this recipe sets, for messages."""
        given = [("--frame-skip", self.frame_skip, 1), ("--frame-size", self.frame_size, 0),
                 ("--frame-stack", self.frame_stack, 1)]  # fmt: skip
        flags = [f"{flag} {value}" for flag, value, default in given if value != default]
        return ", ".join(flags + (["--grayscale"] if self.grayscale else []))


PLAIN = EnvRecipe()


class RepeatAction(gym.Wrapper):
    """Each action taken ``skip`` times (the rewards summed), stopping where the episode ends."""

    def __init__(self, env: gym.Env, skip: int) -> None:
        super().__init__(env)
        self.skip = skip

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        total = 0.0
        for _ in range(self.skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


class StackFrames(gym.ObservationWrapper):
    """The last ``n`` observations, oldest first, zeros before the episode's first (SB3's
    ``VecFrameStack``): a vector's features concatenated, a channels-last image's channels
    stacked channels-first, ``(n * C, H, W)``, which any number of channels keeps unambiguous."""

    def __init__(self, env: gym.Env, n: int) -> None:
        super().__init__(env)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box)
        self.n = n
        self.image = len(space.shape) == 3
        self.frames: deque[np.ndarray] = deque(maxlen=n)
        low, high = (self._stacked([bound] * n) for bound in (space.low, space.high))
        self.observation_space = gym.spaces.Box(low, high, dtype=space.dtype)

    def _stacked(self, frames: Any) -> np.ndarray:
        if self.image:
            return np.concatenate([np.moveaxis(frame, -1, 0) for frame in frames], axis=0)
        return np.concatenate(frames, axis=-1)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.frames.clear()
        self.frames.extend(np.zeros_like(obs) for _ in range(self.n - 1))
        self.frames.append(np.array(obs, copy=True))  # a copy: an env may reuse its array
        return self.observation(None), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.frames.append(np.array(obs, copy=True))
        return self.observation(None), reward, terminated, truncated, info

    def observation(self, observation: Any) -> np.ndarray:
        return self._stacked(self.frames)


def process_frames(env: gym.Env, recipe: EnvRecipe, what: str) -> gym.Env:
    """``env`` with ``recipe``'s frame processing; ConfigError (``what``: the env, for the
    message) where its observations cannot take it."""
    if recipe.frame_skip > 1:
        env = RepeatAction(env, recipe.frame_skip)
    space = env.observation_space
    if recipe.frame_size:
        _check_frames(space, "--frame-size", "channels-last uint8 images (height, width, channels)", what)
        if find_spec("cv2") is None:
            raise ConfigError(
                '--frame-size resizes with OpenCV, which is not installed: pip install -e ".[box2d]" (or '
                "opencv-python-headless)."
            )
        env = ResizeObservation(env, (recipe.frame_size, recipe.frame_size))
    if recipe.grayscale:
        _check_frames(env.observation_space, "--grayscale", "channels-last uint8 RGB images (height, width, 3)", what)
        env = GrayscaleObservation(env, keep_dim=True)
    if recipe.frame_stack > 1:
        space = env.observation_space
        is_vector = isinstance(space, gym.spaces.Box) and len(space.shape) == 1
        if not (is_vector or _channels_last_image(space)):
            raise ConfigError(
                f"--frame-stack stacks vectors or channels-last images; {what} has observations {space}. Drop it."
            )
        env = StackFrames(env, recipe.frame_stack)
    return env


def _channels_last_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.shape[-1] in (1, 3, 4)


def _check_frames(space: gym.Space, flag: str, takes: str, what: str) -> None:
    """ConfigError unless ``space`` is the uint8 (0..255) image ``flag`` processes (RGB for gray)."""
    fits = (
        isinstance(space, gym.spaces.Box)
        and _channels_last_image(space)
        and space.dtype == np.uint8
        and (flag != "--grayscale" or space.shape[-1] == 3)
        and bool(np.all(space.low == 0) and np.all(space.high == 255))
    )
    if not fits:
        raise ConfigError(f"{flag} processes {takes}; {what} has observations {space}. Drop {flag}.")


def env_identity(config: RunConfig) -> str:
    """The env a run's observations come from, as expert trajectory files name it: the id, and
    the recipe where it is not the plain one (``CarRacing-v3 --frame-skip 2, ...``)."""
    recipe = recipe_of(config)
    parts = [f"--env-kwargs {config.env_kwargs}"] if recipe.kwargs else []
    parts += [recipe.flags()] if recipe.processes_frames else []
    return " ".join([config.env_name, ", ".join(parts)]) if parts else config.env_name


#: The settings a recipe is made of.
RECIPE_SETTINGS = ("env_kwargs", "frame_skip", "frame_size", "grayscale", "frame_stack")


def recipe_of(settings: RunConfig | Mapping[str, Any]) -> EnvRecipe:
    """The recipe of a run's settings (a RunConfig, or a mapping holding ``RECIPE_SETTINGS``)."""
    values = settings if isinstance(settings, Mapping) else {name: getattr(settings, name) for name in RECIPE_SETTINGS}
    return EnvRecipe(
        json_object(values["env_kwargs"], "--env-kwargs"),
        values["frame_skip"],
        values["frame_size"],
        values["grayscale"],
        values["frame_stack"],
    )


def frame_processing(settings: RunConfig) -> str:
    """What a run's env does to the env's own frames before its policy reads them, in words
    (empty: nothing); whoever feeds the policy frames of their own must do the same."""
    recipe = recipe_of(settings)
    steps = [
        f"--frame-skip {recipe.frame_skip} (each action repeated)" if recipe.frame_skip > 1 else "",
        f"--frame-size {recipe.frame_size}" if recipe.frame_size else "",
        "--grayscale" if recipe.grayscale else "",
        f"--frame-stack {recipe.frame_stack}" if recipe.frame_stack > 1 else "",
    ]
    if is_atari_id(settings.env_name):
        steps.append(f"the Atari pipeline ({FRAME_SKIP} frames a step, {SCREEN_SIZE} x {SCREEN_SIZE} gray, "
                     f"{FRAME_STACK} stacked)")  # fmt: skip
    return ", ".join(step for step in steps if step)


def frame_settings(settings: RunConfig) -> dict[str, Any]:
    """The frame processing of a run's env as ``--frame-skip``, ``--frame-size``, ``--grayscale``
    and ``--frame-stack`` give it; an Atari id's is its pipeline's, which takes none of them."""
    if is_atari_id(settings.env_name):
        return {"frame_skip": FRAME_SKIP, "frame_size": SCREEN_SIZE, "grayscale": True, "frame_stack": FRAME_STACK}
    return {name: getattr(settings, name) for name in RECIPE_SETTINGS if name != "env_kwargs"}
