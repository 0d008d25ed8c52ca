"""The Atari pipeline: shapes, no-op + fire reset, episodic life, clipped vs true reward."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

ale_py = pytest.importorskip("ale_py")
pytest.importorskip("cv2")

from gymnasium.wrappers import RecordEpisodeStatistics  # noqa: E402

from a2c_ppo.envs.atari import EpisodicLife, FireReset, GameEnd, WholeGames, wrap_atari  # noqa: E402
from a2c_ppo.envs.make import make_env, make_env_fn  # noqa: E402
from a2c_ppo.envs.subproc import SubprocVecEnv  # noqa: E402

gym.register_envs(ale_py)


class RawRewardSum(gym.Wrapper):
    """Sums the game's own rewards, under everything else."""

    def __init__(self, env):
        super().__init__(env)
        self.total = 0.0
        self.max_reward = 0.0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.total += reward
        self.max_reward = max(self.max_reward, abs(reward))
        return obs, reward, terminated, truncated, info


def find(env, cls):
    while isinstance(env, gym.Wrapper):
        if isinstance(env, cls):
            return env
        env = env.env
    return None


def test_observations_noop_and_fire_reset():
    env = make_env("ALE/Breakout-v5")
    try:
        assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        assert env.unwrapped._frameskip == 1  # skipped once, by the wrapper
        assert env.spec is not None and env.spec.kwargs["repeat_action_probability"] == 0.25
        assert find(env, FireReset) is not None and find(env, EpisodicLife) is not None
        frames = set()
        for seed in range(4):
            obs, _ = env.reset(seed=seed)
            assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
            assert all(np.array_equal(obs[0], obs[k]) for k in range(4))  # stack padded with the reset frame
            # 1..30 random no-ops (1 frame each), then FIRE and one more action (4 frames each)
            n = env.unwrapped.ale.getEpisodeFrameNumber()
            assert 1 + 8 <= n <= 30 + 8
            frames.add(n)
        assert len(frames) > 1  # the number of no-ops is random
        for _ in range(3):
            prev = obs
            obs, *_ = env.step(0)
            assert obs.dtype == np.uint8 and np.array_equal(obs[:3], prev[1:])  # oldest frame first
    finally:
        env.close()
    env = make_env("PongNoFrameskip-v4")
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    finally:
        env.close()


def test_episodic_life_clipped_reward_and_true_return():
    raw = RawRewardSum(gym.make("ALE/SpaceInvaders-v5", frameskip=1))
    env = wrap_atari(RecordEpisodeStatistics(raw), clip_reward=True)
    try:
        env.reset(seed=0)
        env.action_space.seed(0)
        clipped, life_losses, episode = [], 0, None
        for _ in range(3000):
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            clipped.append(reward)
            if terminated or truncated:
                if "episode" in info:
                    episode = info["episode"]
                    break
                life_losses += 1
                assert env.unwrapped.ale.lives() > 0  # no game over yet: the game goes on
                frame = env.unwrapped.ale.getEpisodeFrameNumber()
                env.reset()  # as the vector env's autoreset would
                assert env.unwrapped.ale.getEpisodeFrameNumber() > frame  # not a real reset
        assert episode is not None, "no game over in 3000 steps"
        assert life_losses >= 1 and env.unwrapped.ale.lives() == 0
        assert set(np.unique(clipped)) <= {-1.0, 0.0, 1.0}
        assert raw.max_reward > 1  # so clipping did something
        assert float(episode["r"]) == raw.total > sum(clipped)
    finally:
        env.close()


def test_episode_info_only_at_game_over_through_subproc():
    envs = SubprocVecEnv([make_env_fn("ALE/Breakout-v5") for _ in range(2)], num_workers=2)
    try:
        obs, _ = envs.reset(seed=1)
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        rng = np.random.default_rng(0)
        life_losses, games = 0, 0
        for _ in range(600):
            obs, reward, terminated, truncated, info = envs.step(rng.integers(0, 4, size=2))
            assert obs.dtype == np.uint8
            for i in np.flatnonzero(terminated | truncated):
                final = info["final_info"]
                assert info["final_obs"][i].shape == (4, 84, 84)
                got_episode = "episode" in final and final["_episode"][i]
                if final["lives"][i] > 0:
                    life_losses += 1
                    assert not got_episode
                else:
                    games += 1
                    assert got_episode and final["episode"]["l"][i] > 0
            if games:
                break
        assert games >= 1 and life_losses >= 1
    finally:
        envs.close()


@pytest.mark.parametrize("env_id", ["ALE/Backgammon-v5", "ALE/VideoCheckers-v5"])
def test_the_two_games_whose_action_0_is_no_noop_start_without_noops(env_id):
    """AtariPreprocessing's reset no-ops need action 0 to be NOOP: these games start without."""
    env = make_env(env_id)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and env.unwrapped.get_action_meanings()[0] != "NOOP"
    env.step(env.action_space.sample())
    env.close()


