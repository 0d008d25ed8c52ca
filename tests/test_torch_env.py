"""TorchVecEnv: action offsets, what a step hands back, the NaN guard."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import RecordEpisodeStatistics

from a2c_ppo.envs.make import make_vec_envs
from a2c_ppo.envs.normalize import VecNormalize
from a2c_ppo.envs.torch_env import EnvActionConverter, TorchVecEnv
from a2c_ppo.errors import NonFiniteError
from tests.envs_for_rollout import BadValueEnv, ScriptedEnv
from tests.envs_for_tests import StrictActionEnv
from tests.vec_env_checks import assert_same


def sync(fns) -> SyncVectorEnv:
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


def scripted(num_envs: int) -> SyncVectorEnv:
    return sync([lambda i=i: RecordEpisodeStatistics(ScriptedEnv(i)) for i in range(num_envs)])


@pytest.mark.parametrize(
    "space, policy_actions, env_actions",
    [
        (gym.spaces.Discrete(3, start=-1), [[0], [2]], [[-1, -1], [1, 1]]),
        (gym.spaces.Discrete(3), [[0], [2]], [[0, 0], [2, 2]]),
        (gym.spaces.MultiDiscrete([3, 4], start=[1, -2]), [[0, 3], [2, 0]], [[1, 1], [3, -2]]),
        (gym.spaces.MultiBinary(2), [[1.0, 0.0], [0.0, 1.0]], [[1, 0], [0, 1]]),
        (gym.spaces.Box(-1, 1, (2,), np.float32), [[0.5, -0.25], [1.0, 0.0]], [[0.5, -0.25], [1.0, 0.0]]),
    ],
)
def test_the_env_gets_the_policy_actions_shifted_by_the_space_start(space, policy_actions, env_actions):
    envs = TorchVecEnv(sync([lambda: StrictActionEnv(space)] * 2))  # it refuses actions outside the space
    envs.reset(seed=0)
    dtype = torch.float32 if isinstance(space, (gym.spaces.Box, gym.spaces.MultiBinary)) else torch.long
    out = envs.step(torch.tensor(policy_actions, dtype=dtype))
    np.testing.assert_array_equal(out.obs.numpy(), np.asarray(env_actions, np.float32))
    envs.close()


def test_actions_reach_the_env_without_a_copy_where_the_dtype_fits():
    box = torch.rand(4, 3)
    converted = EnvActionConverter(gym.spaces.Box(-1, 1, (3,), np.float32))(box)
    assert np.shares_memory(converted, box.numpy())
    discrete = torch.tensor([[1], [0]])
    converted = EnvActionConverter(gym.spaces.Discrete(2))(discrete)
    assert converted.shape == (2,) and np.shares_memory(converted, discrete.numpy())
    shifted = EnvActionConverter(gym.spaces.Discrete(2, start=5))(discrete)
    np.testing.assert_array_equal(shifted, [6, 5])
    np.testing.assert_array_equal(discrete.numpy()[:, 0], [1, 0])  # the policy's tensor is untouched


def test_step_result_matches_the_vector_env():
    """Flags, rewards, final observations and episodes against the raw SyncVectorEnv, over
    several episode ends (env 0 truncates every 3 steps, env 1 terminates every 4, env 2
    truncates every 5)."""
    raw, envs = scripted(3), TorchVecEnv(scripted(3))
    raw_obs, _ = raw.reset(seed=7)
    obs = envs.reset(seed=7)
    assert obs.dtype == torch.float32  # float64 observations become float32
    np.testing.assert_allclose(obs.numpy(), raw_obs.astype(np.float32))
    actions = np.array([1, 0, 1])
    truncations = terminations = 0
    for _ in range(12):
        raw_obs, raw_reward, raw_term, raw_trunc, infos = raw.step(actions)
        out = envs.step(torch.from_numpy(actions).view(-1, 1))
        np.testing.assert_allclose(out.obs.numpy(), raw_obs.astype(np.float32))
        assert out.reward.shape == (3, 1) and out.reward.dtype == torch.float32
        np.testing.assert_array_equal(out.reward.numpy()[:, 0], raw_reward)
        np.testing.assert_array_equal(out.terminated.numpy()[:, 0], raw_term)
        np.testing.assert_array_equal(out.truncated.numpy()[:, 0], raw_trunc & ~raw_term)
        idx = np.flatnonzero(raw_trunc & ~raw_term)
        np.testing.assert_array_equal(out.truncated_idx.numpy(), idx)
        assert out.final_obs.shape == (len(idx), 3)
        for row, i in enumerate(idx):
            np.testing.assert_allclose(out.final_obs[row].numpy(), infos["final_obs"][i].astype(np.float32))
            assert out.final_obs[row, 0] == 3 + i  # the true last observation, not the reset one
        ended = np.flatnonzero(raw_term | raw_trunc)
        assert [e[0] for e in out.episodes] == list(ended)
        assert all(length == 3 + i for i, _, length in out.episodes)
        truncations += len(idx)
        terminations += int(raw_term.sum())
    assert truncations == 4 + 2 and terminations == 3
    envs.close()
    raw.close()


@pytest.mark.parametrize("what", ["observation", "reward"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_observation_or_reward_names_the_quantity_and_the_env(what, value):
    envs = TorchVecEnv(sync([BadValueEnv, lambda: BadValueEnv(what, at=2, value=value), BadValueEnv]))
    envs.reset(seed=0)
    envs.step(torch.zeros(3, 1, dtype=torch.long))  # step 1 is fine
    with pytest.raises(NonFiniteError, match=f"env 1 returned a non-finite {what}") as raised:
        envs.step(torch.zeros(3, 1, dtype=torch.long))
    assert "np.float" not in str(raised.value) and str(value) in str(raised.value)  # the value as Python shows it
    envs.close()


def test_a_reward_beyond_float32s_range_names_the_env_and_the_value():
    """1e300 is finite as the env's float64, infinite as the float32 the agent trains on: it was
    reported later as "the policy loss is not finite"."""
    what = "reward"
    envs = TorchVecEnv(sync([BadValueEnv, lambda: BadValueEnv(what, at=2, value=1e300), BadValueEnv]))
    envs.reset(seed=0)
    envs.step(torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(NonFiniteError, match=f"env 1 returned a {what} beyond float32's range") as raised:
        envs.step(torch.zeros(3, 1, dtype=torch.long))
    assert "1e+300" in str(raised.value)
    envs.close()


class _Float64Env(gym.Env):
    """Float64 observations (3,), ``[0, 1e39, 0]`` at step 2: finite as float64, not as float32;
    ``dict_obs``: as the part ``x`` of a Dict with a Discrete part ``k``."""

    action_space = gym.spaces.Discrete(2)

    def __init__(self, dict_obs: bool = False) -> None:
        box = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
        self.dict_obs = dict_obs
        self.observation_space = gym.spaces.Dict({"x": box, "k": gym.spaces.Discrete(3)}) if dict_obs else box

    def _obs(self) -> object:
        x = np.array([0.0, 1e39 if self.t == 2 else 1.0, 0.0])
        return {"x": x, "k": 1} if self.dict_obs else x

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, False, False, {}


@pytest.mark.parametrize("dict_obs", [False, True])
def test_an_observation_beyond_float32s_range_names_the_part_the_env_and_the_value(dict_obs):
    """A Dict's part was checked as the env's float64 and passed, then cast to an infinity: the
    run stopped later with "the policy loss is not finite". A Box's was named, below numpy's
    "overflow encountered in cast" warning."""
    envs = TorchVecEnv(
        sync([_Float64Env, lambda: _Float64Env(dict_obs)] if not dict_obs else [lambda: _Float64Env(True)] * 2)
    )
    envs.reset(seed=0)
    envs.step(torch.zeros(2, 1, dtype=torch.long))
    what = "observation part 'x'" if dict_obs else "observation"
    with warnings.catch_warnings(record=True) as caught, pytest.raises(NonFiniteError) as raised:
        envs.step(torch.zeros(2, 1, dtype=torch.long))
    assert f"returned an {what} beyond float32's range ([0.0, 1e+39, 0.0])" in str(raised.value)
    assert not [w for w in caught if "overflow" in str(w.message)]
    envs.close()


def test_a_large_but_finite_observation_is_not_an_error():
    envs = TorchVecEnv(sync([lambda: BadValueEnv("observation", at=1, value=3e38)] * 2))
    envs.reset(seed=0)
    with warnings.catch_warnings(record=True) as caught:
        out = envs.step(torch.zeros(2, 1, dtype=torch.long))  # the sum overflows, each value is finite
    assert not caught  # numpy's "overflow encountered in reduce" printed for nothing
    assert out.obs[0, 1] == pytest.approx(3e38)
    envs.close()


@pytest.mark.parametrize("what", ["observation", "reward"])
def test_behind_vec_normalize_the_guard_names_the_env_and_keeps_the_statistics_clean(what):
    """Normalised, one env's NaN would spread to every env's values; the raw check names it."""
    fns = [BadValueEnv, lambda: BadValueEnv(what, at=2), BadValueEnv]
    norm = VecNormalize(sync(fns), norm_obs=True, norm_reward=True)
    envs = TorchVecEnv(norm)
    envs.reset(seed=0)
    envs.step(torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(NonFiniteError, match=f"env 1 returned a non-finite {what}"):
        envs.step(torch.zeros(3, 1, dtype=torch.long))
    assert np.isfinite(norm.obs_rms.mean).all() and np.isfinite(norm.ret_rms.var)
    envs.close()


@pytest.mark.parametrize("vec_env", ["sync", "subproc"])
def test_without_step_infos_training_sees_the_same_steps_and_the_vector_env_no_other_infos(vec_env):
    """``build_envs``' envs (``step_infos=False``), in the main process and in a worker: the
    same StepResults as with every info (final observations of truncations, episode
    statistics), whole steps and halves stepped split-phase; ``{}`` where no episode ended."""
    env_id, actions = "tests.envs_for_tests:counter_with_step_infos", torch.tensor([[1], [2], [0], [1]])
    full, lean = (make_vec_envs(env_id, 4, vec_env=vec_env, step_infos=keep) for keep in (True, False))
    full_t, lean_t = TorchVecEnv(full), TorchVecEnv(lean)
    assert torch.equal(full_t.reset(seed=5), lean_t.reset(seed=5))
    truncations = ends = 0
    for step in range(40):
        if step % 2:  # split-phase, as the overlapped rollout steps two halves
            for half in (slice(0, 2), slice(2, 4)):
                full_t.step_async(actions[half], half)
                lean_t.step_async(actions[half], half)
                assert_same(full_t.step_wait(half), lean_t.step_wait(half), f"step {step} {half}")
            continue
        full_result, lean_result = full_t.step(actions), lean_t.step(actions)
        assert_same(full_result, lean_result, f"step {step}")
        truncations += len(lean_result.truncated_idx)
        ends += len(lean_result.episodes)
    assert truncations > 3 and ends > 6  # ends of both kinds were compared

    quiet = 0
    for _ in range(20):  # the vector infos themselves
        *_, full_infos = full.step(actions.numpy()[:, 0])
        *_, terminated, truncated, lean_infos = lean.step(actions.numpy()[:, 0])
        assert "x" in full_infos and "x" not in lean_infos  # an ended env's info is in final_info
        if not (terminated | truncated).any():
            assert lean_infos == {}
            quiet += 1
    assert quiet > 3
    full_t.close()
    lean_t.close()


def test_a_large_non_finite_observation_is_shown_abbreviated():
    from a2c_ppo.envs.finite import check_finite

    frames = np.zeros((2, 4, 84, 84), np.float32)
    frames[1, 0, 0, 0] = np.nan
    with pytest.raises(NonFiniteError, match="env 1 returned a non-finite observation") as raised:
        check_finite(frames, "observation")
    assert "nan" in str(raised.value) and len(str(raised.value)) < 400  # not 28,224 numbers
