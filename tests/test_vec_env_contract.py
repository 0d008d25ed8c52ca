"""SubprocVecEnv keeps gymnasium's VectorEnv contract as SyncVectorEnv / AsyncVectorEnv do."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ClosedEnvironmentError
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from a2c_ppo.envs.subproc import EnvWorkerError, SubprocVecEnv
from a2c_ppo.envs.torch_env import EnvActionConverter
from tests.envs_for_tests import ActionEchoEnv, BadObsEnv, BadRewardEnv, CounterEnv, NoInfoEnv, StrictActionEnv

ROOT = Path(__file__).resolve().parents[1]


def sync(fns):
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


def test_np_random_seed_and_generators_as_sync_gives_them():
    fns = [CounterEnv] * 4
    ours, theirs = SubprocVecEnv(fns, num_workers=2, in_main=1), sync(fns)
    try:
        for envs in (ours, theirs):
            envs.reset(seed=42)
        assert ours.np_random_seed == theirs.np_random_seed == (42, 43, 44, 45)
        for a, b in zip(ours.np_random, theirs.np_random):
            assert a.bit_generator.state == b.bit_generator.state
        ours.reset(seed=[7, None, 9, 10])
        assert ours.np_random_seed[0] == 7 and ours.np_random_seed[2:] == (9, 10)
    finally:
        ours.close()
        theirs.close()


BOX2 = partial(ActionEchoEnv, gym.spaces.Box(-1.0, 1.0, (2,), np.float32))


@pytest.mark.parametrize(
    "fn,actions",
    [
        (CounterEnv, np.zeros((3, 1), np.int64)),  # Discrete: (N, 1) is not (N,)
        (CounterEnv, np.zeros(4, np.int64)),  # one action too many
        (CounterEnv, np.zeros(2, np.int64)),  # one too few
        (BOX2, np.zeros(3, np.float32)),  # Box(2,): (N,) is not (N, 2)
        (BOX2, np.zeros((3, 3), np.float32)),
        (BOX2, np.zeros(6, np.float32)),  # the right size, the wrong shape: no silent reshape
    ],
    ids=["discrete-column", "too-many", "too-few", "box-flat", "box-wide", "box-reshapeable"],
)
def test_wrong_action_shape_raises_as_sync_does(fn, actions):
    theirs = sync([fn] * 3)
    theirs.reset(seed=0)
    with pytest.raises((TypeError, ValueError)):
        theirs.step(actions)
    theirs.close()
    ours = SubprocVecEnv([fn] * 3, num_workers=1, in_main=1)
    try:
        ours.reset(seed=0)
        with pytest.raises(ValueError, match=r"actions of shape .* expected"):
            ours.step(actions)
        ours.step(ours.action_space.sample())  # refused before any env stepped: still usable
    finally:
        ours.close()


@pytest.mark.parametrize("bad", [0.5, np.zeros(1, np.float32)], ids=["scalar", "shape-1"])
@pytest.mark.parametrize("in_main", [0, 1])
def test_observation_of_the_wrong_shape_names_the_env(bad, in_main):
    envs = SubprocVecEnv([CounterEnv, partial(BadObsEnv, bad)], num_workers=1, in_main=in_main)
    envs.reset(seed=0)
    with pytest.raises(EnvWorkerError, match=r"env 1 .*observation of shape .* has shape \(3,\)") as info:
        envs.step(np.zeros(2, np.int64))
    assert info.value.env_index == 1
    assert envs.closed


@pytest.mark.parametrize("in_main", [0, 1])
def test_a_reward_that_is_no_number_names_the_env_and_the_reward(in_main):
    envs = SubprocVecEnv([CounterEnv, BadRewardEnv], num_workers=1, in_main=in_main)
    envs.reset(seed=0)
    with pytest.raises(EnvWorkerError, match=r"env 1 returned the reward array\(\[.*\]\); a step's reward is one"):
        envs.step(np.zeros(2, np.int64))


@pytest.mark.parametrize("where, phase", [("step", "step"), ("autoreset", "reset")])
@pytest.mark.parametrize("in_main", [0, 1])
def test_an_info_that_is_no_dict_names_the_env(where, phase, in_main):
    envs = SubprocVecEnv([CounterEnv, partial(NoInfoEnv, where)], num_workers=1, in_main=in_main)
    envs.reset(seed=0)
    with pytest.raises(EnvWorkerError, match=rf"env 1 returned the info None from {phase}; an env's info is a dict"):
        for _ in range(3):
            envs.step(np.zeros(2, np.int64))


@pytest.mark.parametrize("kind", ["ours", "async"])
def test_calls_after_close_raise_closed_environment_error(kind):
    fns = [CounterEnv] * 2
    envs = SubprocVecEnv(fns, num_workers=1, in_main=1) if kind == "ours" else AsyncVectorEnv(fns)
    envs.reset(seed=0)
    envs.close()
    for call in (
        lambda: envs.step(np.zeros(2, np.int64)),
        lambda: envs.reset(seed=0),
        lambda: envs.call("describe", "x"),
        lambda: envs.get_attr("tag"),
        lambda: envs.set_attr("tag", "x"),
    ):
        with pytest.raises(ClosedEnvironmentError):
            call()


@pytest.mark.parametrize(
    "space",
    [gym.spaces.Discrete(3, start=-1), gym.spaces.MultiDiscrete([3, 2], start=[5, -2]), gym.spaces.Discrete(4)],
    ids=["discrete-start", "multidiscrete-start", "discrete"],
)
def test_policy_actions_get_the_space_start(space):
    # What a categorical policy samples: 0-based indices, (N, 1) or (N, k).
    width = 1 if isinstance(space, gym.spaces.Discrete) else len(space.nvec)
    high = space.n if isinstance(space, gym.spaces.Discrete) else space.nvec
    policy = np.stack([np.zeros(width), np.broadcast_to(np.asarray(high) - 1, (width,))]).astype(np.int64)
    actions = EnvActionConverter(space)(torch.from_numpy(policy))
    start = np.asarray(space.start)
    np.testing.assert_array_equal(actions.reshape(2, width), policy + start)
    for envs in (sync([partial(StrictActionEnv, space)] * 2), SubprocVecEnv([partial(StrictActionEnv, space)] * 2, 1)):
        envs.reset(seed=0)
        obs, *_ = envs.step(actions)  # the env refuses anything outside its space
        np.testing.assert_array_equal(obs[:, :width], (policy + start).astype(np.float32))
        envs.close()
    assert EnvActionConverter(gym.spaces.Box(-1, 1, (2,)))(torch.zeros(3, 2, dtype=torch.float64)).dtype == np.float32


_NO_GUARD = textwrap.dedent(
    """
    from a2c_ppo.envs.subproc import SubprocVecEnv
    from tests.envs_for_tests import CounterEnv

    envs = SubprocVecEnv([CounterEnv, CounterEnv], num_workers=1, in_main=0)
    envs.close()
    """
)


def test_script_without_main_guard_is_told_to_add_it(tmp_path):
    script = tmp_path / "train_at_module_level.py"
    script.write_text(_NO_GUARD)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode != 0
    assert "while creating the envs" in proc.stderr and 'if __name__ == "__main__":' in proc.stderr
