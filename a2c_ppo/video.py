"""Videos while training (``--capture-video``, the ``[video]`` extra).

Every ``--video-interval`` updates (and after the last one) ``VideoCallback`` plays one
deterministic episode on an env of its own, rendered off-screen with the run's observation
normalisation frozen, and writes it as ``RUN_DIR/videos/update-NNNNNN.mp4`` (frames go to
ffmpeg as they come); the Logger shows a small copy in TensorBoard and hands the file to W&B
when tracking. The training envs are never
touched and the global RNG states are restored afterwards, so a run's results are the same
with and without videos. The episode is seeded ``seed + seeds.VIDEO`` each time: every
video starts from the same state, which makes them comparable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a2c_ppo import seeds
from a2c_ppo.callbacks import UpdateInfo
from a2c_ppo.checkpoint import rng_state, set_rng_state
from a2c_ppo.config import RunConfig
from a2c_ppo.envs.frames import recipe_of
from a2c_ppo.envs.make import make_env_fn
from a2c_ppo.envs.normalize import VecNormalize
from a2c_ppo.envs.torch_env import EnvActionConverter
from a2c_ppo.errors import ConfigError
from a2c_ppo.logger import Logger
from a2c_ppo.model import Policy, eval_mode
from a2c_ppo.mp4 import Mp4Writer, first_line
from a2c_ppo.observations import map_obs, obs_from_numpy

VIDEO_FOLDER = "videos"
MAX_VIDEO_STEPS = 5_000  # an episode that never ends is cut here, so training goes on
VIDEO_TAG = "videos/episode"


def has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def prepare_offscreen_rendering() -> list[str]:
    """Set up this process to render ``rgb_array`` frames, which need no window and no sound;
    the environment variables set here (``EpisodeRecorder.close`` removes them again: the process
    of a run, a notebook's, may render in a window after it).

    pygame (classic control, Box2D) would otherwise probe a display and an audio device and
    print errors (XDG_RUNTIME_DIR, ALSA) where there are none; MuJoCo needs an OpenGL platform
    without a display (EGL). Variables the user set win."""
    wanted = {"SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    if not has_display():
        wanted["MUJOCO_GL"] = "egl"
    made = [name for name in wanted if name not in os.environ]
    os.environ.update({name: wanted[name] for name in made})
    return made


def drop_variables(names: list[str]) -> None:
    """Remove the environment variables ``prepare_offscreen_rendering`` set."""
    for name in names:
        os.environ.pop(name, None)


class EpisodeRecorder:
    """One env of ``config``'s that renders ``rgb_array`` frames, playing deterministic episodes.

    A gymnasium ``SyncVectorEnv`` of one env (next-step autoreset: the step that ends an
    episode still shows its last frame) in a frozen ``VecNormalize`` where the run normalises.
    """

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        self.variables = prepare_offscreen_rendering()
        self.device = device
        try:
            self.env = make_env_fn(
                config.env_name,
                render_mode="rgb_array",
                action_masks=config.action_masks == "on",
                recipe=recipe_of(config),
            )()
        except BaseException:
            drop_variables(self.variables)
            raise
        envs: gym.vector.VectorEnv = gym.vector.SyncVectorEnv([lambda: self.env])
        if config.norm_obs or config.norm_reward:
            envs = VecNormalize(envs, norm_obs=bool(config.norm_obs), norm_reward=bool(config.norm_reward))
        self.envs = envs
        self.to_env_actions = EnvActionConverter(envs.single_action_space)
        # one frame per agent step: with --frame-skip the env's frames come that many times slower
        self.fps = float(self.env.metadata.get("render_fps") or 30) / config.frame_skip

    @classmethod
    def checked(cls, config: RunConfig, device: torch.device) -> EpisodeRecorder:
        """A recorder that has rendered a frame, before training spends a step (the global RNG
        states as they were); ConfigError saying why the env cannot make videos."""
        if config.vec_env == "native":  # its factory builds a vector env: there is no single env to film
            raise ConfigError(
                f"--capture-video: {config.env_name!r} is a vector env of its own, whose envs a2c_ppo cannot record "
                "(it films one env it builds); drop --capture-video."
            )
        state, recorder = rng_state(), None
        try:
            recorder = cls(config, device)
            recorder.envs.reset(seed=config.seed + seeds.VIDEO)
            recorder.frame()
        except Exception as exc:
            if recorder is not None:
                recorder.close()
            raise ConfigError(
                f"--capture-video: {config.env_name!r} cannot render frames off-screen (building it with "
                f"render_mode='rgb_array' and rendering raised {type(exc).__name__}: {first_line(exc)}); fix the "
                "env's rendering (MuJoCo: MUJOCO_GL=egl or osmesa) or drop --capture-video."
            ) from None
        finally:
            set_rng_state(state)
        return recorder

    def play(self, policy: Policy, seed: int, normalization: dict[str, Any] | None, video: Mp4Writer) -> float | None:
        """Play one deterministic episode into ``video``; its true return (``None`` when it was
        cut at ``MAX_VIDEO_STEPS``)."""
        if isinstance(self.envs, VecNormalize):
            if normalization is not None:
                self.envs.load_state_dict(normalization)
            self.envs.eval()
        space = self.envs.single_observation_space
        obs, _ = self.envs.reset(seed=seed)
        video.add(self.frame())
        rnn_hxs = torch.zeros(1, policy.recurrent_hidden_state_size, device=self.device)
        masks = torch.zeros(1, 1, device=self.device)  # an episode start
        ended = False
        for _ in range(MAX_VIDEO_STEPS):
            with torch.inference_mode(), eval_mode(policy):
                tensors = map_obs(lambda t: t.to(self.device), obs_from_numpy(obs, space))
                _, action, _, rnn_hxs = policy.act(tensors, rnn_hxs, masks, deterministic=True)
            obs, _, terminated, truncated, infos = self.envs.step(self.to_env_actions(action))
            video.add(self.frame())
            # next-step autoreset: the step after an end resets (its action ignored), and the state
            # starts afresh on the observation it returns, as a rollout's does
            restarted, ended = ended, bool(terminated[0] or truncated[0])
            masks = torch.full((1, 1), 0.0 if ended or restarted else 1.0, device=self.device)
            if "episode" in infos:  # the whole game: an Atari life lost ends the learner's episode only
                # RecordEpisodeStatistics' true return, below any reward normalisation
                return float(infos["episode"]["r"][0])
        return None

    def frame(self) -> np.ndarray:
        """The env's frame as ``(H, W, 3)`` uint8 (a gray frame as three equal channels, RGBA
        without its alpha); ValueError for frames a video cannot show as they are."""
        frame = np.asarray(self.env.render())
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
            raise ValueError(
                f"render() gave a frame of shape {frame.shape} and dtype {frame.dtype}; videos take (H, W, 3) or "
                "(H, W) uint8 frames"
            )
        return np.repeat(frame[:, :, None], 3, axis=2) if frame.ndim == 2 else frame[:, :, :3]

    def close(self) -> None:
        try:
            self.envs.close()  # (pygame's display ends with the env: a later one reads the variables again)
        finally:
            drop_variables(self.variables)


class VideoCallback:
    """Every ``video_interval`` updates and after the last: a video of one deterministic
    episode (rank 0 only; see the module docstring)."""

    def __init__(
        self,
        logger: Logger,
        config: RunConfig,
        normalization: Callable[[], dict[str, Any] | None],
        recorder: EpisodeRecorder,
    ) -> None:
        """``recorder``: ``EpisodeRecorder.checked``, made before the run's envs (its owner closes it)."""
        self.logger, self.config, self.normalization, self.recorder = logger, config, normalization, recorder
        self.folder = os.path.join(config.run_dir, VIDEO_FOLDER)

    def __call__(self, info: UpdateInfo) -> None:
        if info.update % self.config.video_interval and not info.last:
            return
        path = os.path.join(self.folder, f"update-{info.update:06d}.mp4")
        state = rng_state()  # whatever the env or the renderer draws, training draws the same numbers
        try:
            with Mp4Writer(path, self.recorder.fps) as video:
                seed = self.config.seed + seeds.VIDEO
                episode_return = self.recorder.play(info.policy, seed, self.normalization(), video)
        finally:
            set_rng_state(state)
        self.logger.video(VIDEO_TAG, path, np.stack(video.preview), video.fps, info.env_steps)
        outcome = f"return {episode_return:.1f}" if episode_return is not None else f"cut at {MAX_VIDEO_STEPS} steps"
        self.logger.print(f"Video of update {info.update} ({outcome}): {path}")
