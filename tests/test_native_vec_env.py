"""NativeVecEnv turns a user's gymnasium VectorEnv (any autoreset mode) into the same-step contract."""

from __future__ import annotations

from functools import partial

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import batch_space
from gymnasium.wrappers import RecordEpisodeStatistics

from a2c_ppo.envs.native import NativeVecEnv, check_vector_env, info_rows, merge_infos
from a2c_ppo.errors import ConfigError
from tests.envs_for_tests import CounterEnv
from tests.vec_env_checks import assert_same, rollout

N = 3
SEED = 11
STEPS = 90
MODES = [AutoresetMode.SAME_STEP, AutoresetMode.DISABLED, AutoresetMode.NEXT_STEP]


def cartpole() -> gym.Env:
    # A short time limit so that both terminations and truncations happen.
    return gym.make("CartPole-v1", max_episode_steps=14)


def counter() -> gym.Env:
    # Seeded random lengths, ends of both kinds, and step infos with nested dicts, arrays, strings.
    return CounterEnv(random_length=True, info_every=2, info_kind="nested")


def with_stats(fn):
    return RecordEpisodeStatistics(fn())


def reference(fn, n: int = N) -> SyncVectorEnv:
    """What the framework expects: same-step autoreset, RecordEpisodeStatistics in each env."""
    return SyncVectorEnv([partial(with_stats, fn)] * n, autoreset_mode=AutoresetMode.SAME_STEP)


def actions_for(n: int = N, steps: int = STEPS, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, (steps, n))


@pytest.mark.parametrize("fn", [cartpole, counter], ids=["cartpole", "counter"])
@pytest.mark.parametrize("stats_inside", [False, True], ids=["adapter-stats", "env-stats"])
@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.DISABLED], ids=lambda m: m.name)
def test_same_step_and_disabled_equal_the_reference(mode, stats_inside, fn):
    env_fn = partial(with_stats, fn) if stats_inside else fn
    ours = NativeVecEnv(SyncVectorEnv([env_fn] * N, autoreset_mode=mode))
    assert not ours.dummy_steps
    assert ours.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    actions = actions_for()
    got, want = rollout(ours, actions, SEED), rollout(reference(fn), actions, SEED)
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        assert_same(a, b, f"step {k}")
    ended = sum(int((step[2] | step[3]).sum()) for step in want[1:])
    truncated = sum(int((step[3] & ~step[2]).sum()) for step in want[1:])
    assert ended >= 2 * N and truncated >= 1  # the comparison covered ends of both kinds


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_async_vector_env_in_every_mode(mode):
    ours = NativeVecEnv(AsyncVectorEnv([cartpole] * 2, autoreset_mode=mode))
    actions = actions_for(2, 40)
    try:
        ours.reset(seed=SEED)
        finished = 0
        for action in actions:
            obs, rewards, terminated, truncated, infos = ours.step(action)
            assert obs.shape == (2, 4) and rewards.dtype == np.float64
            real_end = (terminated | truncated) & ~infos.get("reset_step", np.zeros(2, bool))
            assert np.array_equal(infos.get("_final_obs", np.zeros(2, bool)), real_end)
            if real_end.any():
                assert np.array_equal(infos["final_info"]["_episode"], real_end)
                finished += int(real_end.sum())
        assert finished >= 2
    finally:
        ours.close()


