"""The Python API at its edges, as a new user meets them: numpy settings, the env given once or
left to the checkpoint, callbacks and networks checked before anything starts, inputs of
``act`` and ``evaluate`` checked against the policy's spaces, envs made by lambdas, and the
caller's process left as it was."""

from __future__ import annotations

import functools
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

import a2c_ppo
from a2c_ppo.api import load, train
from a2c_ppo.checkpoint import load_checkpoint
from a2c_ppo.envs.make import FACTORIES, register_factory
from a2c_ppo.envs.memory_envs import make_image_target
from tests.envs_for_spaces import BitsDictEnv

SMALL = {"num_processes": 2, "num_steps": 16, "vec_env": "sync", "num_env_steps": 64}


def folders(tmp_path) -> dict[str, str]:
    return {"log_dir": str(tmp_path / "runs"), "save_dir": str(tmp_path / "models")}


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory) -> str:
    """A CartPole checkpoint."""
    return train("CartPole-v1", **SMALL, **folders(tmp_path_factory.mktemp("cartpole"))).checkpoint


def test_numpy_numbers_are_settings_like_any_other(tmp_path):
    result = train("CartPole-v1", **{**SMALL, "num_env_steps": np.int64(64)}, lr=np.float32(0.001), **folders(tmp_path))
    saved = load_checkpoint(result.checkpoint)["config"]  # before: JSON refused int64 at the end
    assert result.env_steps == 64 and saved["num_env_steps"] == 64 and saved["lr"] == pytest.approx(0.001)


def test_a_resume_without_env_continues_on_the_checkpoints_env(tmp_path):
    first = train("Pendulum-v1", num_mini_batch=4, **SMALL, **folders(tmp_path))  # its entry: 64
    resumed = train(resume=first.checkpoint, num_env_steps=128, **folders(tmp_path))
    saved = load_checkpoint(resumed.checkpoint)["config"]
    assert resumed.env_steps == 128 and saved["env_name"] == "Pendulum-v1"


def test_the_env_as_env_name_is_used_and_given_twice_is_refused(tmp_path):
    result = train(env_name="Acrobot-v1", num_mini_batch=4, **SMALL, **folders(tmp_path))
    assert load_checkpoint(result.checkpoint)["config"]["env_name"] == "Acrobot-v1"
    with pytest.raises(a2c_ppo.ConfigError, match="got the env twice"):
        train("CartPole-v1", env_name="Acrobot-v1", **SMALL, **folders(tmp_path))


def test_an_env_made_already_is_told_to_pass_what_makes_it(tmp_path):
    for made in (gym.make("CartPole-v1"), gym.make_vec("CartPole-v1", num_envs=2)):
        with pytest.raises(a2c_ppo.ConfigError, match="an env made already: pass what makes it"):
            train(made, **SMALL, **folders(tmp_path))
        made.close()


@pytest.mark.parametrize("episodes", [2.5, "2", None, 0, -1, True])
def test_evaluate_refuses_a_count_that_is_not_a_whole_number(cartpole, episodes, monkeypatch):
    monkeypatch.setattr("a2c_ppo.agent.build_envs", lambda *a, **k: pytest.fail("envs built"))  # 2.5 used to hang
    with pytest.raises(a2c_ppo.ConfigError, match="episodes must be a whole number"):
        load(cartpole).evaluate(episodes=episodes)


def test_evaluate_refuses_an_env_with_other_spaces(cartpole):
    with pytest.raises(a2c_ppo.ConfigError, match=r"'Acrobot-v1' has observation space Box\(6,\) float32"):
        load(cartpole).evaluate("Acrobot-v1", episodes=1)


@pytest.mark.parametrize("obs", [np.zeros((2, 3, 4)), np.zeros(5), np.zeros((3, 5)), np.float32(1.0)])
def test_act_refuses_observations_of_another_shape(cartpole, obs):
    with pytest.raises(ValueError, match=r"the policy takes \(4,\)"):
        load(cartpole).act(obs)


