"""EnvPoolVecEnv gives EnvPool's envs the framework's same-step contract (skipped without EnvPool)."""

from __future__ import annotations

import numpy as np
import pytest

envpool = pytest.importorskip("envpool")

from gymnasium.vector import AutoresetMode  # noqa: E402

from a2c_ppo.envs.envpool_env import EnvPoolVecEnv, envpool_supports, to_envpool_id  # noqa: E402
from a2c_ppo.envs.native import NativeVecEnv  # noqa: E402
from a2c_ppo.errors import ConfigError  # noqa: E402

N = 4
SEED = 21


def test_cartpole_contract():
    envs = EnvPoolVecEnv("CartPole-v1", N, seed=SEED)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert envs.observation_space.shape == (N, 4) and envs.action_space.shape == (N,)
    obs, infos = envs.reset(seed=SEED)
    assert obs.shape == (N, 4) and obs.dtype == np.float32 and "env_id" not in infos
    rng = np.random.default_rng(0)
    returns, lengths = np.zeros(N), np.zeros(N, dtype=int)
    episodes = 0
    for _ in range(200):
        obs, rewards, terminated, truncated, infos = envs.step(rng.integers(0, 2, N))
        assert rewards.dtype == np.float64 and terminated.dtype == bool and truncated.dtype == bool
        returns += rewards
        lengths += 1
        ended = terminated | truncated
        if not ended.any():
            assert "final_obs" not in infos
            continue
        assert np.array_equal(infos["_final_obs"], ended) and np.array_equal(infos["_final_info"], ended)
        ep, has = infos["final_info"]["episode"], infos["final_info"]["_episode"]
        assert np.array_equal(has, ended)
        np.testing.assert_array_equal(ep["r"][ended], returns[ended])
        np.testing.assert_array_equal(ep["l"][ended], lengths[ended])
        for i in np.flatnonzero(ended):
            assert abs(infos["final_obs"][i][2]) > 0.2 or abs(infos["final_obs"][i][0]) > 2.4  # fell or left
            assert (np.abs(obs[i]) <= 0.05).all()  # already the reset state
        assert (infos["elapsed_step"][ended] == 0).all()  # the reset envs' own infos
        returns[ended], lengths[ended] = 0, 0
        episodes += int(ended.sum())
    assert episodes >= 10
    envs.close()


def _real_transitions(step, reset, action_lists, next_step):
    """Per env, its real transitions (obs, action, reward, terminated, truncated, next obs). Each
    env takes its next action only on real steps; with ``next_step`` the step after an end is
    EnvPool's reset step, which is skipped."""
    n = len(action_lists)
    obs, _ = reset()
    taken = np.zeros(n, dtype=int)
    resetting = np.zeros(n, dtype=bool)
    out: list[list[tuple]] = [[] for _ in range(n)]
    while (taken < len(action_lists[0])).all():
        actions = np.array([action_lists[i][taken[i]] for i in range(n)], dtype=np.int32)
        next_obs, rewards, terminated, truncated, infos = step(actions)
        for i in np.flatnonzero(~resetting):
            ended = terminated[i] or truncated[i]
            after = infos["final_obs"][i] if ended and not next_step else next_obs[i]
            out[i].append((obs[i].copy(), actions[i], float(rewards[i]), terminated[i], truncated[i], after.copy()))
            taken[i] += 1
        resetting = (terminated | truncated) & ~resetting if next_step else resetting
        obs = next_obs
    return out


@pytest.mark.filterwarnings("ignore:.*precision lowered")
def test_cartpole_equals_envpool_without_its_reset_steps():
    """Same seeds (env i: SEED + i) and actions: the adapter's transitions are raw EnvPool's,
    less the steps on which EnvPool resets an env."""
    action_lists = np.random.default_rng(1).integers(0, 2, (N, 80))
    ours = EnvPoolVecEnv("CartPole-v1", N, seed=SEED)
    raw = envpool.make_gymnasium("CartPole-v1", num_envs=N, seed=[SEED + i for i in range(N)])
    got = _real_transitions(ours.step, lambda: ours.reset(seed=SEED), action_lists, next_step=False)
    want = _real_transitions(raw.step, raw.reset, action_lists, next_step=True)
    for i in range(N):
        assert min(len(got[i]), len(want[i])) >= 70  # the runs stop when one env has used up its actions
        for k, (a, b) in enumerate(zip(got[i], want[i])):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y, err_msg=f"env {i}, transition {k}")
    assert sum(t[3] or t[4] for t in got[0]) >= 2
    ours.close()
    raw.close()


