"""RunningMeanStd and VecNormalize against numpy computations of the same quantities."""

from __future__ import annotations

import json
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from a2c_ppo.envs.normalize import VecNormalize
from a2c_ppo.envs.running_stats import RunningMeanStd
from tests.envs_for_tests import ConstantEnv

EPS_COUNT = 1e-4  # RunningMeanStd's prior count (mean 0, var 1)
EPS = 1e-8  # VecNormalize's epsilon under the square root


def pooled(batches: list[np.ndarray], shape=()) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance of all rows of ``batches`` plus the prior pseudo-sample."""
    data = np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1, *shape) for b in batches])
    total = EPS_COUNT + len(data)
    mean = data.sum(axis=0) / total
    m2 = EPS_COUNT * (1.0 + mean**2) + ((data - mean) ** 2).sum(axis=0)
    return mean, m2 / total


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    rms = RunningMeanStd((3,))
    batches = [rng.normal(loc=5.0, scale=[1.0, 2.0, 10.0], size=(n, 3)) for n in (1, 7, 64, 3, 200)]
    for b in batches:
        rms.update(b)
    mean, var = pooled(batches, (3,))
    np.testing.assert_allclose(rms.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(rms.var, var, rtol=1e-12)
    data = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, data.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(rms.var, data.var(axis=0), rtol=1e-4)
    assert rms.count == pytest.approx(len(data) + EPS_COUNT)
    rms.update(np.zeros((0, 3)))  # an empty batch changes nothing
    np.testing.assert_allclose(rms.mean, mean, rtol=1e-12)
    scalar = RunningMeanStd(())
    for b in batches:
        scalar.update(b[:, 0])
    np.testing.assert_allclose(scalar.var, pooled([b[:, 0] for b in batches])[1], rtol=1e-12)


def make_envs(bases=(0.0, 10.0), length=5, reward_scales=(1.0, 3.0)):
    fns = [partial(ConstantEnv, base=b, length=length, reward_scale=s) for b, s in zip(bases, reward_scales)]
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


def raw_obs(base: float, t: int) -> np.ndarray:
    return np.array([base + t, base - 2.0 * t])


def test_vec_normalize_obs_returns_and_final_obs():
    bases, scales, length, gamma = (0.0, 10.0), (1.0, 3.0), 5, 0.9
    envs = VecNormalize(make_envs(bases, length, scales), gamma=gamma)
    seen = []
    obs, _ = envs.reset(seed=0)
    seen.append(np.stack([raw_obs(b, 0) for b in bases]))
    mean, var = pooled(seen, (2,))
    np.testing.assert_allclose(obs, (seen[-1] - mean) / np.sqrt(var + EPS), rtol=1e-5)

    returns, all_returns = np.zeros(2), []
    for step in range(1, 13):
        t = (step - 1) % length + 1  # the env's step counter before autoreset
        obs, reward, terminated, truncated, info = envs.step(np.zeros((2, 1), np.float32))
        done = t == length
        assert truncated.tolist() == [done, done] and not terminated.any()
        raw = np.stack([raw_obs(b, 0 if done else t) for b in bases])
        seen.append(raw)
        mean, var = pooled(seen, (2,))
        np.testing.assert_allclose(obs, np.clip((raw - mean) / np.sqrt(var + EPS), -10, 10), rtol=1e-5, atol=1e-6)
        assert obs.dtype == np.float32

        raw_reward = np.array(scales) * t
        returns = returns * gamma + raw_reward
        all_returns.append(returns.copy())
        ret_var = pooled(all_returns)[1]
        np.testing.assert_allclose(reward, np.clip(raw_reward / np.sqrt(ret_var + EPS), -10, 10), rtol=1e-5)
        if done:
            returns[:] = 0.0  # a new episode's discounted return starts from zero
            assert info["_final_obs"].all()
            final = np.stack([raw_obs(b, length) for b in bases])
            expected = np.clip((final - mean) / np.sqrt(var + EPS), -10, 10)
            for i in range(2):  # normalised with the same statistics as this step's obs
                np.testing.assert_allclose(info["final_obs"][i], expected[i], rtol=1e-5, atol=1e-6)
        else:
            assert "final_obs" not in info
    envs.close()


def stepped_normalizer(steps: int) -> VecNormalize:
    """A training-mode VecNormalize over make_envs(), reset and stepped ``steps`` times."""
    envs = VecNormalize(make_envs(), gamma=0.99)
    envs.reset(seed=0)
    for _ in range(steps):
        envs.step(np.zeros((2, 1), np.float32))
    return envs


def test_clip_and_eval_freezes_statistics():
    envs = stepped_normalizer(7)
    envs.eval()

    def statistics():  # the running returns move in eval mode too; the statistics must not
        return json.dumps({key: value for key, value in envs.state_dict().items() if key != "returns"})

    frozen = statistics()
    for _ in range(4):
        obs, reward, *_ = envs.step(np.zeros((2, 1), np.float32))
    envs.reset(seed=1)
    assert statistics() == frozen  # nothing updated in eval mode
    # Clipping at 10: outliers of the frozen statistics.
    envs.obs_rms.mean[:] = 0.0
    envs.obs_rms.var[:] = 1.0
    np.testing.assert_array_equal(
        envs.normalize_obs(np.array([[100.0, -100.0], [0.5, -0.5]])), [[10, -10], [0.5, -0.5]]
    )
    envs.ret_rms.var = np.float64(1e-4)  # std 0.01: every reward >= 0.1 clips
    _, reward, *_ = envs.step(np.zeros((2, 1), np.float32))
    np.testing.assert_array_equal(reward, [10.0, 10.0])
    envs.train()
    before = envs.obs_rms.count
    envs.step(np.zeros((2, 1), np.float32))
    assert envs.obs_rms.count == before + 2  # training mode updates again
    envs.close()


def test_state_dict_round_trip():
    envs = stepped_normalizer(9)
    state = json.loads(json.dumps(envs.state_dict()))  # plain data, as checkpoints store it
    fresh = VecNormalize(make_envs(), gamma=0.99)
    fresh.load_state_dict(state)
    for a, b in ((envs.obs_rms, fresh.obs_rms), (envs.ret_rms, fresh.ret_rms)):
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.var, b.var)
        assert a.count == b.count
    probe = np.array([[3.0, -4.0], [12.0, 1.0]])
    np.testing.assert_array_equal(envs.normalize_obs(probe), fresh.normalize_obs(probe))
    envs.close()
    fresh.close()


def test_flags_turn_parts_off():
    envs = VecNormalize(make_envs(), norm_obs=False, norm_reward=True)
    obs, _ = envs.reset(seed=0)
    np.testing.assert_array_equal(obs, [[0.0, 0.0], [10.0, 10.0]])  # raw observations
    envs.close()
    envs = VecNormalize(make_envs(), norm_obs=True, norm_reward=False)
    envs.reset(seed=0)
    _, reward, *_ = envs.step(np.zeros((2, 1), np.float32))
    np.testing.assert_array_equal(reward, [1.0, 3.0])  # raw rewards
    envs.close()


def test_normalized_subproc_obs_are_not_views_of_the_shared_buffer():
    from a2c_ppo.envs import make_vec_envs

    envs = make_vec_envs("Pendulum-v1", 2, norm_obs=True, norm_reward=False, vec_env="subproc", num_workers=1)
    envs.reset(seed=0)
    first, *_ = envs.step(np.ones((2, 1), np.float32))
    kept = first.copy()
    envs.step(-np.ones((2, 1), np.float32))
    np.testing.assert_array_equal(first, kept)
    envs.close()


def test_state_dict_carries_running_returns_for_an_exact_continuation():
    envs = stepped_normalizer(3)  # mid-episode (length 5): rewards so far 1, 2, 3 (x3 for env 1)
    state = json.loads(json.dumps(envs.state_dict()))
    by_hand = (1 * 0.99 + 2) * 0.99 + 3
    np.testing.assert_allclose(state["returns"], [by_hand, 3 * by_hand], rtol=1e-12)

    def continuation(returns):
        fresh = VecNormalize(make_envs(), gamma=0.99)
        fresh.reset(seed=0)
        for _ in range(3):  # the same env states; the statistics are replaced below
            fresh.step(np.zeros((2, 1), np.float32))
        fresh.load_state_dict(dict(state, returns=returns))
        out = [fresh.step(np.zeros((2, 1), np.float32))[1] for _ in range(4)]  # crosses the episode end
        fresh.close()
        return out

    expected = [envs.step(np.zeros((2, 1), np.float32))[1] for _ in range(4)]
    envs.close()
    for a, b in zip(continuation(state["returns"]), expected):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(continuation([0.0, 0.0])[0], expected[0])  # the returns matter


def test_reset_mask_restarts_only_the_selected_returns():
    envs = stepped_normalizer(2)
    before = np.array(envs.state_dict()["returns"])
    count = envs.obs_rms.count
    mask = np.array([False, True])
    envs.reset(seed=0, options={"reset_mask": mask})
    after = np.array(envs.state_dict()["returns"])
    assert after[0] == before[0] != 0.0 and after[1] == 0.0
    assert envs.obs_rms.count == count + 1  # only the reset env's observation is counted
    envs.close()


def test_load_state_dict_honours_the_saved_flags():
    trained = VecNormalize(make_envs(), norm_obs=True, norm_reward=False)
    trained.reset(seed=0)
    trained.step(np.zeros((2, 1), np.float32))
    replay = VecNormalize(make_envs(), norm_obs=False, norm_reward=True)
    replay.load_state_dict(json.loads(json.dumps(trained.state_dict())))
    assert (replay.norm_obs, replay.norm_reward) == (True, False)
    replay.eval()
    obs, _ = replay.reset(seed=0)
    expected = trained.normalize_obs(np.array([[0.0, 0.0], [10.0, 10.0]]))
    np.testing.assert_allclose(obs, expected, rtol=1e-6)  # normalised, as the policy was trained
    trained.close()
    replay.close()


class _ScriptedSteps(gym.vector.VectorEnv):
    """Two envs stepping through ``script``: (rewards, terminated, reset-step rows or None)."""

    def __init__(self, script) -> None:
        self.num_envs, self.script = 2, iter(script)
        self.single_observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, 2)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, 2)

    def reset(self, *, seed=None, options=None):
        return np.zeros((2, 1), np.float32), {}

    def step(self, actions):
        rewards, terminated, reset_rows = next(self.script)
        infos = {} if reset_rows is None else {"reset_step": np.array(reset_rows), "_reset_step": np.array(reset_rows)}
        return np.zeros((2, 1), np.float32), np.array(rewards), np.array(terminated), np.zeros(2, bool), infos


def test_the_reset_rows_of_a_next_step_env_are_no_returns():
    """A next-step vector env's reset row (reward 0) is no step: before, each added a 0 return."""
    script = [([1.0, 2.0], [True, False], None), ([0.0, 3.0], [True, False], [True, False])]
    envs = VecNormalize(_ScriptedSteps(script), norm_obs=False, gamma=0.5)
    envs.reset()
    envs.step(np.zeros(2, np.int64))
    envs.step(np.zeros(2, np.int64))
    mean, var = pooled([[1.0, 2.0], [0.5 * 2.0 + 3.0]])  # env 0's reset row left out
    np.testing.assert_allclose([envs.ret_rms.mean, envs.ret_rms.var], [mean, var])