def _per_env_transitions(envs, action_lists, seed, skip_dummies):
    """Per env: the real transitions (obs, action, reward, terminated, truncated, next obs), and the
    episode statistics in order. Each env takes its next action only on real steps."""
    n = envs.num_envs
    obs, _ = envs.reset(seed=seed)
    taken = np.zeros(n, dtype=int)
    resetting = np.zeros(n, dtype=bool)  # known in advance: the step after an end is a dummy
    transitions: list[list[tuple]] = [[] for _ in range(n)]
    episodes: list[list[tuple]] = [[] for _ in range(n)]
    while (taken < len(action_lists[0])).all():
        actions = np.array([action_lists[i][taken[i]] for i in range(n)])
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        dummy = infos.get("reset_step", np.zeros(n, dtype=bool))
        assert np.array_equal(dummy, resetting if skip_dummies else np.zeros(n, bool))
        final = infos.get("_final_obs", np.zeros(n, dtype=bool))
        for i in range(n):
            if dummy[i]:
                assert rewards[i] == 0.0 and terminated[i] and not truncated[i] and not final[i]
                continue
            ended = terminated[i] or truncated[i]
            assert final[i] == ended
            after = infos["final_obs"][i] if ended else next_obs[i]
            transitions[i].append((obs[i].copy(), actions[i], rewards[i], terminated[i], truncated[i], after))
            if ended:
                ep = infos["final_info"]["episode"]
                episodes[i].append((ep["r"][i], ep["l"][i]))
            taken[i] += 1
        resetting = (terminated | truncated) & ~dummy
        obs = next_obs
    return transitions, episodes


@pytest.mark.parametrize("fn", [cartpole, counter], ids=["cartpole", "counter"])
def test_next_step_without_its_dummy_rows_is_the_reference(fn):
    action_lists = actions_for(N, 60, seed=3).T
    ours = NativeVecEnv(SyncVectorEnv([fn] * N, autoreset_mode=AutoresetMode.NEXT_STEP))
    assert ours.dummy_steps
    got, got_episodes = _per_env_transitions(ours, action_lists, SEED, skip_dummies=True)
    want, want_episodes = _per_env_transitions(reference(fn), action_lists, SEED, skip_dummies=False)
    for i in range(N):
        shortest = min(len(got[i]), len(want[i]))
        assert shortest >= 50
        for k, (a, b) in enumerate(zip(got[i][:shortest], want[i][:shortest])):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y, err_msg=f"env {i}, transition {k}")
        count = min(len(got_episodes[i]), len(want_episodes[i]))
        assert count >= 2 and got_episodes[i][:count] == want_episodes[i][:count]
    ours.close()


def test_next_step_flags_the_dummy_row_and_the_final_obs_stays_in_obs():
    envs = NativeVecEnv(SyncVectorEnv([cartpole] * N, autoreset_mode=AutoresetMode.NEXT_STEP))
    envs.reset(seed=SEED)
    ended_at = None
    for t, action in enumerate(actions_for(N, 40)):
        obs, rewards, terminated, truncated, infos = envs.step(action)
        if ended_at is None and "_final_obs" in infos:
            ended_at, ended, final_obs, final_row = t, infos["_final_obs"], infos["final_obs"], obs.copy()
            for i in np.flatnonzero(ended):
                np.testing.assert_array_equal(final_obs[i], final_row[i])
            assert "reset_step" not in infos or not (infos["reset_step"] & ended).any()
        elif ended_at is not None and t == ended_at + 1:
            assert np.array_equal(infos["reset_step"], ended) and np.array_equal(infos["_reset_step"], ended)
            assert (rewards[ended] == 0).all() and terminated[ended].all() and not truncated[ended].any()
            assert (np.abs(obs[ended]) <= 0.05).all()  # CartPole's reset state
            break
    assert ended_at is not None
    envs.reset(seed=SEED)  # a reset drops the pending dummy rows
    _, _, _, _, infos = envs.step(np.zeros(N, dtype=np.int64))
    assert "reset_step" not in infos
    envs.close()


