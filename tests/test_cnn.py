"""The Nature CNN base: shapes, scaling, initialisation, space checks, end-to-end training."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from a2c_ppo.arguments import parse_args
from a2c_ppo.checkpoint import load_checkpoint
from a2c_ppo.model import CNNBase, MLPBase, MultiInputBase, Policy, default_base
from a2c_ppo.session import run
from tests.helpers import local_run_flags, progress_rows, run_main

ATARI_OBS = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)


def test_default_base_picks_the_cnn_for_images_and_the_mlp_for_vectors():
    cnn = default_base(ATARI_OBS, {})
    assert isinstance(cnn, CNNBase) and cnn.output_size == 512 and not cnn.is_recurrent
    assert isinstance(default_base(gym.spaces.Box(-1, 1, (4,), np.float32), {}), MLPBase)
    recurrent = default_base(ATARI_OBS, {"recurrent": True, "rnn_type": "lstm", "hidden_size": 256})
    assert recurrent.recurrent_hidden_state_size == 512 and recurrent.output_size == 256


def test_nature_trunk_layers_and_shapes():
    base = CNNBase((4, 84, 84))
    convs = [m for m in base.main if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (8, 8), (4, 4)),
        (64, (4, 4), (2, 2)),
        (64, (3, 3), (1, 1)),
    ]
    linear = [m for m in base.main if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(64 * 7 * 7, 512)]
    policy = Policy(ATARI_OBS, gym.spaces.Discrete(6))
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    value, action, log_prob, hxs = policy.act(obs, torch.zeros(3, 1), torch.ones(3, 1))
    assert value.shape == (3, 1) and action.shape == (3, 1) and log_prob.shape == (3, 1) and hxs.shape == (3, 1)


def test_uint8_frames_are_scaled_inside_the_model():
    base = CNNBase((4, 36, 36))
    frames = torch.randint(0, 256, (2, 4, 36, 36), dtype=torch.uint8)
    unscaled = CNNBase((4, 36, 36), scale=1.0)
    unscaled.load_state_dict(base.state_dict())
    with torch.no_grad():
        a = base(frames, torch.zeros(2, 1), torch.ones(2, 1))
        b = unscaled(frames.float() / 255.0, torch.zeros(2, 1), torch.ones(2, 1))
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)
    # A float image space is not rescaled.
    assert default_base(gym.spaces.Box(0.0, 1.0, (1, 40, 40), np.float32), {}).scale == 1.0


@pytest.mark.parametrize(("dtype", "high"), [(np.uint8, 255), (np.int16, 255), (np.int32, 1000), (np.uint8, 1)])
def test_integer_images_reach_the_nature_cnn_scaled_to_one_as_in_a_dict(dtype, high):
    """Frames of 0..high, whatever their integer type, reach the first convolution as 0..1, as
    the image part of a Dict observation does (before, only uint8 frames were scaled, by 1/255)."""
    space = gym.spaces.Box(0, high, (1, 40, 40), dtype)
    in_dict = default_base(gym.spaces.Dict({"image": space}), {})
    assert isinstance(in_dict, MultiInputBase)
    assert default_base(space, {}).scale == in_dict.encoder.parts[0].scale == 1.0 / high


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_an_integer_image_declared_unbounded_reaches_the_cnn_unscaled(dtype):
    """gymnasium keeps an integer Box's ``high`` of ``np.inf`` as the dtype's maximum: scaled by
    its inverse (4.7e-10 for int32, 1.1e-19 for int64) every pixel reached the CNN as about 0."""
    space = gym.spaces.Box(0, np.inf, (1, 40, 40), dtype)
    in_dict = default_base(gym.spaces.Dict({"image": space}), {})
    assert default_base(space, {}).scale == in_dict.encoder.parts[0].scale == 1.0


def test_orthogonal_init_with_relu_gain_and_unit_critic_gain():
    base = CNNBase((4, 84, 84))
    for module in base.main:
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            w = module.weight.reshape(module.weight.shape[0], -1)
            # rows are orthogonal with norm sqrt(2) (fewer rows than columns in every layer)
            torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(w.shape[0]), atol=1e-4, rtol=0)
            assert torch.all(module.bias == 0)
    w = base.critic_linear.weight
    assert math.isclose(w.norm().item(), 1.0, rel_tol=1e-5)


def test_a_channels_last_image_given_to_the_model_is_explained():
    with pytest.raises(ValueError, match="channels-last"):
        default_base(gym.spaces.Box(0, 255, (84, 84, 3), np.uint8), {})
    with pytest.raises(ValueError, match="at least 36x36"):
        CNNBase((4, 32, 32))


@pytest.mark.parametrize("shape", [(4, 32, 32), (3, 7, 7), (2, 3, 3), (4, 84)])
def test_small_images_and_other_shapes_get_a_small_cnn_or_a_flatten(shape):
    base = default_base(gym.spaces.Box(0, 255, shape, np.uint8), {})
    assert isinstance(base, MultiInputBase)
    convs = [m for m in base.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == (3 if len(shape) == 3 and min(shape[1:]) >= 4 else 0)
    value, features, _ = base(torch.randint(0, 255, (5, *shape), dtype=torch.uint8), torch.zeros(5, 1), None)
    assert value.shape == (5, 1) and features.shape == (5, 64)


@pytest.mark.parametrize(
    "extra", [[], ["--recurrent-policy", "--recurrent-chunk-length", "4", "--num-mini-batch", "4"]]
)
def test_cnn_policy_trains_end_to_end_on_a_small_image_env(tmp_path, extra):
    flags = (
        "--env-name a2c_ppo.envs.memory_envs:make_image_target --num-processes 2 --num-steps 8 --num-env-steps 32 "
        "--ppo-epoch 2 --num-mini-batch 2 --log-interval 1"
    )
    argv = [*flags.split(), *local_run_flags(tmp_path), *extra]
    args = parse_args(argv)
    result = run(args)
    assert result.env_steps == 32
    checkpoint = load_checkpoint(result.checkpoint)
    assert checkpoint["spaces"]["observation"]["shape"] == [4, 48, 48]
    assert any(key.startswith("base.main.") for key in checkpoint["model"])
    assert ("base.rnn.weight_hh_l0" in checkpoint["model"]) == bool(extra)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cnn_policy_learns_the_image_target_task(tmp_path, precision):
    """Name the half of the 48x48 frame with the bright patch, 8 steps an episode: chance
    returns 4 (an untrained deterministic policy about 4 too), a solved task 8. Seeds 1-3
    evaluate at 8.0 after these 2048 steps (5-15 s on one busy core), in float32 and in bf16."""
    flags = (
        "--env-name a2c_ppo.envs.memory_envs:make_image_target --num-processes 4 --num-steps 32 --num-mini-batch 4 "
        "--ppo-epoch 4 --hidden-size 64 --num-env-steps 2048 --eval-interval 16 --eval-episodes 16 --log-interval 1000"
    )
    out = run_main(*flags.split(), "--precision", precision, *local_run_flags(tmp_path))
    assert f"Precision {precision} (set: typed" in out
    assert float(progress_rows(tmp_path / "runs")[-1]["eval/mean_return"]) >= 7.0


@pytest.mark.parametrize("shape", [(1, 40, 40), (2, 6, 6)])  # the Nature CNN, the small one (a Dict part)
@pytest.mark.parametrize(
    ("dtype", "stored"), [(np.int16, torch.int16), (np.int8, torch.int8), (np.uint16, torch.float32)]
)
def test_integer_images_are_stored_in_their_own_dtype_and_reach_the_network_as_before(shape, dtype, stored):
    """An int16 image was stored as float32 (twice its memory; int8: four times): it keeps its
    dtype in storage and is converted at the network's input, as uint8 frames are, into the
    same numbers. uint16 stays float32 (exact): CUDA cannot index uint16 tensors."""
    from a2c_ppo.observations import TensorDict, obs_from_numpy, obs_layout
    from a2c_ppo.storage import RolloutStorage

    image = gym.spaces.Box(0, 100, shape, dtype)
    space = image if shape[1] >= 36 else gym.spaces.Dict({"image": image, "vector": gym.spaces.Box(-1, 1, (3,))})
    storage = RolloutStorage(4, 2, obs_layout(space), 1, torch.long)
    frames = image.sample()[None].repeat(2, axis=0)
    raw = frames if space is image else {"image": frames, "vector": np.zeros((2, 3), np.float32)}
    obs = obs_from_numpy(raw, space)
    copy = storage.obs[1] if space is image else storage.obs[1]["image"]
    copy.copy_(obs if space is image else obs["image"])
    assert copy.dtype == stored and np.array_equal(copy.numpy(), frames)
    torch.manual_seed(0)
    policy = Policy(space, gym.spaces.Discrete(3))
    as_floats = obs.float() if isinstance(obs, torch.Tensor) else TensorDict({k: v.float() for k, v in obs.items()})
    with torch.no_grad():
        for ours, floats in zip(policy.base(obs, torch.zeros(2, 1), torch.ones(2, 1)),
                                policy.base(as_floats, torch.zeros(2, 1), torch.ones(2, 1))):  # fmt: skip
            assert torch.equal(ours, floats)
