"""The expert-trajectory file format: round trips, and every way a file is refused (a file
is data: a pickled object in it is refused, never run)."""

from __future__ import annotations

import math
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

from a2c_ppo.errors import ConfigError
from a2c_ppo.trajectories import describe_space, load_trajectories, save_trajectories, select_episodes, subsample
from tests.test_gail import BOX_ACTIONS, DISCRETE_ACTIONS, OBS, episodes, expert_set


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
@pytest.mark.parametrize("action_space", [BOX_ACTIONS, DISCRETE_ACTIONS], ids=["box", "discrete"])
def test_trajectory_file_round_trip(tmp_path, suffix, action_space):
    path = str(tmp_path / f"expert{suffix}")
    eps = episodes(action_space)
    save_trajectories(path, env_id="Test-v0", observation_space=OBS, action_space=action_space, episodes=eps)
    loaded = load_trajectories(path, env_id="Test-v0", observation_space=OBS, action_space=action_space)
    assert loaded.env_id == "Test-v0"
    assert loaded.spaces == {"observation": describe_space(OBS), "action": describe_space(action_space)}
    assert loaded.lengths.tolist() == [5, 3, 4] and loaded.lengths.dtype == torch.int64
    assert loaded.obs.dtype == torch.float32 and loaded.obs.shape == (12, 3)
    assert torch.equal(loaded.obs, torch.from_numpy(np.concatenate([e["obs"] for e in eps]).astype(np.float32)))
    assert loaded.actions.dtype == (torch.float32 if action_space is BOX_ACTIONS else torch.int64)
    assert torch.equal(
        loaded.actions, torch.from_numpy(np.concatenate([e["actions"] for e in eps])).to(loaded.actions.dtype)
    )
    assert torch.equal(loaded.rewards, torch.from_numpy(np.concatenate([e["rewards"] for e in eps])))
    assert torch.allclose(loaded.returns, torch.tensor([e["rewards"].sum() for e in eps], dtype=torch.float64))
    assert not [name for name in os.listdir(tmp_path) if name != f"expert{suffix}"]  # no temp file left


def test_trajectory_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        save_trajectories(
            str(tmp_path / "e.pt"),
            env_id="Test-v0",
            observation_space=OBS,
            action_space=BOX_ACTIONS,
            episodes=episodes(BOX_ACTIONS),
        )
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "e.pt").st_mode & 0o777 == 0o640


def test_saving_episodes_that_do_not_fit_is_refused(tmp_path):
    bad = episodes(BOX_ACTIONS)
    bad[1]["obs"] = bad[1]["obs"][:, :2]
    with pytest.raises(ValueError, match=r"episode 1 has observations of shape \(2,\)"):
        save_trajectories(
            str(tmp_path / "e.pt"), env_id="Test-v0", observation_space=OBS, action_space=BOX_ACTIONS, episodes=bad
        )
    short = episodes(DISCRETE_ACTIONS)
    short[0]["actions"] = short[0]["actions"][:-1]
    with pytest.raises(ValueError, match="4 actions and 5 rewards"):
        save_trajectories(
            str(tmp_path / "e.pt"),
            env_id="Test-v0",
            observation_space=OBS,
            action_space=DISCRETE_ACTIONS,
            episodes=short,
        )
    assert not os.listdir(tmp_path)


ran = []


class Payload:
    def __reduce__(self):
        return ran.append, ("code ran",)


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_a_file_with_a_pickled_object_is_refused(tmp_path, suffix):
    path = str(tmp_path / f"evil{suffix}")
    if suffix == ".npz":
        np.savez(path, obs=np.array([Payload()], dtype=object))
    else:
        torch.save({"obs": Payload()}, path)
    with pytest.raises(ConfigError, match="contains code"):
        load_trajectories(path)
    assert ran == []


def saved(tmp_path, suffix: str = ".pt", action_space: gym.Space = BOX_ACTIONS) -> str:
    path = str(tmp_path / f"expert{suffix}")
    save_trajectories(
        path, env_id="Test-v0", observation_space=OBS, action_space=action_space, episodes=episodes(action_space)
    )
    return path


def test_wrong_env_id_is_refused_naming_both(tmp_path):
    with pytest.raises(ConfigError, match="recorded on 'Test-v0', but the env is 'Other-v1'"):
        load_trajectories(saved(tmp_path), env_id="Other-v1")


def test_wrong_spaces_are_refused_naming_both(tmp_path):
    path = saved(tmp_path, ".npz", DISCRETE_ACTIONS)
    with pytest.raises(
        ConfigError, match=r"observation space Box\(shape=\[3\].*env's observation space is Box\(shape=\[4\]"
    ):
        load_trajectories(path, observation_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float32))
    with pytest.raises(ConfigError, match=r"action space Discrete\(.*n=4.*env's action space is Discrete\(.*n=3"):
        load_trajectories(path, action_space=gym.spaces.Discrete(3))
    with pytest.raises(ConfigError, match="dtype=float32.*dtype=float64"):
        load_trajectories(path, observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float64))


