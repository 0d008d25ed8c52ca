"""Every observation space: the layout (flat Dict of parts, channels-first images), what is
refused and why, the storage's per-part dtypes, the fast path stepping aside, a Dict env of
our own learning to a threshold, and every id gymnasium registers training."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from a2c_ppo.api import train
from a2c_ppo.arguments import resolve
from a2c_ppo.envs.make import make_env
from a2c_ppo.errors import ConfigError
from a2c_ppo.fastpath import fast_mlp, why_not_fast
from a2c_ppo.model import make_policy
from a2c_ppo.observations import obs_layout
from a2c_ppo.session import run
from a2c_ppo.spaces import apply_plan, plan_observations
from a2c_ppo.storage import RolloutStorage

BITS_ENV = "tests.envs_for_spaces:BitsDictEnv"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Box, Discrete, Dict, Tuple = gym.spaces.Box, gym.spaces.Discrete, gym.spaces.Dict, gym.spaces.Tuple


def test_nested_spaces_become_one_level_of_parts_keyed_by_path():
    space = Dict({"state": Dict({"velocity": Box(-1, 1, (2,)), "gear": Discrete(3)}),
                  "goals": Tuple((Box(0, 1, (1,)), gym.spaces.MultiBinary(4)))})  # fmt: skip
    plan = plan_observations(space)
    # gymnasium's Dict orders its keys; the flat layout keeps that order
    assert list(plan.space.spaces) == ["goals.0", "goals.1", "state.gear", "state.velocity"]
    obs = {"state": {"velocity": np.array([0.5, -0.5]), "gear": 2}, "goals": (np.array([0.25]), np.ones(4))}
    flat = apply_plan(plan, obs)
    assert flat["state.gear"] == 2 and flat["goals.0"][0] == 0.25 and flat["state.velocity"][1] == -0.5


def test_channels_last_images_are_transposed_once_and_said_so():
    plan = plan_observations(Box(0, 255, (96, 96, 3), np.uint8))
    assert plan.space.shape == (3, 96, 96) and "channels-last" in plan.notes[0]
    image = np.arange(96 * 96 * 3, dtype=np.uint8).reshape(96, 96, 3)
    np.testing.assert_array_equal(apply_plan(plan, image)[1], image[:, :, 1])
    assert not plan_observations(Box(0, 255, (3, 96, 96), np.uint8)).changes  # channels-first: as it is


@pytest.mark.parametrize(
    ("shape", "laid_out"),
    [
        ((64, 64, 9), (9, 64, 64)),  # 3 RGB frames stacked channels-last (pixel-based control)
        ((84, 84, 12), (12, 84, 84)),
        ((7, 7, 3), (3, 7, 7)),
        ((4, 84, 84), (4, 84, 84)),  # the Atari pipeline's stack, channels-first
        ((12, 84, 84), (12, 84, 84)),
        ((16, 8, 8), (16, 8, 8)),
    ],
)
def test_an_image_whose_last_axis_is_its_shortest_is_channels_last(shape, laid_out):
    """More than 4 channels last (a stack of RGB frames) were read as channels-first, (C=64,
    H=64, W=9): a network over the wrong axes, without a word."""
    assert plan_observations(Box(0, 255, shape, np.uint8)).space.shape == laid_out


def test_a_part_no_encoder_takes_is_refused_naming_it_by_its_key_and_the_fix():
    """The part is named by its key in the Dict, with its own space (not the Dict's, nor the
    part's space as if it were the whole observation)."""
    text = gym.spaces.Text(20)
    space = Dict({"image": Box(0, 255, (7, 7, 3), np.uint8), "mission": text})
    with pytest.raises(ConfigError) as caught:
        plan_observations(space, "--env-name 'my:env'")
    assert str(caught.value).startswith(f"--env-name 'my:env': observation part 'mission' is {text}, which no encoder ")
    assert "has observation space" not in str(caught.value)
    assert str(caught.value).endswith("Wrap the env to drop or encode part 'mission' (a gymnasium.ObservationWrapper "
                                      "that removes it, or turns it into a Discrete or a Box).")  # fmt: skip
    with pytest.raises(ConfigError, match=r"observation part 'state\.1' is Text\(1, 4"):
        plan_observations(Dict({"state": Tuple((Discrete(2), gym.spaces.Text(4)))}))


@pytest.mark.parametrize(
    "space, phrase",
    [
        (Dict({"a.b": Box(-1, 1, (2,)), "a": Dict({"b": Discrete(3)})}), "two of them become 'a.b'"),
        (Dict({"0": Box(-1, 1, (2,)), 0: Discrete(3)}), "two of them become '0'"),
        (Dict({}), "has no parts"),
        (Tuple(()), "has no parts"),
        (Dict({"empty": Tuple(())}), "has no parts"),
    ],
)
def test_parts_that_collide_or_are_missing_are_refused(space, phrase):
    with pytest.raises(ConfigError, match=phrase):
        plan_observations(space)


def test_a_run_without_masks_leaves_the_mask_part_out():
    space = Dict({"obs": Box(-1, 1, (2,)), "action_mask": gym.spaces.MultiBinary(3)})
    assert list(plan_observations(space, without_mask=True).space.spaces) == ["obs"]
    assert list(plan_observations(space).space.spaces) == ["action_mask", "obs"]
    with pytest.raises(ConfigError, match="nothing but their 'action_mask' part"):
        plan_observations(Dict({"action_mask": gym.spaces.MultiBinary(3)}), without_mask=True)


def test_storage_keeps_each_part_in_its_dtype_and_an_image_in_uint8_bytes():
    env = make_env(BITS_ENV)
    storage = RolloutStorage(128, 8, obs_layout(env.observation_space), 1, torch.long)
    image = storage.obs["image"]
    assert image.dtype == torch.uint8 and image.shape == (129, 8, 3, 6, 6)
    assert image.nelement() * image.element_size() == 129 * 8 * 3 * 6 * 6  # one byte a pixel
    assert storage.obs["discrete"].dtype == torch.int64 and storage.obs["vector"].dtype == torch.float32


def test_the_fast_path_steps_aside_for_a_dict_observation():
    policy = make_policy(make_env(BITS_ENV).observation_space, gym.spaces.MultiDiscrete([2, 2, 2]))
    assert fast_mlp(policy) is None and why_not_fast(policy)


def test_a_dict_env_with_an_image_a_vector_and_a_discrete_part_learns(tmp_path):
    """Only a policy that reads all three parts earns more than about 8.3 per episode."""
    result = train(BITS_ENV, num_env_steps=12_288, log_dir=str(tmp_path / "runs"), save_dir=str(tmp_path / "m"))
    assert result.history[-1][1] >= 9.5, result.history[-5:]


def test_discrete_parts_are_one_hot_from_their_start():
    from a2c_ppo.encoders import part_encoder

    single = part_encoder(Discrete(4, start=5))(torch.tensor([5, 8]))
    torch.testing.assert_close(single, torch.eye(4)[[0, 3]])
    multi = part_encoder(gym.spaces.MultiDiscrete([3, 2], start=[-1, 4]))(torch.tensor([[-1, 5], [1, 4]]))
    torch.testing.assert_close(multi, torch.tensor([[1.0, 0, 0, 0, 1], [0, 0, 1, 1, 0]]))
    assert "start" not in part_encoder(Discrete(4, start=5)).state_dict()  # checkpoints keep their keys


def test_an_observation_whose_classes_start_above_zero_learns(tmp_path):
    """Classes 5..8, their parity the paying action: only a policy that tells them apart
    earns more than about 5 of 10 per episode."""
    result = train("tests.envs_for_spaces:ShiftedClassEnv", num_env_steps=8_192, log_dir=str(tmp_path / "runs"),
                   save_dir=str(tmp_path / "m"))  # fmt: skip
    assert result.history[-1][1] >= 9.0, result.history[-5:]


def test_a_class_outside_the_observation_space_is_an_env_failure(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), "--env-name", "tests.envs_for_spaces:ShiftedClassEnv",
         "--env-kwargs", '{"outside": true}', "--num-processes", "2", "--num-steps", "16", "--num-env-steps", "64",
         "--num-mini-batch", "1", "--log-dir", str(tmp_path / "r"), "--save-dir", str(tmp_path / "m")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "env 0 returned observation 9, outside its space's classes 5..8" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


#: Registered ids the [all] extras cannot build: jax-only ids, the old-gym compatibility
#: shims, and MuJoCo versions that need mujoco-py (v2, v3) or mujoco < 3 (Pusher-v4).
UNBUILDABLE = ("phys2d/", "tabular/", "GymV21", "GymV26", "Pusher-v4")


def registered_ids() -> list[str]:
    """Every id gymnasium itself registers that the [all] extras build, and one Atari game
    (ale-py registers a thousand more once imported, and other packages their own)."""
    ids = [env_id for env_id, spec in gym.registry.items()
           if str(spec.entry_point).startswith("gymnasium.envs.") and not env_id.startswith(UNBUILDABLE)]  # fmt: skip
    return [env_id for env_id in ids if not env_id.endswith(("-v2", "-v3")) or "mujoco" not in
            str(gym.registry[env_id].entry_point)] + ["ALE/Pong-v5"]  # fmt: skip


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the v4 MuJoCo ids and CartPole-v0 say they are old
@pytest.mark.parametrize("env_id", registered_ids())
def test_every_registered_id_trains(tmp_path, env_id):
    argv = ["--env-name", env_id, "--num-processes", "2", "--num-steps", "32", "--num-env-steps", "64",
            "--num-mini-batch", "1", "--vec-env", "sync", "--log-dir", str(tmp_path / "r"),
            "--save-dir", str(tmp_path / "m")]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        result = run(resolve(argv).config)
    assert result.env_steps == 64 and os.path.isfile(result.checkpoint)