def test_act_takes_one_observation_or_a_batch(cartpole):
    agent = load(cartpole)
    assert agent.act([0.0, 0.0, 0.0, 0.0]) in (0, 1) and agent.act(np.zeros((3, 4))).shape == (3,)
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="act: the observation holds a NaN or an infinity"):
            agent.act([0.0, bad, 0.0, 0.0])


def test_act_refuses_a_class_outside_a_discrete_observation_space(tmp_path):
    agent = load(train("FrozenLake-v1", **SMALL, **folders(tmp_path)).checkpoint)
    assert agent.act(15) in range(4)
    with pytest.raises(ValueError, match="holds values outside Discrete"):
        agent.act(16)
    assert agent.act(3.0) == agent.act(3)  # a whole number given as a float is that class
    with pytest.raises(ValueError, match="not whole numbers, and Discrete\\(16\\) holds classes"):
        agent.act(1.5)


def test_spaces_differ_where_a_policy_would_read_them_differently():
    from a2c_ppo.agent import _structure

    box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    assert _structure(gym.spaces.Dict(a=box)) != _structure(gym.spaces.Dict(b=box))  # before: every Dict alike
    assert _structure(box) != _structure(gym.spaces.Box(0, 255, (2,), np.uint8))
    assert _structure(box) == _structure(gym.spaces.Box(-5.0, 5.0, (2,), np.float32))  # bounds: an env argument


def test_act_takes_one_image_either_way_round(tmp_path):
    flags = {**SMALL, "num_env_steps": 32, "hidden_size": 16}
    agent = load(train(make_image_target, **flags, **folders(tmp_path)).checkpoint)
    channels, height, width = agent.observation_space.shape
    assert agent.act(np.zeros((height, width, channels), np.uint8)) in range(agent.action_space.n)
    assert agent.act(np.zeros((channels, height, width), np.uint8)) in range(agent.action_space.n)
    assert agent.act(np.zeros((3, height, width, channels), np.uint8)).shape == (3,)


def test_act_takes_a_batch_of_dict_observations_as_one_dict_of_arrays(tmp_path):
    agent = load(train(BitsDictEnv, **SMALL, **folders(tmp_path)).checkpoint)
    one = {"image": np.zeros((6, 6, 3), np.uint8), "vector": np.ones(2, np.float32), "discrete": 1}
    assert agent.act(one).shape == (3,)
    batch = {key: np.stack([np.asarray(value)] * 2) for key, value in one.items()}
    assert agent.act(batch).shape == (2, 3)
    with pytest.raises(ValueError, match="one dict of arrays with a leading batch axis"):
        agent.act([one, one])


def test_act_takes_the_envs_own_observation_with_the_mask_of_its_info(tmp_path):
    agent = load(train("Taxi-v4", **SMALL, **folders(tmp_path)).checkpoint)
    env = gym.make("Taxi-v4")
    obs, info = env.reset(seed=0)
    for _ in range(20):  # never a forbidden action (the mask allows 2 of 6 moves at the start)
        action = agent.act(obs, action_mask=info["action_mask"])
        assert info["action_mask"][action] == 1
        obs, _, terminated, truncated, info = env.step(action)
    with pytest.raises(ValueError, match="allows no action"):
        agent.act(obs, action_mask=np.zeros(6, np.int8))