def test_gymnasium_cartpole_vector_entry_point():
    inner = gym.make_vec("CartPole-v1", num_envs=8, vectorization_mode="vector_entry_point")
    assert inner.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    envs = NativeVecEnv(inner)
    assert envs.dummy_steps and envs.observation_space.shape == (8, 4)
    obs, _ = envs.reset(seed=SEED)
    pending = np.zeros(8, dtype=bool)
    lengths = np.zeros(8, dtype=int)
    episodes = dummies = 0
    for action in actions_for(8, 150):
        obs, rewards, terminated, truncated, infos = envs.step(action)
        dummy = infos.get("reset_step", np.zeros(8, dtype=bool))
        assert np.array_equal(dummy, pending)
        assert (rewards[dummy] == 0).all() and terminated[dummy].all() and not truncated[dummy].any()
        lengths[~dummy] += 1
        ended = (terminated | truncated) & ~dummy
        if ended.any():
            ep = infos["final_info"]["episode"]
            assert np.array_equal(infos["final_info"]["_episode"], ended)
            np.testing.assert_array_equal(ep["l"][ended], lengths[ended])
            np.testing.assert_array_equal(ep["r"][ended], lengths[ended].astype(float))  # reward 1 a step
            for i in np.flatnonzero(ended):
                np.testing.assert_array_equal(infos["final_obs"][i], obs[i])
            lengths[ended] = 0
            episodes += int(ended.sum())
        dummies += int(dummy.sum())
        pending = ended
    assert episodes >= 20 and dummies >= 20
    envs.close()


def test_reset_seeds_and_passthroughs():
    inner = SyncVectorEnv([cartpole] * N, autoreset_mode=AutoresetMode.NEXT_STEP)
    envs = NativeVecEnv(inner)
    first, _ = envs.reset(seed=5)
    assert envs.np_random_seed == (5, 6, 7)
    again, _ = envs.reset(seed=5)
    np.testing.assert_array_equal(first, again)
    assert envs.get_attr("spec")[0].id == "CartPole-v1"
    assert "NEXT_STEP" in repr(envs) and envs.spec == inner.spec
    assert envs.single_action_space == inner.single_action_space and envs.action_space == inner.action_space
    envs.close()
    assert inner.closed and envs.closed


class ScriptedVecEnv(VectorEnv):
    """Two envs ending as ``ends`` says (a list of (terminated, truncated) per step), with whatever
    metadata and spaces a test gives; the final_obs of SAME_STEP ends only where ``finals`` says."""

    def __init__(self, metadata=None, ends=(), finals=None, obs_space=None, batched_obs=None, act_space=None):
        self.num_envs = 2
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP} if metadata is None else metadata
        self.single_observation_space = obs_space or gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = batched_obs or batch_space(self.single_observation_space, 2)
        self.single_action_space = gym.spaces.Discrete(2)
        self.action_space = act_space or batch_space(self.single_action_space, 2)
        self.ends = list(ends)
        self.finals = finals

    def reset(self, *, seed=None, options=None):
        return np.zeros((2, 2), np.float32), {}

    def step(self, actions):
        terminated, truncated = (np.array(x, dtype=bool) for x in self.ends.pop(0))
        infos = {}
        if self.finals is not None:
            infos = {"final_obs": np.array([np.ones(2), None], dtype=object), "_final_obs": np.array(self.finals)}
        return np.zeros((2, 2), np.float32), np.ones(2), terminated, truncated, infos


def test_same_step_end_without_final_obs_names_the_env():
    envs = NativeVecEnv(ScriptedVecEnv(ends=[([False, True], [False, False])], finals=[True, False]))
    envs.reset()
    with pytest.raises(RuntimeError, match=r"env\(s\) \[1\] without infos\['final_obs'\]"):
        envs.step(np.zeros(2, np.int64))


def test_next_step_dummy_row_gets_reward_zero_and_terminated_whatever_the_env_says():
    ends = [([True, False], [False, False]), ([False, False], [False, False])]
    envs = NativeVecEnv(ScriptedVecEnv({"autoreset_mode": AutoresetMode.NEXT_STEP}, ends))
    envs.reset()
    envs.step(np.zeros(2, np.int64))
    _, rewards, terminated, truncated, infos = envs.step(np.zeros(2, np.int64))
    assert rewards.tolist() == [0.0, 1.0] and terminated.tolist() == [True, False]
    assert infos["reset_step"].tolist() == [True, False] and "final_obs" not in infos