class _Stub:
    """What ``Agent`` reads of a policy: its spaces (and ``eval``)."""

    def __init__(self, space: gym.Space) -> None:
        self.obs_space, self.action_space = space, gym.spaces.Discrete(2)

    def eval(self) -> _Stub:
        return self


@pytest.mark.parametrize(
    "space, obs",
    [
        # a Discrete observation: no part is normalised, whatever --norm-obs says (a preset may set it)
        (gym.spaces.Discrete(16), np.array([15, 3])),
        # an image: likewise (pixels of 200 read as 10 before)
        (gym.spaces.Box(0, 255, (3, 4, 4), np.uint8), np.full((2, 3, 4, 4), 200, np.uint8)),
        # a Dict whose vector part is called "mean" (read as one part's statistics before)
        (
            gym.spaces.Dict({"mean": gym.spaces.Box(-9.0, 9.0, (2,)), "image": gym.spaces.Box(0, 255, (3, 4, 4))}),
            {
                "mean": np.array([[3.0, -1.0], [0.0, 5.0]], np.float32),
                "image": np.full((2, 3, 4, 4), 200.0, np.float32),
            },
        ),
    ],
)
def test_agent_normalises_what_the_env_normalised(space, obs):
    """``Agent.act`` must read an observation as the training env's ``VecNormalize`` gave it,
    which passes a Discrete observation and images as they are."""
    from a2c_ppo.agent import Agent
    from a2c_ppo.config import RunConfig

    class Spaces(gym.vector.VectorEnv):
        num_envs = 2
        single_observation_space = space
        observation_space = gym.vector.utils.batch_space(space, 2)
        single_action_space = gym.spaces.Discrete(2)

    trained = VecNormalize(Spaces(), norm_obs=True, norm_reward=False)
    if isinstance(space, gym.spaces.Dict):  # statistics far from (0, 1): mean 2, var 4 (std 2)
        trained.obs_rms["mean"].mean[:], trained.obs_rms["mean"].var[:] = 2.0, 4.0
    agent = Agent(_Stub(space), RunConfig(), json.loads(json.dumps(trained.state_dict())))  # type: ignore[arg-type]
    got = agent._batch(obs, None)[0]
    expected = trained.normalize_obs(obs)
    if isinstance(obs, dict):
        np.testing.assert_allclose(got["mean"].numpy(), [[0.5, -1.5], [-1.0, 1.5]], rtol=1e-6)  # (x - 2) / 2
        for key in obs:
            np.testing.assert_array_equal(got[key].numpy(), expected[key])
    else:
        np.testing.assert_array_equal(expected, obs)
        np.testing.assert_array_equal(got.numpy().reshape(obs.shape), obs)