class TwoChoicesEnv(gym.Env):
    """MultiDiscrete([2, 3]) actions with an info mask allowing every class: one mask part per dimension."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.MultiDiscrete([2, 3])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {"action_mask": np.ones(5, np.int8)}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {"action_mask": np.ones(5, np.int8)}


def test_act_refuses_a_mask_that_leaves_a_dimension_no_action(tmp_path):
    agent = load(train(TwoChoicesEnv, **SMALL, **folders(tmp_path)).checkpoint)
    obs = np.zeros(2, np.float32)
    assert agent.act(obs, action_mask=np.array([0, 1, 0, 0, 1], np.int8)).tolist() == [1, 2]
    with pytest.raises(ValueError, match="allows no action"):
        agent.act(obs, action_mask=np.array([1, 0, 0, 0, 0], np.int8))  # the second dimension: nothing


def test_two_lambdas_are_two_envs_with_their_own_copies(tmp_path):
    first = train(lambda: gym.make("CartPole-v1"), **SMALL, **folders(tmp_path))
    second = train(lambda: gym.make("MountainCar-v0"), **SMALL, **folders(tmp_path))
    assert load(first.checkpoint).evaluate(episodes=1)  # its own env: before, the second had replaced it
    copies = sorted(os.listdir(tmp_path / "models" / "ppo"))
    assert len(copies) == 2 and not any(set("<>:") & set(name) for name in copies)
    assert load(second.checkpoint).observation_space.shape == (2,)


def test_factories_no_import_finds_are_told_apart_and_importable_ones_replaced():
    first, second = functools.partial(gym.make, "CartPole-v1"), functools.partial(gym.make, "Acrobot-v1")
    assert register_factory(first) != register_factory(second) and register_factory(first) == register_factory(first)
    assert register_factory(make_image_target) == "a2c_ppo.envs.memory_envs:make_image_target"
    # a partial's or a callable object's name in <...>: importing `functools:partial` or the class
    # in another process would build something else; there load asks for the env
    assert register_factory(first).startswith("gymnasium.envs.registration:<partial make>")

    class Maker:
        def __call__(self) -> gym.Env:
            return gym.make("CartPole-v1")

    assert register_factory(Maker()).endswith(".Maker object>")
    assert register_factory(Maker().__call__).endswith(".Maker.__call__ bound>")


def test_a_lambdas_checkpoint_elsewhere_is_loaded_with_the_env_given(tmp_path, monkeypatch):
    result = train(lambda: gym.make("CartPole-v1"), **SMALL, **folders(tmp_path))
    name = load_checkpoint(result.checkpoint)["config"]["env_name"]
    monkeypatch.delitem(FACTORIES, name)  # as in another process
    with pytest.raises(a2c_ppo.ConfigError, match=r"give the env: load\(path, env=\.\.\.\)"):
        load(result.checkpoint)
    assert load(result.checkpoint, env="CartPole-v1").act(np.zeros(4)) in (0, 1)
    with pytest.raises(a2c_ppo.ConfigError, match="trained on an env with observation space"):
        load(result.checkpoint, env="Acrobot-v1")


def test_a_resume_of_a_lambdas_run_elsewhere_asks_for_the_env(tmp_path, monkeypatch):
    result = train(lambda: gym.make("CartPole-v1"), **SMALL, **folders(tmp_path))
    monkeypatch.delitem(FACTORIES, load_checkpoint(result.checkpoint)["config"]["env_name"])  # another process
    with pytest.raises(a2c_ppo.ConfigError, match="code the training script made itself"):
        train(resume=result.checkpoint, num_env_steps=128, **folders(tmp_path))
    resumed = train("CartPole-v1", resume=result.checkpoint, num_env_steps=128, **folders(tmp_path))
    assert resumed.env_steps == 128


@pytest.mark.parametrize("callbacks", [5, [5], "x"])
def test_callbacks_that_are_not_callables_are_refused_before_the_run(tmp_path, callbacks):
    with pytest.raises(a2c_ppo.ConfigError, match="callbacks must be a callable"):
        train("CartPole-v1", callbacks=callbacks, **SMALL, **folders(tmp_path))
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize("callback", [lambda: None, lambda info, extra: None])
def test_callbacks_that_cannot_take_the_update_info_are_refused_before_the_run(tmp_path, callback):
    with pytest.raises(a2c_ppo.ConfigError, match="called with one argument, an UpdateInfo"):
        train("CartPole-v1", callbacks=[print, callback], **SMALL, **folders(tmp_path))
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize("answer, updates", [(np.False_, 1), (False, 1), (None, 4), (0, 4), (np.zeros(2), 4)])
def test_a_false_answer_stops_the_run_and_none_goes_on(tmp_path, answer, updates):
    seen: list[int] = []

    def callback(info: a2c_ppo.UpdateInfo):
        seen.append(info.update)
        return answer

    train("CartPole-v1", callbacks=callback, **{**SMALL, "num_env_steps": 128}, **folders(tmp_path))
    assert len(seen) == updates


class _Base(nn.Module):
    is_recurrent, recurrent_hidden_state_size, output_size = False, 1, 8

    def __init__(self, observation_space: gym.Space) -> None:
        super().__init__()
        self.body, self.value = nn.Linear(observation_space.shape[0], 8), nn.Linear(8, 1)


class FlatValue(_Base):
    def forward(self, obs, rnn_hxs, masks):
        features = self.body(obs)
        return self.value(features)[:, 0], features, rnn_hxs


class WideFeatures(_Base):
    """Features one wider than its output_size says, which the action head cannot read."""

    def forward(self, obs, rnn_hxs, masks):
        features = torch.cat([self.body(obs), obs[:, :1]], dim=1)
        return self.value(features[:, :8]), features, rnn_hxs


class ComplexBuffer(_Base):
    """Holds a complex buffer, which a checkpoint cannot carry."""

    def __init__(self, observation_space: gym.Space) -> None:
        super().__init__(observation_space)
        self.register_buffer("phase", torch.zeros(2, dtype=torch.complex64))

    def forward(self, obs, rnn_hxs, masks):
        features = self.body(obs)
        return self.value(features), features, rnn_hxs


class TwoOutputs(_Base):
    def forward(self, obs, rnn_hxs, masks):
        features = self.body(obs)
        return self.value(features), features


class NotFinite(_Base):
    def forward(self, obs, rnn_hxs, masks):
        features = self.body(obs) * float("nan")
        return self.value(features), features, rnn_hxs


class OneStepCell(_Base):
    """Recurrent, but steps one row per state: an update's sequences do not fit it."""

    is_recurrent, recurrent_hidden_state_size = True, 8

    def __init__(self, observation_space: gym.Space) -> None:
        super().__init__(observation_space)
        self.cell = nn.GRUCell(observation_space.shape[0], 8)

    def forward(self, obs, rnn_hxs, masks):
        rnn_hxs = self.cell(obs, rnn_hxs * masks)
        return self.value(rnn_hxs), rnn_hxs, rnn_hxs


