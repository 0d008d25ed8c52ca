"""The Atari pipeline: DeepMind-style preprocessing on top of gymnasium's wrappers.

``wrap_atari(RecordEpisodeStatistics(gym.make(id, frameskip=1)))`` gives, from the inside out:

1. ``AtariPreprocessing`` (gymnasium): up to 30 random no-ops on reset (none for the two games
   whose action 0 is not a no-op, Backgammon and VideoCheckers), repeat each action
   for 4 frames and max-pool the last two, 84x84 grayscale uint8.
2. :class:`EpisodicLife`: a lost life ends the episode for the learner (``terminated``),
   but the game is really reset only at game over; otherwise ``reset()`` takes one no-op.
3. :class:`FireReset`: presses FIRE after every reset, in games that wait for it.
4. ``FrameStackObservation`` (gymnasium): the last 4 frames, shape ``(4, 84, 84)`` uint8.
5. Reward clipping to the sign (optional; ``TransformReward``).

A policy trained so is played whole games at a time (``Agent.make_env``) by the same pipeline
with :class:`WholeGames` above the frame stack: after a lost life it does what the training
env's autoreset did (2. and 3., the stack restarted) and goes on, so that an episode is a game.

The ``RecordEpisodeStatistics`` below all of this sees the raw game: its ``info["episode"]``
holds the true (unclipped) score of a whole game (all lives) and appears only at game over.
Its length counts emulator frames (4 per agent step, plus the reset no-ops), as the
Atari literature and OpenAI baselines' Monitor report it.

``ALE/<Game>-v5`` ids must be made with ``frameskip=1`` (``make_env`` does), so the skip is
applied once, here; v5's sticky actions (``repeat_action_probability=0.25``) stay on.
An env that skips frames itself is accepted and then not skipped again (no max-pooling).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, TransformReward

__all__ = ["wrap_atari", "EpisodicLife", "FireReset", "WholeGames", "needs_fire_reset", "sign_reward"]

#: The pipeline's frames, as ``make_env`` builds it (``wrap_atari``'s defaults): each action
#: repeated for ``FRAME_SKIP`` frames, ``SCREEN_SIZE`` square gray frames, ``FRAME_STACK`` stacked.
FRAME_SKIP = 4
SCREEN_SIZE = 84
FRAME_STACK = 4


def sign_reward(reward: SupportsFloat) -> float:
    """-1, 0 or +1 (module-level so the wrapped env stays picklable)."""
    return float(np.sign(float(reward)))


class EpisodicLife(gym.Wrapper):
    """Life loss = end of episode for the learner; the game is reset only at game over.

    ``step`` returns ``terminated=True`` when a life is lost. The following ``reset()`` (the
    vector env's autoreset) then does not reset the game but takes a single no-op step, so the
    game goes on with the remaining lives. A real reset happens after game over or truncation,
    and whenever ``reset`` is given a ``seed`` or ``options``.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def _ale_lives(self) -> int:
        ale_env: Any = self.env.unwrapped  # an AtariEnv
        return int(ale_env.ale.lives())

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = bool(terminated or truncated)
        lives = self._ale_lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if self.game_over or seed is not None or options:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the no-op ended the game: reset for real
                obs, info = self.env.reset()
        self.game_over = False
        self.lives = self._ale_lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Presses FIRE (then the next action) after a reset, for games that need it to start."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = _action_meanings(env)
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireReset needs action 1 to be FIRE, got actions {meanings}")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        for action in (1, 2):
            obs, _, terminated, truncated, _ = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class GameEnd(gym.Wrapper):
    """Under ``EpisodicLife``, for :class:`WholeGames`: the game's own rewards since ``clear()``
    up to its end, and that end (``terminated``, ``truncated``, ``info``), if it came."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.clear()

    def clear(self) -> None:
        self.reward = 0.0
        self.end: tuple[bool, bool, dict[str, Any]] | None = None

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.end is None:
            self.reward += float(reward)
            if terminated or truncated:
                self.end = (bool(terminated), bool(truncated), info)
        return obs, reward, terminated, truncated, info


class WholeGames(gym.Wrapper):
    """One game per episode, for playing a policy trained with ``EpisodicLife``.

    Where a life is lost (the learner's episode ends, the game goes on), the env below is reset
    as the training env's autoreset resets it (a no-op step, FIRE in games that need it, the
    frame stack restarted), and the step returns that reset's observation, not ``terminated``:
    its reward adds the rewards of those reset steps, so that a game's rewards sum to its score;
    its ``info["life_lost"]`` is True (a recurrent policy's state restarted there in training).
    ``game`` is the ``GameEnd`` below ``EpisodicLife``."""

    def __init__(self, env: gym.Env, game: GameEnd) -> None:
        super().__init__(env)
        self.game = game

    def step(self, action):
        self.game.clear()
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not terminated or self.game.end is not None:  # the game goes on, or it is over
            return obs, reward, terminated, truncated, info
        self.game.clear()
        obs, _ = self.env.reset()
        reward = float(reward) + self.game.reward
        if self.game.end is not None:  # the game ended during the reset's steps (rare): it ends here
            terminated, truncated, info = self.game.end
            return obs, reward, terminated, truncated, info
        return obs, reward, False, False, {**info, "life_lost": True}


def _action_meanings(env: gym.Env) -> list[str]:
    ale_env: Any = env.unwrapped  # an AtariEnv
    return list(ale_env.get_action_meanings())


def needs_fire_reset(env: gym.Env) -> bool:
    """True for games whose action 1 is FIRE (Breakout, Pong, ...)."""
    meanings = _action_meanings(env)
    return len(meanings) >= 3 and meanings[1] == "FIRE"


def is_atari_id(env_id: str) -> bool:
    """Whether ``env_id`` is an ALE game, which the Atari pipeline (``wrap_atari``) wraps."""
    return env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4")


def wrap_atari(
    env: gym.Env,
    clip_reward: bool = True,
    *,
    episodic_life: bool = True,
    frame_stack: int = FRAME_STACK,
    noop_max: int = 30,
    frame_skip: int = FRAME_SKIP,
    screen_size: int = SCREEN_SIZE,
) -> gym.Env:
    """The standard Atari pipeline around ``env`` (an ALE env, maybe already wrapped).

    Observations are uint8 ``(frame_stack, screen_size, screen_size)``, channels first.
    ``clip_reward=False`` keeps the game's rewards (for evaluation); ``episodic_life=False``
    plays whole games per episode, a lost life handled as training's autoreset handles it
    (:class:`WholeGames`).
    """
    if getattr(env.unwrapped, "_frameskip", 1) != 1:
        frame_skip = 1  # the env already repeats each action; do not skip twice
    meanings = getattr(env.unwrapped, "get_action_meanings", lambda: ["NOOP"])()
    if meanings[0] != "NOOP":  # (Backgammon, VideoCheckers) no no-op to start an episode with: none taken
        noop_max = 0
    env = AtariPreprocessing(
        env,
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=screen_size,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        scale_obs=False,
    )
    game = None if episodic_life else GameEnd(env)
    env = EpisodicLife(game or env)
    if needs_fire_reset(env):
        env = FireReset(env)
    env = FrameStackObservation(env, frame_stack)
    if game is not None:
        env = WholeGames(env, game)
    if clip_reward:
        env = TransformReward(env, sign_reward)
    return env
