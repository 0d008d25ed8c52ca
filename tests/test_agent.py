"""``Agent`` in a loop of one's own: episode starts of a recurrent policy, the env the run built
(``make_env``), and what ``act`` says when it is fed frames the run processed."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch

from a2c_ppo.api import load, train

SMALL = {"num_processes": 2, "num_steps": 16, "vec_env": "sync", "num_env_steps": 64}


def folders(tmp_path) -> dict[str, str]:
    return {"log_dir": str(tmp_path / "runs"), "save_dir": str(tmp_path / "models")}


def action_distribution(agent, obs: np.ndarray, **kwargs) -> np.ndarray:
    """The policy's action distribution (its parameters) for ``obs`` (B, 4) on the agent's
    carried state, which ``act`` then advances as it would."""
    state = agent._state if agent._state is not None and len(agent._state) == len(obs) else torch.zeros(len(obs), 8)
    masks = torch.ones(len(obs), 1)
    if "episode_start" in kwargs:
        masks = torch.tensor(~np.asarray(kwargs["episode_start"]), dtype=torch.float32).view(-1, 1)
    with torch.no_grad():
        _, features, _ = agent.policy.base(torch.as_tensor(obs, dtype=torch.float32), state, masks)
        params = agent.policy.dist(features).params().numpy()
    agent.act(obs, **kwargs)
    return params


def test_episode_start_restarts_the_rows_it_names_only(tmp_path):
    result = train("CartPole-v1", recurrent_policy=True, hidden_size=8, **SMALL, **folders(tmp_path))
    agent = load(result.checkpoint)
    rng = np.random.default_rng(0)
    for _ in range(5):
        agent.act(rng.normal(size=(2, 4)).astype(np.float32))
    obs = rng.normal(size=(2, 4)).astype(np.float32)
    fresh = load(result.checkpoint)  # no state yet: both rows start
    expected = action_distribution(fresh, obs)
    carried = agent._state.clone()
    got = action_distribution(agent, obs, episode_start=[True, False])
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)  # row 0 restarted
    assert not np.allclose(got[1], expected[1])  # row 1 went on from its state
    assert not torch.equal(agent._state[1], carried[1])
    with pytest.raises(ValueError, match=r"episode_start has shape \(3,\)"):
        agent.act(obs, episode_start=[True, False, True])


def test_make_env_builds_what_the_policy_reads_and_act_names_the_processing(tmp_path):
    result = train("CartPole-v1", frame_stack=3, **SMALL, **folders(tmp_path))
    agent = load(result.checkpoint)
    env = agent.make_env()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (12,) and env.action_space.contains(agent.act(obs))
    raw, _ = gym.make("CartPole-v1").reset(seed=0)
    with pytest.raises(ValueError, match=r"the policy reads observations after --frame-stack 3"):
        agent.act(raw)
    env.close()


def test_evaluate_samples_when_asked(tmp_path):
    """The mode's episodes repeat for a seed; sampled ones (of a barely trained policy) differ
    from them, repeat for a seed as well, and differ for another seed; the caller's torch
    generator is left as it was."""
    agent = load(train("CartPole-v1", **SMALL, **folders(tmp_path)).checkpoint)
    mode, sampled = agent.evaluate(episodes=5), agent.evaluate(episodes=5, deterministic=False)
    assert mode != sampled and mode == agent.evaluate(episodes=5)
    state = torch.random.get_rng_state()
    assert sampled == agent.evaluate(episodes=5, deterministic=False)
    assert sampled != agent.evaluate(episodes=5, deterministic=False, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_list_of_tuple_observations_is_refused_not_read_transposed(tmp_path):
    """Blackjack's observations are tuples: a list of three of them would read as its three
    parts, each a batch, and act on the wrong observations without a word."""
    agent = load(train("Blackjack-v1", **SMALL, **folders(tmp_path)).checkpoint)
    observations = [(5, 3, 0), (7, 2, 1), (1, 0, 0)]
    with pytest.raises(ValueError, match="not a list of observations"):
        agent.act(observations)
    batched = agent.act(tuple(np.stack(part) for part in zip(*observations)))
    assert list(batched) == [agent.act(one) for one in observations]


def test_an_action_mask_given_to_a_policy_trained_without_masks_is_refused(tmp_path):
    agent = load(train("FrozenLake-v1", **SMALL, **folders(tmp_path)).checkpoint)
    with pytest.raises(ValueError, match="trained without action masks"):
        agent.act(0, action_mask=[1, 0, 0, 0])
    assert 0 <= agent.act(0) < 4


def test_act_takes_an_ended_rows_mask_that_allows_nothing_as_training_does(tmp_path):
    """A next-step vector env keeps an ended episode's last observation in its batch, and ignores
    the action taken on it: there a game over's mask may allow nothing, as training accepts
    (``episode_end`` names those rows); a row still in its episode must allow an action."""
    from tests.envs_for_spaces import native_game_over

    result = train("tests.envs_for_spaces:native_game_over", env_kwargs={"mode": "NextStep"}, num_steps=16,
                   num_env_steps=64, **folders(tmp_path))  # fmt: skip
    agent = load(result.checkpoint, trust_checkpoint=True)
    envs = native_game_over("NextStep")  # its envs raise on a forbidden action
    obs, _ = envs.reset(seed=0)
    ended, game_overs = np.zeros(2, np.bool_), 0
    for _ in range(12):  # the games end at steps 4 and 9 (the env resets on the step after)
        if not obs["action_mask"].any(axis=1).all():
            assert ended.all()
            game_overs += 1
            with pytest.raises(ValueError, match=r"row 0 allows no action.*episode_end=terminated \| truncated"):
                agent.act(obs)
        actions = agent.act(obs, episode_end=ended)
        obs, _, terminated, truncated, _ = envs.step(actions)
        ended = terminated | truncated
    assert game_overs == 2
    obs["action_mask"][1] = 0
    with pytest.raises(ValueError, match="row 1 allows no action"):
        agent.act(obs, episode_end=[True, False])
    assert agent.act({"obs": obs["obs"][1], "action_mask": np.zeros(4)}, episode_end=True) in range(4)
    with pytest.raises(ValueError, match=r"episode_end has shape \(3,\)"):
        agent.act(obs, episode_end=[True, False, True])


def test_act_reads_a_discrete_observation_as_training_did_under_a_normalising_preset(tmp_path):
    """``--preset mujoco`` turns --norm-obs on, which a Discrete observation is left out of; ``act``
    normalised it anyway (mean 0, std 1, clipped at 10): FrozenLake's states 11 to 15 read as 10."""
    result = train("FrozenLake-v1", preset="mujoco", num_mini_batch=2, **SMALL, **folders(tmp_path))
    agent = load(result.checkpoint)
    assert agent.normalization["norm_obs"]
    states = np.arange(16)
    read, *_ = agent._batch(states, None)  # what the policy gets
    np.testing.assert_array_equal(read.view(-1).numpy(), states)


def test_an_agent_pickles_with_its_carried_state_and_acts_as_the_original(tmp_path):
    # a sweep's process pool or multiprocessing hands an Agent over by pickling it
    result = train("CartPole-v1", recurrent_policy=True, hidden_size=8, norm_obs=True, **SMALL, **folders(tmp_path))
    agent = load(result.checkpoint)
    rng = np.random.default_rng(0)
    for _ in range(3):
        agent.act(rng.normal(size=(2, 4)).astype(np.float32), deterministic=True)
    copy = pickle.loads(pickle.dumps(agent))
    assert torch.equal(copy._state, agent._state)
    for _ in range(3):
        obs = rng.normal(size=(2, 4)).astype(np.float32)
        np.testing.assert_array_equal(copy.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    assert torch.equal(copy._state, agent._state)