def test_next_step_env_that_ends_on_its_reset_step_is_refused():
    ends = [([True, False], [False, False]), ([True, False], [False, False])]
    envs = NativeVecEnv(ScriptedVecEnv({"autoreset_mode": AutoresetMode.NEXT_STEP}, ends))
    envs.reset()
    envs.step(np.zeros(2, np.int64))
    with pytest.raises(RuntimeError, match=r"env\(s\) \[0\] on their reset step"):
        envs.step(np.zeros(2, np.int64))


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: gym.make("CartPole-v1"), "single gymnasium.Env: vectorize it"),
        (lambda: [gym.make("CartPole-v1")], "Expected a gymnasium.vector.VectorEnv, got list"),
        (lambda: ScriptedVecEnv(metadata={}), r"has no metadata\['autoreset_mode'\]; set it to one of"),
        (lambda: ScriptedVecEnv(metadata={"autoreset_mode": "Sometimes"}), "'Sometimes'; set it to one of"),
        (
            lambda: ScriptedVecEnv(batched_obs=gym.spaces.Box(-1.0, 1.0, (3, 2), np.float32)),
            r"observation_space Box.*\(3, 2\).*batch to Box.*\(2, 2\)",
        ),
        (lambda: ScriptedVecEnv(act_space=gym.spaces.MultiDiscrete([3, 3])), "action_space MultiDiscrete"),
        (
            lambda: ScriptedVecEnv(batched_obs=gym.spaces.Box(-1.0, 1.0, (2, 2), np.float64)),
            "float64.*batch_space",
        ),
    ],
    ids=["single-env", "list", "no-mode", "unknown-mode", "obs-batch", "action-batch", "obs-dtype"],
)
def test_config_errors_say_what_to_change(make, match):
    env = make()
    with pytest.raises(ConfigError, match=match):
        NativeVecEnv(env)


def test_unsupported_but_consistent_spaces_and_string_modes_are_accepted():
    dict_space = gym.spaces.Dict({"a": gym.spaces.Discrete(3)})
    check_vector_env(ScriptedVecEnv(obs_space=dict_space))
    # Box bounds written differently from batch_space's are fine: shape and dtype agree.
    check_vector_env(ScriptedVecEnv(batched_obs=gym.spaces.Box(-5.0, 5.0, (2, 2), np.float32)))
    envs = NativeVecEnv(ScriptedVecEnv(metadata={"autoreset_mode": "Disabled"}))
    assert envs.mode == AutoresetMode.DISABLED


def test_info_rows_and_merge_keep_gymnasium_layout():
    infos = {
        "x": np.array([1.0, 2.0, 3.0]),
        "_x": np.array([True, False, True]),
        "s": np.array(["a", None, "c"], dtype=object),
        "_s": np.array([True, False, True]),
        "sub": {"k": np.array([1, 2, 3]), "_k": np.array([True, True, True])},
        "_sub": np.array([True, True, True]),
    }
    rows = np.array([False, True, True])
    part = info_rows(infos, rows)
    assert_same(
        part,
        {
            "x": np.array([0.0, 0.0, 3.0]),
            "_x": np.array([False, False, True]),
            "s": np.array([None, None, "c"], dtype=object),
            "_s": np.array([False, False, True]),
            "sub": {"k": np.array([0, 2, 3]), "_k": rows},
            "_sub": rows,
        },
    )
    other = {"x": np.array([7.0, 0.0, 0.0], np.float32), "_x": np.array([True, False, False])}
    merged = merge_infos(part, other)
    assert_same(merged["x"], np.array([7.0, 0.0, 3.0]))
    assert_same(merged["_x"], np.array([True, False, True]))


def test_recurrent_ppo_learns_on_a_next_step_vector_env(tmp_path):
    """gymnasium's own CartPole resets on the next step; recurrent PPO steps its sequences through
    those reset rows and trains on the rest (tests/test_recurrent_reset_rows.py proves they add
    nothing), whatever makes the policy recurrent. Random play scores about 22."""
    from a2c_ppo import train

    folders = {"log_dir": str(tmp_path / "runs"), "save_dir": str(tmp_path / "models")}
    result = train("tests.custom_nets:cartpole_next_step", recurrent_policy=True, num_steps=128, num_env_steps=6144,
                   **folders)  # fmt: skip
    assert result.history[-1][1] > 80, result.history
    mine = train("tests.custom_nets:cartpole_next_step", policy_base="tests.custom_nets:SmallGRU", num_steps=32,
                 num_env_steps=256, **folders)  # fmt: skip
    assert mine.env_steps == 256