def test_box_actions_recorded_widened_match_the_bounded_space_and_observations_do_not(tmp_path):
    """Files written before 2026-12-07 recorded Box actions with infinite bounds (gymnasium's
    ClipAction widened the space): they still fit the env's bounded space; observations must match."""
    widened = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    path = str(tmp_path / "old.npz")
    save_trajectories(path, env_id="Test-v0", observation_space=OBS, action_space=widened, episodes=episodes(widened))
    assert load_trajectories(path, action_space=BOX_ACTIONS).spaces["action"]["low"] == ["-inf", "-inf"]
    with pytest.raises(ConfigError, match="action space Box"):
        load_trajectories(path, action_space=gym.spaces.Box(-1.0, 1.0, (3,), np.float32))  # another shape
    bounded = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    with pytest.raises(ConfigError, match="observation space Box"):
        load_trajectories(path, observation_space=bounded)  # OBS is unbounded: no widening for observations


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_truncated_or_missing_file_is_refused(tmp_path, suffix):
    path = saved(tmp_path, suffix)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="cannot be read"):
        load_trajectories(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_trajectories(str(tmp_path / f"absent{suffix}"))


def rewrite(path: str, **changes) -> None:
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lengths": torch.tensor([5, 3, 5])}, "lengths sum to 13 but it holds 12"),
        ({"lengths": torch.tensor([2**63 - 1, 2**63 - 1, 2])}, "lengths sum to 18446744073709551616 but it holds"),
        ({"obs": torch.zeros(1, 3).expand(12, 3)}, "'obs' is larger than its data"),
        ({"lengths": torch.tensor([5.0, 3.0, 4.0])}, "'lengths' has dtype float32, expected int64"),
        ({"actions": torch.zeros(12, 3)}, r"'actions' has shape \(12, 3\), expected \(12, 2\)"),
        ({"rewards": torch.full((12,), math.nan, dtype=torch.float64)}, "'rewards' holds a NaN"),
        ({"spaces": "{not json"}, "not JSON"),
        ({"version": 2}, "version 2"),
        ({"obs": [1, 2]}, "'obs' is of type list"),
    ],
)
def test_malformed_files_are_refused(tmp_path, changes, message):
    path = saved(tmp_path)
    rewrite(path, **changes)
    with pytest.raises(ConfigError, match=message):
        load_trajectories(path)


def test_out_of_range_discrete_action_is_refused(tmp_path):
    path = saved(tmp_path, action_space=DISCRETE_ACTIONS)
    rewrite(path, actions=torch.full((12, 1), 4))
    with pytest.raises(ConfigError, match="outside the action space"):
        load_trajectories(path)


def test_subsample_and_select_are_deterministic():
    expert = expert_set(lengths=(5, 3, 4))
    fixed = subsample(expert, every=2, start=1)  # rows 1, 3 | 6 | 9, 11
    assert fixed.lengths.tolist() == [2, 1, 2]
    assert torch.equal(fixed.obs, expert.obs[[1, 3, 6, 9, 11]])
    assert torch.equal(fixed.returns, expert.returns)
    one = subsample(expert, every=4, start=3)  # episode 2 (length 3) has no step 3: dropped
    assert one.lengths.tolist() == [1, 1] and torch.equal(one.returns, expert.returns[[0, 2]])
    a, b = (
        subsample(expert, every=3, generator=5),
        subsample(expert, every=3, generator=torch.Generator().manual_seed(5)),
    )
    assert torch.equal(a.obs, b.obs) and torch.equal(a.lengths, b.lengths)
    picked = select_episodes(expert, 2, generator=0)
    assert picked.lengths.sum() == len(picked.obs) and len(picked.lengths) == 2
    assert torch.equal(picked.obs, select_episodes(expert, 2, generator=0).obs)
    with pytest.raises(ConfigError, match="holds 3"):
        select_episodes(expert, 4)


def test_policy_actions_become_the_actions_the_env_took():
    from a2c_ppo.algo.gail_pairs import as_stored_actions

    shifted = describe_space(gym.spaces.Discrete(3, start=-1))
    assert as_stored_actions(torch.tensor([[0], [2]]), shifted).tolist() == [[-1], [1]]
    multi = describe_space(gym.spaces.MultiDiscrete([2, 3], start=[1, 5]))
    assert as_stored_actions(torch.tensor([[0, 2]]), multi).tolist() == [[1, 7]]
    box = describe_space(BOX_ACTIONS)  # [-1, 1]^2: a sample outside is clipped, as the env's ClipAction does
    assert as_stored_actions(torch.tensor([[-3.0, 0.25]]), box).tolist() == [[-1.0, 0.25]]


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_an_episode_longer_than_the_time_limit_is_refused_and_one_ending_on_it_is_not(tmp_path, suffix):
    """gymnasium's TimeLimit ends every episode by its limit's step, so a longer episode was not
    recorded on the env the file names. An env may terminate on that very step (gymnasium then
    reports terminated and truncated, and the recorder writes terminated): an episode of exactly
    the limit that says it terminated is legitimate data."""
    path = str(tmp_path / f"expert{suffix}")
    eps = [{**episode, "terminated": flag} for episode, flag in zip(episodes(BOX_ACTIONS), (True, False, True))]
    save_trajectories(path, env_id="Test-v0", observation_space=OBS, action_space=BOX_ACTIONS, episodes=eps)
    with pytest.raises(ConfigError, match=r"its episode 0 has 5 steps, more than the time limit of 4 steps"):
        load_trajectories(path, env_id="Test-v0", max_episode_steps=4)
    at_the_limit = load_trajectories(path, env_id="Test-v0", max_episode_steps=5)  # episode 0: 5 steps, terminated
    assert at_the_limit.terminated is not None and at_the_limit.terminated.tolist() == [True, False, True]


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_returns_that_are_not_the_sums_of_the_episodes_rewards_are_refused(tmp_path, suffix):
    path = saved(tmp_path, suffix)
    if suffix == ".npz":
        with np.load(path) as archive:
            fields = {key: archive[key] for key in archive.files}
        np.savez(path, **{**fields, "returns": fields["returns"] + [0.0, 1.0, 0.0]})
    else:
        returns = torch.load(path, weights_only=True)["returns"]
        rewrite(path, returns=returns + torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    with pytest.raises(ConfigError, match=r"its 'returns' of episode 1 is .*, but its rewards sum to"):
        load_trajectories(path)
