"""The wrappers that give every env the observation layout the framework trains on.

``ObservationLayout`` applies a ``spaces.ObservationPlan`` (a flat Dict of a composite space's
parts, channels-first images). ``ActionMaskObservation`` adds the env's action mask to the
observation as its ``action_mask`` part (see ``spaces.py``), read after every reset and step
from the observation's own ``action_mask`` part, ``info["action_mask"]`` (gymnasium's
convention; Taxi gives one) or the env's ``action_masks()`` (sb3-contrib's), in that order.
``EpisodeRecorder`` keeps whole episodes as an expert trajectory file stores them.
``clip_box_actions`` clips Box actions to the env's bounds and keeps those bounds as its space.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import ClipAction

from a2c_ppo.spaces import ACTION_MASK, ObservationPlan, allows_an_action, apply_plan, mask_size, mask_splits


def clip_box_actions(env: gym.Env) -> gym.Env:
    """``env`` taking its Box actions clipped to its bounds (the policy's Gaussian samples may lie
    outside them; the rollout keeps them as sampled): gymnasium's ``ClipAction``, with the env's
    bounded space as its action space where ClipAction widens it to (-inf, inf), so that what
    records the space (expert files, ``Agent``) keeps the bounds. The layer stays gymnasium's
    class: env snapshots name their layers, and checkpoints written before keep resuming."""
    clipped = ClipAction(env)
    clipped.action_space = env.action_space  # the clip itself reads env.action_space's bounds
    return clipped


class ObservationLayout(gym.ObservationWrapper):
    """Observations in ``plan``'s layout."""

    def __init__(self, env: gym.Env, plan: ObservationPlan) -> None:
        super().__init__(env)
        self.plan = plan
        self.observation_space = plan.space

    def observation(self, observation: Any) -> Any:
        return apply_plan(self.plan, observation)


def provides_action_masks(env: gym.Env, reset_info: dict[str, Any]) -> bool:
    """Whether ``env`` (laid out, just reset with ``reset_info``) gives action masks."""
    space = env.observation_space
    if isinstance(space, gym.spaces.Dict) and ACTION_MASK in space.spaces or ACTION_MASK in reset_info:
        return True
    try:
        return callable(env.get_wrapper_attr("action_masks"))
    except AttributeError:
        return False


class ActionMaskObservation(gym.Wrapper):
    """Adds the action mask (bool, 1 = allowed) to every observation: a Dict observation gets an
    ``action_mask`` part, any other becomes ``{"obs": observation, "action_mask": mask}``. A
    mask that allows no action (in any MultiDiscrete dimension) raises ValueError, except on the
    step that ends the episode, whose observation no action is chosen from (a game's end)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        size = mask_size(env.action_space)
        if size is None:
            raise ValueError(f"action masks need Discrete or MultiDiscrete actions, not {env.action_space}")
        self.size = size
        self.steps = 0  # of the current episode, for the message of a mask that allows nothing
        self.splits = mask_splits(env.action_space)  # MultiDiscrete: a mask part per dimension
        space = env.observation_space
        parts = dict(space.spaces) if isinstance(space, gym.spaces.Dict) else {"obs": space}
        parts[ACTION_MASK] = gym.spaces.MultiBinary(size)
        self.observation_space = gym.spaces.Dict(parts)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.steps = 0
        return self._with_mask(obs, info), info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return self._with_mask(obs, info, ended=terminated or truncated), reward, terminated, truncated, info

    def _with_mask(self, obs: Any, info: dict[str, Any], ended: bool = False) -> dict[str, Any]:
        if isinstance(obs, dict) and ACTION_MASK in obs:
            mask = obs[ACTION_MASK]
        elif ACTION_MASK in info:
            mask = info[ACTION_MASK]
        else:
            try:
                mask = self.env.get_wrapper_attr("action_masks")()
            except AttributeError:
                raise ValueError(
                    "the env gave no action mask (an 'action_mask' observation part, info['action_mask'] or an "
                    "action_masks() method); train with --action-masks off"
                ) from None
        mask = np.asarray(mask).astype(np.bool_, copy=False).reshape(-1)
        if mask.shape != (self.size,):
            raise ValueError(f"the action mask has {mask.size} entries, but the action space needs {self.size}")
        if not ended and not allows_an_action(mask, self.splits):
            when = "after reset" if self.steps == 0 else f"after step {self.steps} of the episode"
            raise ValueError(f"the action mask {mask.astype(np.int8).tolist()} {when} allows no action")
        parts = dict(obs) if isinstance(obs, dict) else {"obs": obs}
        parts[ACTION_MASK] = mask
        return parts


class EpisodeRecorder(gym.Wrapper):
    """Appends each finished episode to ``episodes`` as a dict of numpy rows: ``obs`` (L, *obs)
    in the framework's layout and before any normalisation (each step's observation before
    its action), ``actions`` (L, ...) as the env took them (Box actions clipped to the
    space, as ClipAction does), ``rewards`` (L,) as the env paid them, and ``terminated``
    (whether the episode ended by termination rather than truncation). With ``whole_games``
    (the Atari pipeline's) an episode ends where the episode statistics below
    (``RecordEpisodeStatistics``, ``make_env``'s) end one: a lost life ends the learner's
    episode, not the game, which goes on after the reset (whose own steps, a no-op and FIRE,
    are not the policy's and are not recorded). Below
    ``ActionMaskObservation``, it records the observations without the mask (those of a run
    without masks); ``recorded_space`` is their space, whatever wraps it."""

    def __init__(self, env: gym.Env, episodes: list[dict[str, np.ndarray]], *, whole_games: bool = False) -> None:
        super().__init__(env)
        self.episodes = episodes
        self.whole_games = whole_games
        self._obs: Any = None
        self._rows: dict[str, list[Any]] = {"obs": [], "actions": [], "rewards": []}
        self._game_goes_on = False  # the last step lost an Atari life: the next reset continues the game

    @property
    def recorded_space(self) -> gym.Space:
        return self.observation_space

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._obs, info = self.env.reset(**kwargs)
        if not self._game_goes_on or kwargs.get("seed") is not None or kwargs.get("options"):
            self._rows = {"obs": [], "actions": [], "rewards": []}
        self._game_goes_on = False
        return self._obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        space = self.action_space
        taken = np.clip(action, space.low, space.high) if isinstance(space, gym.spaces.Box) else action
        obs, reward, terminated, truncated, info = self.env.step(action)
        for key, value in (("obs", self._obs), ("actions", taken), ("rewards", reward)):
            self._rows[key].append(np.array(value, copy=True))
        self._obs = obs
        self._game_goes_on = self.whole_games and bool(terminated or truncated) and "episode" not in info
        if (terminated or truncated) and not self._game_goes_on:
            episode = {key: np.stack(rows) for key, rows in self._rows.items()}
            episode["terminated"] = np.array(bool(terminated))
            self.episodes.append(episode)
            self._rows = {"obs": [], "actions": [], "rewards": []}
        return obs, reward, terminated, truncated, info