def test_reset_seed_reproduces_and_envs_get_their_own_seeds():
    envs = EnvPoolVecEnv("CartPole-v1", N, seed=3)
    first, _ = envs.reset(seed=3)
    assert len({tuple(row) for row in first}) == N  # seeds 3, 4, 5, 6: different starts
    for _ in range(30):
        envs.step(np.ones(N, dtype=np.int64))
    again, _ = envs.reset(seed=3)
    np.testing.assert_array_equal(first, again)
    other, _ = envs.reset(seed=4)
    np.testing.assert_array_equal(other[:-1], first[1:])  # env i with seed 4 + i is env i + 1 before
    unseeded, _ = envs.reset()
    assert not np.array_equal(unseeded, other)
    envs.close()


def test_seeds_beyond_int32_wrap_into_envpools_range():
    """--seed goes to 4,000,000,000; EnvPool asserts int32 seeds (a traceback at start-up)."""
    envs = EnvPoolVecEnv("CartPole-v1", N, seed=2**31 - 3)  # envs 2.. wrap to 0, 1
    wrapped, _ = envs.reset()
    small, _ = envs.reset(seed=0)
    np.testing.assert_array_equal(wrapped[2:], small[:2])
    large, _ = envs.reset(seed=3_000_000_000)
    np.testing.assert_array_equal(large, envs.reset(seed=3_000_000_000 - (2**31 - 1))[0])
    envs.close()


def test_ids_and_unsupported_id():
    assert envpool_supports("CartPole-v1") and to_envpool_id("CartPole-v1") == "CartPole-v1"
    assert not envpool_supports("NoSuchEnv-v0")
    assert envpool_supports("HalfCheetah-v5")
    if envpool_supports("ALE/Pong-v5"):
        assert to_envpool_id("ALE/Pong-v5") == to_envpool_id("PongNoFrameskip-v4") == "Pong-v5"
    with pytest.raises(ConfigError, match=r"no env for 'HalfCheetah-v2'.*HalfCheetah-v5"):
        EnvPoolVecEnv("HalfCheetah-v2", 2, seed=0)
    with pytest.raises(ConfigError, match=r"no env for 'CartPol-v1'.*CartPole-v1"):
        EnvPoolVecEnv("CartPol-v1", 2, seed=0)


@pytest.mark.filterwarnings("ignore:.*precision lowered")  # raw EnvPool's float32 Box from float64 bounds
def test_raw_envpool_is_no_vector_env_for_native():
    raw = envpool.make_gymnasium("CartPole-v1", num_envs=2)
    with pytest.raises(ConfigError, match="EnvPoolVecEnv instead"):  # its observation_space is unbatched
        NativeVecEnv(raw)
    raw.close()


def test_mujoco_box_actions_are_clipped():
    results = []
    for scale in (1.0, 5.0):
        envs = EnvPoolVecEnv("HalfCheetah-v5", 2, seed=0)
        obs, _ = envs.reset(seed=0)
        assert obs.dtype == np.float64 and obs.shape == (2, 17)
        results.append(envs.step(np.full((2, 6), scale)))
        envs.close()
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


needs_atari = pytest.mark.skipif(
    not (envpool_supports("ALE/Pong-v5") and envpool_supports("ALE/Breakout-v5")),
    reason="EnvPool has no Atari ROMs here",
)


@needs_atari
def test_pong_shapes_and_clipped_rewards():
    envs = EnvPoolVecEnv("ALE/Pong-v5", 2, seed=0)
    assert envs.single_observation_space.shape == (4, 84, 84) and envs.single_action_space.n == 6
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    rng = np.random.default_rng(0)
    scored = 0
    for _ in range(300):
        obs, rewards, terminated, truncated, infos = envs.step(rng.integers(0, 6, 2))
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8 and rewards.dtype == np.float64
        np.testing.assert_array_equal(rewards, np.sign(infos["reward"]))
        scored += int(np.count_nonzero(rewards))
    assert scored >= 1
    envs.close()


