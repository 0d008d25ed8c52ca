"""Spaces and step values at their edges: what is refused before anything starts (exit 2, one
paragraph) and what an env that returns it at run time is told (exit 3, naming the env)."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

from a2c_ppo.cli import train_main
from a2c_ppo.envs.make import make_env
from a2c_ppo.envs.subproc import SubprocVecEnv
from tests.envs_edges import ValuesEnv

TINY = ["--num-processes", "2", "--num-steps", "8", "--num-env-steps", "32", "--vec-env", "sync"]


def outcome(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = train_main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


REFUSED_SPACES = [
    ("SpacesEnv", {"observation": "empty_box"}, "has observation space Box([], [], (0,), float32), which holds "
     "no entries: the policy would see nothing"),
    ("SpacesEnv", {"observation": "empty_multidiscrete_part"}, "observation part 'z' is MultiDiscrete([]), which "
     "holds no entries: the policy would learn nothing from it. Wrap the env to drop part 'z'"),
    ("SpacesEnv", {"action": "empty_box"}, "has action space Box([], [], (0,), float32), which holds no entries: "
     "the policy would have nothing to choose"),
    ("SpacesEnv", {"action": "empty_multidiscrete"}, "has action space MultiDiscrete([]), which holds no entries"),
    ("native", {"action": "empty_box"}, "which holds no entries: the policy would have nothing to choose"),
    ("SpacesEnv", {"action": "square_box"}, "has action space Box(-1.0, 1.0, (2, 2), float32), which no policy "
     "takes: supported are Discrete, a 1-D Box, MultiBinary and MultiDiscrete. Wrap the env in a "
     "gymnasium.ActionWrapper"),
    ("native", {"action": "tuple"}, "has action space Tuple(Discrete(2), Discrete(3)), which no policy takes"),
]  # fmt: skip


@pytest.mark.parametrize("factory, kwargs, phrase", REFUSED_SPACES, ids=lambda v: str(v)[:40])
def test_spaces_the_policy_cannot_take_are_refused_before_anything_starts(factory, kwargs, phrase, tmp_path, capsys):
    """A space of no entries trained on nothing (an empty Box observation), or crashed with a
    traceback after the run folder was made (an empty Box action, exit 1)."""
    argv = ["--env-name", f"tests.envs_edges:{factory}", "--env-kwargs", json.dumps(kwargs), *TINY]
    code, err = outcome([*argv, "--log-dir", str(tmp_path / "runs"), "--save-dir", str(tmp_path / "models")], capsys)
    assert code == 2, err
    assert phrase in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "runs").exists()


BAD_VALUES = [
    ({"reward": None}, "env 0 returned the reward None; a step's reward is one number"),
    ({"reward": "1.5"}, "env 0 returned the reward '1.5'; a step's reward is one number"),
    ({"reward": [1.0]}, "env 0 returned the reward [1.0]; a step's reward is one number"),
    ({"reward": 10**400}, f"env 0 returned the reward {10**400}; a step's reward is one number"),
    (
        {"obs": None, "observation": "discrete"},
        "env 0 returned an observation None, not a number of its space's dtype int64",
    ),
    (
        {"obs": "abc", "observation": "discrete"},
        "env 0 returned an observation 'abc', not a number of its space's dtype int64",
    ),
    ({"terminated": [True, False]}, "env 0 returned terminated array([ True, False]); a step's terminated is one bool"),
]


@pytest.mark.parametrize("kwargs, phrase", BAD_VALUES, ids=lambda v: str(v)[:30])
def test_a_step_value_that_is_unusable_is_an_env_failure_naming_the_env_and_the_value(kwargs, phrase, tmp_path, capsys):
    """A reward of None (or text, a list, an int past float's range) stopped the run with gymnasium's
    ``unsupported operand type(s) for +=: 'float' and 'NoneType'`` from RecordEpisodeStatistics,
    an observation that is no number with numpy's "int() argument must be a string, ... not 'NoneType'",
    and a flag of two values with numpy's ("The truth value of an array with more than one element is
    ambiguous"), neither naming the env nor the value."""
    argv = ["--env-name", "tests.envs_edges:ValuesEnv", "--env-kwargs", json.dumps(kwargs), *TINY]
    code, err = outcome([*argv, "--log-dir", str(tmp_path / "runs"), "--save-dir", str(tmp_path / "models")], capsys)
    assert code == 3, err
    assert f"env 0 (main process) raised during step: ValueError: {phrase}\n" in err


def test_a_worker_names_the_unusable_value_too(tmp_path, capsys):
    argv = ["--env-name", "tests.envs_edges:ValuesEnv", "--env-kwargs", '{"reward": null}', *TINY[:-2]]
    argv += ["--vec-env", "subproc", "--num-workers", "1", "--log-dir", str(tmp_path), "--save-dir", str(tmp_path)]
    code, err = outcome(argv, capsys)
    assert code == 3, err
    assert "env 0 (worker 0) raised during step: ValueError: env 0 returned the reward None; a step's reward" in err


def test_numbers_of_every_type_are_rewards_and_flags():
    """numpy and Python scalars, bools and 0-d arrays are taken as the numbers they are."""
    for reward, flag in ((np.float64(0.5), np.bool_(False)), (True, 0), (np.array(0.5), np.array(False))):
        env_fn = partial(make_env, "values", factory=partial(ValuesEnv, reward, flag, flag))
        envs = SubprocVecEnv([env_fn] * 2, in_main=2)
        envs.reset(seed=0)
        _, rewards, terminated, truncated, _ = envs.step(np.zeros(2, np.int64))
        envs.close()
        assert rewards.tolist() == [float(reward)] * 2 and not terminated.any() and not truncated.any()
