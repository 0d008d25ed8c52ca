"""Videos while training: mp4s in RUN_DIR/videos and in TensorBoard, and a training curve that
is bit-identical with and without --capture-video."""

from __future__ import annotations

import csv
import glob
import os
import random
import sys

import numpy as np
import pytest
import torch

from a2c_ppo import enjoy, mp4, video
from a2c_ppo.arguments import resolve
from a2c_ppo.checkpoint import load_checkpoint
from a2c_ppo.errors import ConfigError
from a2c_ppo.session import run
from tests.envs_for_tests import CounterEnv
from tests.helpers import local_run_flags

pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("pygame")

VARYING_COLUMNS = {"time", "charts/SPS", "charts/rollout_SPS"}  # wall-clock measurements


def train(folder, env_name: str, *extra: str) -> str:
    flags = ["--env-name", env_name, "--num-processes", "2", "--num-steps", "16", "--num-env-steps", "128",
             "--num-mini-batch", "2", "--log-interval", "1", "--eval-interval", "2", "--eval-episodes", "1",
             *local_run_flags(folder), *extra]  # fmt: skip
    request = resolve(flags)
    run(request.config, notes=request.notes)
    (run_dir,) = glob.glob(str(folder / "runs" / "*"))
    return run_dir


def curve(run_dir: str) -> list[dict[str, str]]:
    with open(os.path.join(run_dir, "progress.csv")) as f:
        return [{k: v for k, v in row.items() if k not in VARYING_COLUMNS} for row in csv.DictReader(f)]


@pytest.mark.parametrize("env_name", ["CartPole-v1", "Pendulum-v1"])  # Pendulum: normalised observations
def test_videos_leave_the_training_curve_bit_identical(tmp_path, env_name, monkeypatch):
    play = video.EpisodeRecorder.play

    def play_drawing_random_numbers(self, *args, **kwargs):  # as a renderer or an env may
        torch.rand(3), np.random.rand(3), random.random()
        return play(self, *args, **kwargs)

    monkeypatch.setattr(video.EpisodeRecorder, "play", play_drawing_random_numbers)
    plain = train(tmp_path / "plain", env_name)
    filmed = train(tmp_path / "filmed", env_name, "--capture-video", "--video-interval", "3")
    assert curve(filmed) == curve(plain)
    a, b = load_checkpoint(os.path.join(plain, "checkpoint.pt")), load_checkpoint(os.path.join(filmed, "checkpoint.pt"))
    assert all(torch.equal(a["model"][name], b["model"][name]) for name in a["model"])
    assert a["rng"]["python"] == b["rng"]["python"] and torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    # every 3 updates, and after the last (4)
    assert sorted(os.listdir(os.path.join(filmed, "videos"))) == ["update-000003.mp4", "update-000004.mp4"]
    assert not os.path.exists(os.path.join(plain, "videos"))

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(filmed, size_guidance={"images": 0})
    events.Reload()
    gifs = events.Images("videos/episode")
    assert [event.step for event in gifs] == [3 * 32, 4 * 32]
    assert gifs[0].encoded_image_string[:6] == b"GIF89a"
    assert max(gifs[0].width, gifs[0].height) <= mp4.PREVIEW_SIDE