class HalfState(_Base):
    """Recurrent, but returns half of each state."""

    is_recurrent, recurrent_hidden_state_size = True, 8

    def forward(self, obs, rnn_hxs, masks):
        features = self.body(obs)
        return self.value(features), features, rnn_hxs[:, :4]


@pytest.mark.parametrize(
    "base, phrase",
    [(FlatValue, r"returned a value of shape \(4,\)"), (TwoOutputs, "not enough values to unpack"),
     (WideFeatures, r"features of shape \(4, 9\) for 4 observations; .*features \(B, output_size 8\)"),
     (ComplexBuffer, r"holds complex tensors \(base.phase\), which a2c_ppo's checkpoints do not"),
     (NotFinite, "not finite"), (OneStepCell, "T x N rows, time-major"),
     (HalfState, r"returned rnn_hxs of shape \(4, 4\) for 4 states of its recurrent_hidden_state_size 8")],
)  # fmt: skip
def test_a_network_that_does_not_keep_the_contract_is_refused_before_the_run(tmp_path, base, phrase):
    with pytest.raises(a2c_ppo.ConfigError, match=phrase) as info:
        train("CartPole-v1", policy_base=base, **SMALL, **folders(tmp_path))
    assert "--policy-base '" in str(info.value) and not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize(
    "setting, phrase",
    [({"hidden_size": 32}, "the built-in network"), ({"recurrent_policy": True}, "the built-in network"),
     ({"activation": "relu"}, "the built-in network"),
     # refused as needing --recurrent-policy, which the refusal above then refused
     ({"recurrent_type": "lstm"}, "--recurrent-type shapes the built-in network")],
)  # fmt: skip
def test_settings_of_the_built_in_network_are_refused_with_ones_own(tmp_path, setting, phrase):
    with pytest.raises(a2c_ppo.ConfigError, match=phrase) as info:
        train("CartPole-v1", policy_base="tests.custom_nets:SmallGRU", **setting, **SMALL, **folders(tmp_path))
    assert "give --recurrent-policy" not in str(info.value)