def test_the_agents_env_plays_whole_games_and_its_rewards_sum_to_the_score():
    """``Agent.make_env`` is the env of a loop of one's own: an episode is a whole game, whose
    rewards sum to the game's score. After a lost life it goes on as training's autoreset did
    (the frame stack restarted: four copies of one frame) and says so (``life_lost``)."""
    from a2c_ppo.agent import Agent
    from a2c_ppo.config import RunConfig
    from a2c_ppo.model import make_policy

    config = RunConfig(env_name="ALE/Breakout-v5")
    probe = make_env(config.env_name)
    policy = make_policy(probe.observation_space, probe.action_space)
    probe.close()
    env = Agent(policy, config, None).make_env()
    try:
        env.reset(seed=5)
        env.action_space.seed(5)
        total, lives_lost, info = 0.0, 0, {}
        for _ in range(5000):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            total += float(reward)
            if info.get("life_lost"):
                lives_lost += 1
                assert not (terminated or truncated)
                assert all(np.array_equal(obs[0], obs[k]) for k in range(4))  # a restarted stack
            if terminated or truncated:
                break
        assert terminated and env.unwrapped.ale.lives() == 0, "the episode ended before the game did"
        assert lives_lost == 4  # Breakout starts with 5 lives
        assert total == float(info["episode"]["r"]) > 0  # the game's own score, every reward counted
    finally:
        env.close()


class ScriptedGame(gym.Env):
    """A hand-built ALE stand-in: actions NOOP, FIRE, RIGHT; 2 lives; the frame shows the step
    number. A life is lost at step 3, the game ends at step 8; every FIRE pays 10 (also the
    FIRE that ``FireReset`` presses after the lost life), every other step 1."""

    observation_space = gym.spaces.Box(0, 255, (2, 2), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def __init__(self):
        self.ale = self  # EpisodicLife reads unwrapped.ale.lives()
        self.t = 0

    def get_action_meanings(self):
        return ["NOOP", "FIRE", "RIGHT"]

    def lives(self):
        return 2 if self.t < 3 else 1 if self.t < 8 else 0

    def frame(self):
        return np.full((2, 2), self.t, np.uint8)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self.frame(), {}

    def step(self, action):
        self.t += 1
        return self.frame(), 10.0 if action == 1 else 1.0, self.t == 8, False, {}


def test_whole_games_by_hand():
    """Training's pipeline ends the episode at step 3 (the lost life); the whole-game one goes on
    from training's reset (a no-op and FIRE, FIRE again and RIGHT from FireReset: steps 4-6, the
    stack restarted on frame 6) and counts those steps' rewards (1 + 10 + 1) in step 3's."""
    game = GameEnd(RecordEpisodeStatistics(ScriptedGame()))
    env = WholeGames(gym.wrappers.FrameStackObservation(FireReset(EpisodicLife(game)), 2), game)
    obs, _ = env.reset(seed=0)
    assert obs[:, 0, 0].tolist() == [2, 2]  # FIRE (1) and RIGHT (2) after the reset
    rewards, flags, infos, frames = [], [], [], []
    for _ in range(3):  # steps 3, 7, 8
        obs, reward, terminated, truncated, info = env.step(2)
        frames.append(obs[:, 0, 0].tolist())
        rewards.append(reward)
        flags.append((terminated, truncated))
        infos.append(info)
        if terminated:
            break
    assert rewards == [1 + (1 + 10 + 1), 1, 1]
    assert frames == [[6, 6], [6, 7], [7, 8]]  # the stack restarted after the lost life
    assert flags == [(False, False), (False, False), (True, False)]
    assert infos[0]["life_lost"] and "life_lost" not in infos[1]
    assert float(infos[2]["episode"]["r"]) == sum(rewards) + 10 + 1  # the game's first FIRE and RIGHT too
    assert int(infos[2]["episode"]["l"]) == 8


def test_recorded_episodes_are_whole_games_with_the_games_rewards():
    """``enjoy.py --record-trajectories``: one game played is one episode recorded, whose rewards
    are the game's own and sum to its score (each lost life was an episode of clipped rewards)."""
    from a2c_ppo.envs.make import make_vec_envs

    recorded: list = []
    envs = make_vec_envs("ALE/SpaceInvaders-v5", 1, vec_env="sync", record_episodes=recorded)
    try:
        envs.reset(seed=0)
        envs.action_space.seed(0)
        for _ in range(5000):
            _, _, terminated, truncated, info = envs.step(envs.action_space.sample())
            if "episode" in info.get("final_info", {}):
                break
        assert terminated[0] and "episode" in info["final_info"], "no game over in 5000 steps"
        (game,) = recorded
        assert game["rewards"].sum() == info["final_info"]["episode"]["r"][0] and game["rewards"].max() > 1
        assert len(game["rewards"]) == len(game["obs"]) == len(game["actions"]) and bool(game["terminated"])
    finally:
        envs.close()
