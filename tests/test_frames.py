"""Frame processing (--frame-skip, --frame-size, --grayscale, --frame-stack): each against hand
computation, the training layout it gives, and the inputs it refuses."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from a2c_ppo import train
from a2c_ppo.envs import check_env_id
from a2c_ppo.envs.frames import EnvRecipe, recipe_of
from a2c_ppo.envs.make import make_env
from a2c_ppo.errors import ConfigError
from tests.helpers import ROOT

COUNTER = "tests.envs_for_tests:CounterEnv"  # obs [t, noise, last action], reward t + action
RGB = "tests.envs_for_tests:RGBEnv"  # (12, 16, 3) frames, channel c = t + 10 c, reward t, ends at t == 4


def test_a_repeated_action_sums_the_rewards_and_stops_at_the_episode_end():
    env = make_env(COUNTER, recipe=EnvRecipe({"terminate_at": 3}, frame_skip=2))
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(1)
    assert (obs[0], reward, terminated) == (2, (1 + 1) + (2 + 1), False)  # t = 1 and 2
    obs, reward, terminated, _, info = env.step(0)
    assert (obs[0], reward, terminated) == (3, 3, True)  # t = 3 ends it: not repeated
    assert info["episode"]["l"] == 3 and info["episode"]["r"] == 8  # the env's own frames and return


def test_stacked_vectors_keep_the_last_frames_oldest_first_zeros_before_the_first():
    env = make_env(COUNTER, recipe=EnvRecipe(frame_stack=3))
    first, _ = env.reset(seed=0)
    noise = first[7]
    assert first.shape == (9,) and np.allclose(first, [0, 0, 0, 0, 0, 0, 0, noise, -1])  # zeros, then obs
    env.step(2)
    obs, *_ = env.step(1)
    assert np.allclose(obs, [0, noise, -1, 1, noise, 2, 2, noise, 1])


def test_images_resized_gray_and_stacked_reach_the_policy_channels_first():
    pytest.importorskip("cv2")
    recipe = EnvRecipe(frame_size=8, grayscale=True, frame_stack=2)
    space, _ = check_env_id(RGB, recipe=recipe)
    assert space.shape == (2, 8, 8) and space.dtype == np.uint8
    env = make_env(RGB, recipe=recipe)
    obs, _ = env.reset()
    obs, *_ = env.step(0)
    # gymnasium's gray: 0.2125 R + 0.7154 G + 0.0721 B; uniform frames stay uniform
    gray = [round(0.2125 * t + 0.7154 * (t + 10) + 0.0721 * (t + 20)) for t in (0, 1)]
    assert [int(np.median(obs[k])) for k in range(2)] == pytest.approx(gray, abs=1)


def test_stacked_rgb_frames_reach_the_cnn_channels_first_and_an_env_reusing_its_array_keeps_its_past():
    pytest.importorskip("cv2")
    space, _ = check_env_id(RGB, recipe=EnvRecipe(frame_size=40, frame_stack=3))
    assert space.shape == (9, 40, 40)  # 3 RGB frames: 9 channels, which no layout rule could guess
    env = make_env("tests.envs_for_tests:InPlaceRGBEnv", recipe=EnvRecipe(frame_stack=2))
    env.reset()
    obs, *_ = env.step(0)
    assert obs.shape == (6, 12, 16) and [int(obs[c, 0, 0]) for c in range(6)] == [0, 10, 20, 1, 11, 21]


@pytest.mark.parametrize(
    "env_id, recipe, phrase",
    [
        ("CartPole-v1", EnvRecipe(frame_size=64), "--frame-size processes channels-last uint8 images"),
        ("CartPole-v1", EnvRecipe(grayscale=True), "Drop --grayscale"),
        ("tests.envs_for_tests:ImageEnv", EnvRecipe(grayscale=True), "channels-last uint8 RGB images"),
        ("tests.envs_for_tests:ImageEnv", EnvRecipe(frame_stack=2), "stacks vectors or channels-last images"),
        ("tests.envs_for_tests:DictObsEnv", EnvRecipe(frame_stack=2), "stacks vectors or channels-last images"),
        ("ALE/Pong-v5", EnvRecipe(frame_stack=2), "gets the Atari pipeline"),
    ],
)
def test_frame_processing_an_env_cannot_take_is_refused(env_id, recipe, phrase):
    with pytest.raises(ConfigError, match=phrase):
        check_env_id(env_id, recipe=recipe)


def test_a_policy_on_stacked_frames_trains_and_replays(tmp_path):
    result = train("CartPole-v1", frame_stack=4, num_processes=2, num_steps=32, num_env_steps=256,
                   log_dir=str(tmp_path / "runs"), save_dir=str(tmp_path / "models"))  # fmt: skip
    enjoy = [sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", result.checkpoint, "--num-episodes", "1"]
    played = subprocess.run(enjoy, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert played.returncode == 0 and "mean return over 1 episode" in played.stdout, played.stderr


def test_a_cnn_with_head_layers_trains_on_processed_frames_and_replays(tmp_path):
    pytest.importorskip("cv2")
    import a2c_ppo
    from a2c_ppo.model import CNNBase

    result = train(RGB, frame_size=40, grayscale=True, frame_stack=2, cnn_head_size=16, activation="gelu",
                   num_processes=2, num_steps=8, num_env_steps=32, log_dir=str(tmp_path / "runs"),
                   save_dir=str(tmp_path / "models"))  # fmt: skip
    agent = a2c_ppo.load(result.checkpoint, trust_checkpoint=True)
    base = agent.policy.base
    assert isinstance(base, CNNBase) and base.output_size == 16 and base.main[0].in_channels == 2
    assert [type(m).__name__ for m in base.actor_head] == ["Linear", "GELU"] and base.critic_linear.in_features == 16
    assert agent.evaluate(episodes=2) == [10.0, 10.0]  # rewards 1 + 2 + 3 + 4, frames 4 -> 2 steps of 2
    env = make_env(RGB, recipe=recipe_of(agent.config))  # the frames the agent acts on, as the README says
    obs, _ = env.reset()
    assert obs.shape == (2, 40, 40) and env.action_space.contains(int(agent.act(obs)))