class _StartsAtOne(gym.Env):
    """Observations Discrete(3, start=1): 0 is none of them."""

    observation_space, action_space = gym.spaces.Discrete(3, start=1), gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 1, {}

    def step(self, action):
        return 1 + int(action), 1.0, False, True, {}


class Embedded(nn.Module):
    is_recurrent, recurrent_hidden_state_size, output_size = False, 1, 4

    def __init__(self, observation_space: gym.Space) -> None:
        super().__init__()
        self.start = int(observation_space.start)
        self.table, self.value = nn.Embedding(int(observation_space.n), 4), nn.Linear(4, 1)

    def forward(self, obs, rnn_hxs, masks):
        features = self.table(obs.long().view(-1) - self.start)
        return self.value(features), features, rnn_hxs


def test_a_network_is_probed_with_observations_inside_its_space(tmp_path):
    """Zeros are outside Discrete(3, start=1): the probe used them and refused this network."""
    result = train(_StartsAtOne, policy_base=Embedded, **SMALL, **folders(tmp_path))
    assert result.env_steps == 64


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_recurrent_network_of_ones_own_trains_and_acts(tmp_path, algo):
    result = train("CartPole-v1", algo=algo, policy_base="tests.custom_nets:SmallGRU", **SMALL, **folders(tmp_path))
    agent = load(result.checkpoint, trust_checkpoint=True)
    assert agent.policy.is_recurrent and agent.act(np.zeros(4)) in (0, 1)


def test_a_recurrent_network_of_ones_own_is_refused_by_acktr_before_the_run(tmp_path):
    """As --recurrent-policy is: a traceback from inside the run before."""
    with pytest.raises(a2c_ppo.ConfigError, match="--algo acktr does not support --policy-base") as info:
        train("CartPole-v1", algo="acktr", policy_base="tests.custom_nets:SmallGRU", **SMALL, **folders(tmp_path))
    assert "is_recurrent" in str(info.value) and not os.path.exists(tmp_path / "runs")


def test_a_recurrent_network_of_ones_own_gets_sequences_for_every_minibatch(tmp_path):
    """One env's whole column is one sequence, too few for 4 minibatches: PPO cuts it into chunks
    as for --recurrent-policy (the first update raised a ValueError before)."""
    result = train("CartPole-v1", policy_base="tests.custom_nets:SmallGRU", **{**SMALL, "num_processes": 1},
                   num_mini_batch=4, **folders(tmp_path))  # fmt: skip
    assert result.env_steps == 64
    assert load_checkpoint(result.checkpoint)["config"]["recurrent_chunk_length"] is None  # chosen at each launch
    # a resume with shorter columns chooses again (4 would make only 2 chunks of 8 steps)
    resumed = train(resume=result.checkpoint, trust_checkpoint=True, num_steps=8, num_env_steps=80,
                    **folders(tmp_path))  # fmt: skip
    assert resumed.env_steps == 80


def test_a_batch_norm_network_of_ones_own_acts_on_a_single_env(tmp_path):
    """Rollouts act in eval mode (running statistics): in train mode a batch of one env's
    observation stopped the run (batch norm needs more than one value per channel)."""
    from tests.custom_nets import ZeroRowsNet

    result = train("CartPole-v1", policy_base=ZeroRowsNet, **{**SMALL, "num_processes": 1}, **folders(tmp_path))
    assert result.env_steps == 64