def test_capture_video_without_the_video_extra_is_refused_before_training(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(ConfigError, match=r'--capture-video needs imageio_ffmpeg.*pip install -e "\.\[video\]"'):
        resolve(["--capture-video", *local_run_flags(tmp_path)])


class NoPicturesEnv(CounterEnv):
    def render(self):
        raise NotImplementedError("this env draws nothing")


def test_an_env_that_cannot_render_is_refused_before_training(tmp_path):
    request = resolve(["--env-name", "tests.test_video:NoPicturesEnv", "--capture-video", *local_run_flags(tmp_path)])
    with pytest.raises(ConfigError, match="cannot render frames off-screen.*this env draws nothing"):
        run(request.config)
    assert not glob.glob(str(tmp_path / "runs" / "*"))  # no run folder: refused before the envs and the log


def test_a_native_vector_env_is_refused_for_what_it_is_not_for_its_rendering(tmp_path):
    request = resolve(["--env-name", "tests.custom_nets:cartpole_same_step", "--capture-video",
                       *local_run_flags(tmp_path)[2:]])  # fmt: skip
    with pytest.raises(ConfigError, match="is a vector env of its own, whose envs a2c_ppo cannot record"):
        run(request.config)


class GrayPicturesEnv(CounterEnv):
    def render(self):
        return np.full((6, 8), 7, np.uint8)


class FloatPicturesEnv(CounterEnv):
    def render(self):
        return np.zeros((6, 8, 3), np.float32)


def test_gray_frames_become_rgb_and_float_frames_are_refused_before_training(tmp_path):
    config = resolve(["--env-name", "tests.test_video:GrayPicturesEnv", *local_run_flags(tmp_path)]).config
    recorder = video.EpisodeRecorder.checked(config, torch.device("cpu"))
    try:
        frame = recorder.frame()
        assert frame.shape == (6, 8, 3) and frame.dtype == np.uint8 and (frame == 7).all()
    finally:
        recorder.close()
    flags = ["--env-name", "tests.test_video:FloatPicturesEnv", "--capture-video", *local_run_flags(tmp_path)]
    request = resolve(flags)
    with pytest.raises(ConfigError, match=r"shape \(6, 8, 3\) and dtype float32; videos take"):
        run(request.config)


def test_a_video_of_an_atari_game_plays_every_life(tmp_path, monkeypatch):
    """A lost life ends the learner's episode, not the game: the video goes on to game over."""
    play, lives = video.EpisodeRecorder.play, []

    def play_and_count_lives(self, *args, **kwargs):
        result = play(self, *args, **kwargs)
        lives.append(self.env.unwrapped.ale.lives())
        return result

    monkeypatch.setattr(video.EpisodeRecorder, "play", play_and_count_lives)
    run_dir = train(tmp_path, "ALE/Breakout-v5", "--capture-video", "--video-interval", "8", "--vec-env", "sync",
                    "--num-mini-batch", "1")  # fmt: skip
    assert os.listdir(os.path.join(run_dir, "videos")) == ["update-000004.mp4"]
    assert lives == [0]  # every one of Breakout's 5 lives played


def test_a_replay_stopped_by_ctrl_c_keeps_no_cut_episode_video(tmp_path, monkeypatch):
    """Closing the envs saves the episode under way as an mp4 (gymnasium's RecordVideo); a
    Ctrl-C removes it, so that every video left is a whole episode."""
    flags = ["--num-env-steps", "64", "--num-processes", "2", "--num-steps", "16"]
    request = resolve([*flags, *local_run_flags(tmp_path)])
    checkpoint = run(request.config, notes=request.notes).checkpoint
    videos = tmp_path / "videos"

    def interrupted_in_the_second_episode(policy, envs, episodes, on_episode, **kwargs):
        for episode in (0, 1):  # as RecordVideo leaves them: the first whole, the second cut
            (videos / f"rl-video-episode-{episode}.mp4").write_bytes(b"frames")
        on_episode(0, 10.0, 10)
        raise KeyboardInterrupt

    monkeypatch.setattr(enjoy, "run_episodes", interrupted_in_the_second_episode)
    assert enjoy.main(["--checkpoint", checkpoint, "--video-dir", str(videos), "--num-episodes", "3"]) == 130
    assert sorted(os.listdir(videos)) == ["rl-video-episode-0.mp4"]


@pytest.mark.parametrize(("stop", "code", "said"), [("ctrl-c", 130, "Ctrl-C"), ("sigterm", 143, "SIGTERM")])
def test_a_stopped_replay_keeps_the_expert_episodes_played_whole(tmp_path, monkeypatch, capsys, stop, code, said):
    """--record-trajectories: a Ctrl-C or a scheduler's SIGTERM in the third episode writes the
    two played whole (never the one under way) and exits 130 / 143 in one line (SIGTERM killed
    the replay without a word, and without the file, before)."""
    import signal

    from a2c_ppo.trajectories import load_trajectories
    from tests.helpers import sigterm_caught_by_the_test

    flags = ["--num-env-steps", "64", "--num-processes", "2", "--num-steps", "16"]
    request = resolve([*flags, *local_run_flags(tmp_path)])
    checkpoint = run(request.config, notes=request.notes).checkpoint
    play = enjoy.run_episodes

    def interrupted_in_the_third_episode(policy, envs, episodes, on_episode, **kwargs):
        def on(index: int, ret: float, length: int) -> None:
            on_episode(index, ret, length)
            if index == 1 and stop == "ctrl-c":
                raise KeyboardInterrupt
            if index == 1:
                os.kill(os.getpid(), signal.SIGTERM)

        return play(policy, envs, episodes, on_episode=on, **kwargs)

    monkeypatch.setattr(enjoy, "run_episodes", interrupted_in_the_third_episode)
    experts = str(tmp_path / "expert.npz")
    with sigterm_caught_by_the_test():
        assert enjoy.main(["--checkpoint", checkpoint, "--num-episodes", "5", "--record-trajectories", experts]) == code
    assert len(load_trajectories(experts).lengths) == 2
    said_out, said_err = capsys.readouterr()
    assert f"2 episodes of expert trajectories (2 terminated) written to {experts}" in said_out
    assert said_err.endswith(f"Stopped by {said}.\n") and "Traceback" not in said_err


def test_a_video_plays_a_network_of_ones_own_in_eval_mode(tmp_path):
    """A base with dropout is filmed deterministic, as enjoy.py plays it (the rollout's batches
    are of 2 envs, the video's of 1), and trains in train mode again after."""
    from a2c_ppo import train as train_api
    from tests.custom_nets import DropoutNet

    DropoutNet.calls.clear()
    train_api("CartPole-v1", policy_base=DropoutNet, num_processes=2, num_steps=16, num_env_steps=64,
              capture_video=True, video_interval=1, vec_env="sync", overlap="off", log_dir=str(tmp_path / "runs"),
              save_dir=str(tmp_path / "models"))  # fmt: skip
    filmed = [training for training, rows in DropoutNet.calls if rows == 1]
    assert filmed and not any(filmed)
    assert all(training for training, rows in DropoutNet.calls if rows == 32)