class FaultyVecEnv(ScriptedVecEnv):
    """A same-step ScriptedVecEnv whose reset, step or close does ``fault`` (never ending an episode)."""

    def __init__(self, fault=None):
        super().__init__(ends=[([False, False], [False, False])] * 100)
        self.fault = fault

    def reset(self, *, seed=None, options=None):
        obs, infos = super().reset(seed=seed, options=options)
        return obs, None if self.fault == "reset-infos" else infos

    def step(self, actions):
        if self.fault == "raises":
            raise KeyError("the simulator lost a body")
        obs, rewards, terminated, truncated, infos = super().step(actions)
        short_final = {"final_obs": np.array([np.ones(1), None], dtype=object), "_final_obs": np.array([True, False])}
        faults = {
            "rewards": (obs, rewards[:1], terminated, truncated, infos),  # numpy would broadcast it to every env
            "flags": (obs, rewards, terminated[:, None], truncated, infos),
            "obs": (obs[:1], rewards, terminated, truncated, infos),
            "obs-list": (list(obs), rewards, terminated, truncated, infos),
            "infos": (obs, rewards, terminated, truncated, None),
            "final-obs": (obs, rewards, np.array([True, False]), truncated, short_final),  # its last observation
        }
        return faults.get(self.fault, (obs, rewards, terminated, truncated, infos))

    def close_extras(self, **kwargs):
        if self.fault == "close":
            raise RuntimeError("the simulator would not shut down")


@pytest.mark.parametrize(
    "fault,match",
    [
        ("raises", r"FaultyVecEnv raised during step: KeyError: 'the simulator lost a body'"),
        ("rewards", r"FaultyVecEnv's step returned rewards of shape \(1,\) where one per env, \(2,\)"),
        ("flags", r"step returned terminated of shape \(2, 1\)"),
        ("obs", r"step returned observations of shape \(1, 2\) where its observation_space has \(2, 2\)"),
        ("obs-list", r"step returned observations as a list, not an array"),
        ("infos", r"step returned infos of type NoneType where a dict"),
        ("reset-infos", r"reset returned infos of type NoneType where a dict"),
        ("final-obs", r"infos\['final_obs'\]\[0\] of shape \(1,\) where its single_observation_space has \(2,\)"),
    ],
)
def test_a_vector_env_that_raises_or_breaks_the_contract_is_an_env_failure_naming_it(fault, match):
    """What the user's vector env raises or returns malformed stops the run as an env failure
    (EnvWorkerError, exit 3), not as a traceback from the rollout or a silently broadcast reward."""
    from a2c_ppo.envs.subproc import EnvWorkerError

    envs = NativeVecEnv(FaultyVecEnv(fault))
    with pytest.raises(EnvWorkerError, match=match) as caught:
        envs.reset()
        envs.step(np.zeros(2, np.int64))
    if fault == "raises":  # the env's own exception, for pdb.post_mortem
        assert isinstance(caught.value.__cause__, KeyError)


def test_a_vector_env_whose_close_raises_is_closed_quietly():
    envs = NativeVecEnv(FaultyVecEnv("close"))
    envs.reset()
    envs.close()  # as the framework's own envs' close: what it raises is ignored, at a run's end too
    assert envs.closed


def test_a_vector_env_whose_first_reset_breaks_the_contract_is_refused_at_start(tmp_path):
    from a2c_ppo import train

    with pytest.raises(ConfigError, match=r"reset returned infos of type NoneType where a dict \(\{\} for none\)"):
        train(partial(FaultyVecEnv, "reset-infos"), log_dir=str(tmp_path / "runs"), save_dir=str(tmp_path / "m"))
    assert not (tmp_path / "runs").exists()