@needs_atari
def test_breakout_episodic_life_and_whole_game_statistics():
    envs = EnvPoolVecEnv("ALE/Breakout-v5", 2, seed=1)
    _, infos = envs.reset(seed=1)
    lives = infos["lives"].copy()
    score, steps = np.zeros(2), np.zeros(2, dtype=int)
    life_losses = games = 0
    rng = np.random.default_rng(0)
    for _ in range(3000):
        _, rewards, terminated, truncated, infos = envs.step(rng.integers(0, 4, 2))
        ended = terminated | truncated
        final = infos.get("final_info", {})
        raw = np.where(ended, final.get("reward", 0.0), infos["reward"])  # the ending step's own info
        score += raw
        steps += 1
        game_over = final.get("_episode", np.zeros(2, dtype=bool))
        for i in np.flatnonzero(ended & ~game_over):  # a lost life: the game goes on
            assert terminated[i] and final["lives"][i] == infos["lives"][i] == lives[i] - 1 > 0
            life_losses += 1
        for i in np.flatnonzero(game_over):
            assert final["lives"][i] == 0 and infos["lives"][i] == 5  # a new game
            assert final["episode"]["r"][i] == score[i] and final["episode"]["l"][i] == 4 * steps[i]
            score[i], steps[i] = 0, 0
            games += 1
        lives = infos["lives"].copy()
        if games >= 2:
            break
    assert games >= 2 and life_losses >= 4
    envs.close()


@pytest.mark.skipif(not envpool_supports("MsPacmanNoFrameskip-v4"), reason="EnvPool has no Atari ROMs here")
def test_envpool_frames_are_our_pipelines_frames():
    """MsPacman (no FIRE reset; no sticky actions in a v4 id; one no-op at reset on both sides):
    EnvPool's frame skip, max-pooling, gray, INTER_AREA resize and stack give our pipeline's
    frames bit for bit, and its rewards ours."""
    gym = pytest.importorskip("gymnasium")
    ale_py = pytest.importorskip("ale_py")
    from gymnasium.wrappers import RecordEpisodeStatistics

    from a2c_ppo.envs.atari import wrap_atari

    gym.register_envs(ale_py)
    ours = wrap_atari(RecordEpisodeStatistics(gym.make("MsPacmanNoFrameskip-v4")), clip_reward=False, noop_max=1)
    pool = EnvPoolVecEnv("MsPacmanNoFrameskip-v4", 1, seed=0, noop_max=1, clip_reward=False)
    try:
        obs, _ = ours.reset(seed=0)
        pool_obs, _ = pool.reset(seed=0)
        np.testing.assert_array_equal(obs, pool_obs[0])
        rng = np.random.default_rng(0)
        for _ in range(200):
            action = int(rng.integers(ours.action_space.n))
            obs, reward, *_ = ours.step(action)
            pool_obs, pool_reward, *_ = pool.step(np.array([action]))
            np.testing.assert_array_equal(obs, pool_obs[0])
            assert reward == pool_reward[0]
    finally:
        ours.close()
        pool.close()


@pytest.mark.parametrize("envpool_s, kind", [(1e-7, "envpool"), (10.0, "subproc")])
def test_auto_takes_envpool_for_atari_where_it_measures_faster(monkeypatch, envpool_s, kind):
    from a2c_ppo.envs import envpool_env
    from a2c_ppo.envs.layout import StepTimes
    from a2c_ppo.envs.make import make_vec_envs

    monkeypatch.setattr(envpool_env, "measure_step_s", lambda *_: envpool_s)
    monkeypatch.setattr("a2c_ppo.envs.make.measure_step_times", lambda *_, **__: StepTimes(400e-6, 420e-6))
    envs = make_vec_envs("PongNoFrameskip-v4", 2, vec_env="auto", num_workers=1, policy_step_s=lambda n: 1e-4)
    try:
        assert envs.unwrapped.metadata["vec_env"] == kind
    finally:
        envs.close()
    # CartPole is no candidate: an automatic EnvPool would give up exact resumes
    envs = make_vec_envs("CartPole-v1", 2, vec_env="auto", num_workers=1, policy_step_s=lambda n: 1e-4)
    try:
        assert envs.unwrapped.metadata["vec_env"] != "envpool"
    finally:
        envs.close()