class _Frames(gym.Env):
    """Image-only observations (uint8 frames): nothing for ``norm_obs`` to normalise."""

    observation_space = gym.spaces.Box(0, 255, (1, 8, 8), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.full((1, 8, 8), 7, np.uint8), {}

    def step(self, action):
        return np.full((1, 8, 8), 9, np.uint8), 1.0, False, False, {}


def test_image_only_observations_keep_and_save_no_observation_statistics():
    """A preset's norm_obs on an env of images only: no statistics of the frames' shape are kept,
    merged across ranks or saved; an older checkpoint's unused ones still load."""
    envs = VecNormalize(SyncVectorEnv([_Frames, _Frames]), norm_obs=True, norm_reward=True)
    obs, _ = envs.reset(seed=0)
    obs, *_ = envs.step(np.zeros(2, np.int64))
    np.testing.assert_array_equal(obs, np.full((2, 1, 8, 8), 9, np.uint8))  # passed as they are
    assert envs.obs_rms == {} and envs.statistics() == [envs.ret_rms]
    state = json.loads(json.dumps(envs.state_dict()))
    assert state["obs_rms"] == {}
    older = {**state, "obs_rms": RunningMeanStd((1, 8, 8)).state_dict()}  # what earlier versions saved
    fresh = VecNormalize(SyncVectorEnv([_Frames, _Frames]), norm_obs=True, norm_reward=True)
    fresh.load_state_dict(json.loads(json.dumps(older)))
    assert fresh.state_dict()["obs_rms"] == {} and fresh.ret_rms.count == envs.ret_rms.count
    envs.close()
    fresh.close()