def test_a_chunk_length_is_taken_for_a_recurrent_network_of_ones_own_and_refused_for_another(tmp_path):
    """Refused before as needing --recurrent-policy, a flag --policy-base refuses."""
    one_env = {**SMALL, "num_processes": 1, "recurrent_chunk_length": 8}
    result = train("CartPole-v1", policy_base="tests.custom_nets:SmallGRU", num_mini_batch=2, **one_env,
                   **folders(tmp_path))  # fmt: skip
    assert load_checkpoint(result.checkpoint)["config"]["recurrent_chunk_length"] == 8
    with pytest.raises(a2c_ppo.ConfigError, match="--policy-base 'tests.custom_nets:SmallNet' is not one"):
        train("CartPole-v1", policy_base="tests.custom_nets:SmallNet", **one_env, **folders(tmp_path))


def test_a_resume_with_more_minibatches_chooses_the_chunk_length_again(tmp_path):
    """The first launch chose chunks of 8 (1 column of 32 steps, 4 minibatches) and the checkpoint
    kept that 8, so a resume with 8 minibatches was refused, naming a flag never typed."""
    result = train("CartPole-v1", recurrent_policy=True, num_processes=1, num_steps=32, num_mini_batch=4,
                   num_env_steps=64, **folders(tmp_path))  # fmt: skip
    resumed = train(resume=result.checkpoint, num_mini_batch=8, num_env_steps=128, **folders(tmp_path))
    assert resumed.env_steps == 128


def test_train_gives_back_the_callers_thread_count(tmp_path):
    torch.set_num_threads(2)
    try:
        result = train("CartPole-v1", num_threads=1, **SMALL, **folders(tmp_path))
        assert torch.get_num_threads() == 2 and result.run_dir == os.path.dirname(result.checkpoint)
    finally:
        torch.set_num_threads(1)


def test_load_takes_the_network_again_in_place_of_the_one_the_checkpoint_names(tmp_path):
    result = train("CartPole-v1", policy_base="tests.custom_nets:SmallNet", **SMALL, **folders(tmp_path))
    with pytest.raises(a2c_ppo.ConfigError, match="names code to import, --policy-base 'tests.custom_nets:SmallNet'"):
        load(result.checkpoint)
    from tests.custom_nets import SmallNet

    for given in (SmallNet, "tests.custom_nets:SmallNet"):
        assert load(result.checkpoint, policy_base=given).act(np.zeros(4)) in (0, 1)


def test_a_module_not_found_leaves_sys_path_as_it_was(tmp_path, monkeypatch):
    """The current folder is tried for ``module:factory`` (as ``python -m`` does), and taken off
    ``sys.path`` again when the module is not there either."""
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", str(tmp_path))])
    before = list(sys.path)
    with pytest.raises(a2c_ppo.ConfigError):
        train("no_such_module_here:Env", **SMALL, **folders(tmp_path))
    assert sys.path == before


def test_a_resume_with_a_network_the_weights_do_not_fit_blames_the_network_not_the_checkpoint(tmp_path):
    first = train("CartPole-v1", policy_base="tests.custom_nets:SmallNet", **SMALL, **folders(tmp_path))
    with pytest.raises(a2c_ppo.ConfigError, match=r"--policy-base 'tests.custom_nets:SmallNet': the weights of "
                       r"--resume .* do not fit that network \(it was trained with tests.custom_nets:SmallNet and no "
                       r"--policy-kwargs\)"):  # fmt: skip
        train(resume=first.checkpoint, policy_base="tests.custom_nets:SmallNet", policy_kwargs={"width": 32},
              num_env_steps=128)  # fmt: skip
    # a replay takes the checkpoint's keyword arguments: no --policy-kwargs to give (load, enjoy.py, the export)
    with pytest.raises(a2c_ppo.ConfigError, match=r"do not fit that network .*trained with\.$") as info:
        load(first.checkpoint, policy_base="tests.custom_nets:SmallGRU")
    assert "--policy-kwargs." not in str(info.value)
