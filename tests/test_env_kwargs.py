"""--env-kwargs: the env's constructor arguments reach every env a run builds (worker processes,
evaluation, replay), a checkpoint keeps them, enjoy.py can replace them, an env entry can give
them and typed ones win."""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import subprocess
import sys

import pytest

from a2c_ppo import train
from a2c_ppo.arguments import resolve
from a2c_ppo.checkpoint import load_checkpoint
from a2c_ppo.envs import check_env_id
from a2c_ppo.envs.frames import EnvRecipe, recipe_of
from a2c_ppo.errors import ConfigError
from tests.helpers import ROOT

# Sutton & Barto's CartPole reward: 0 a step and -1 at the fall, where the default gives +1 a step.
SUTTON_BARTO = {"sutton_barto_reward": True}


def replayed_mean(checkpoint: str, *extra: str) -> float:
    enjoy = [sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", checkpoint, "--num-episodes", "2"]
    played = subprocess.run([*enjoy, *extra], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert played.returncode == 0, played.stderr
    match = re.search(r"mean return over 2 episodes: (-?[\d.]+)", played.stdout)
    assert match, played.stdout
    return float(match.group(1))


def test_env_kwargs_reach_the_worker_envs_and_the_evaluation_and_are_kept_for_replay(tmp_path):
    result = train("CartPole-v1", env_kwargs=SUTTON_BARTO, vec_env="subproc", num_workers=1, num_processes=2,
                   num_steps=64, num_env_steps=1024, eval_interval=4, eval_episodes=2, log_dir=str(tmp_path / "runs"),
                   save_dir=str(tmp_path / "models"))  # fmt: skip
    returns = [mean for _, mean in result.history if mean == mean]  # NaN until an episode ends
    assert returns and max(returns) <= 0  # with the default reward every episode returns 8 or more
    saved = load_checkpoint(result.checkpoint)["config"]
    assert saved["env_kwargs"] == '{"sutton_barto_reward": true}'
    (progress,) = (tmp_path / "runs").glob("*/progress.csv")
    with open(progress) as f:
        evaluations = [float(row["eval/mean_return"]) for row in csv.DictReader(f) if row["eval/mean_return"]]
    assert evaluations and max(evaluations) <= 0  # the evaluation envs too
    assert replayed_mean(result.checkpoint) <= 0
    assert replayed_mean(result.checkpoint, "--env-kwargs", "{}") >= 8  # replaced: the default reward


@pytest.mark.skipif(importlib.util.find_spec("mujoco") is None, reason="needs the mujoco extra")
def test_the_ant_entry_trains_on_v4s_observation_unless_env_kwargs_are_typed(tmp_path):
    request = resolve(["--env-name", "Ant-v5", "--log-dir", str(tmp_path)])
    assert request.origins["env_kwargs"] == "env entry"
    assert check_env_id("Ant-v5", "off", "auto", recipe_of(request.config))[0].shape == (27,)
    typed = resolve(["--env-name", "Ant-v5", "--env-kwargs", "{}", "--log-dir", str(tmp_path)])
    assert typed.config.env_kwargs == "{}" and typed.origins["env_kwargs"] == "typed"
    assert check_env_id("Ant-v5", "off", "auto", recipe_of(typed.config))[0].shape == (105,)


def test_a_factory_gets_env_kwargs_too():
    from a2c_ppo.envs.make import make_env

    env = make_env("tests.envs_for_tests:CounterEnv", recipe=EnvRecipe({"terminate_at": 2}))
    env.reset(seed=0)
    assert [env.step(0)[2] for _ in range(2)] == [False, True]


def test_text_env_kwargs_from_a_checkpoint_need_the_user_to_give_or_trust_them(tmp_path):
    import a2c_ppo

    result = train("FrozenLake-v1", env_kwargs={"map_name": "4x4", "is_slippery": False}, num_processes=2,
                   num_steps=16, num_env_steps=32, log_dir=str(tmp_path / "runs"),
                   save_dir=str(tmp_path / "models"))  # fmt: skip
    enjoy = [sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", result.checkpoint, "--num-episodes", "1"]
    refused = subprocess.run(enjoy, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert refused.returncode == 2 and "gives the env text arguments" in refused.stderr
    assert "Traceback" not in refused.stderr
    for extra in (["--trust-checkpoint"], ["--env-kwargs", '{"map_name": "4x4"}']):
        played = subprocess.run([*enjoy, *extra], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert played.returncode == 0, played.stderr
    with pytest.raises(a2c_ppo.ConfigError, match="text arguments"):
        a2c_ppo.load(result.checkpoint)
    assert a2c_ppo.load(result.checkpoint, trust_checkpoint=True).config.env_arguments["map_name"] == "4x4"
    agent = a2c_ppo.load(result.checkpoint, env_kwargs={"map_name": "4x4"})  # given by the caller: no trust needed
    assert agent.config.env_arguments == {"map_name": "4x4"} and len(agent.evaluate(episodes=2)) == 2
    with pytest.raises(a2c_ppo.ConfigError, match="no_such_kwarg"):
        agent.evaluate(episodes=1, env_kwargs={"no_such_kwarg": 1})
    plain = train("FrozenLake-v1", env_kwargs={"is_slippery": False}, num_processes=2, num_steps=16,
                  num_env_steps=32, log_dir=str(tmp_path / "runs"), save_dir=str(tmp_path / "models"))  # fmt: skip
    assert a2c_ppo.load(plain.checkpoint).config.env_arguments == {"is_slippery": False}  # no text: data enough


def test_text_anywhere_in_nested_env_kwargs_counts():
    from types import SimpleNamespace

    from a2c_ppo.checkpoint import check_trusted
    from a2c_ppo.errors import ConfigError

    # a nested object's keys count: an env may use them as names (MuJoCo's camera settings)
    for kwargs in ('{"camera": {"/etc/x": 1}}', '{"sizes": [1, "a"]}', '{"name": "x"}'):
        with pytest.raises(ConfigError, match="text arguments"):
            check_trusted(SimpleNamespace(env_kwargs=kwargs, env_name="CartPole-v1", policy_base=None), {}, False, "f")
    plain = SimpleNamespace(env_kwargs='{"sizes": [1, 2.5], "on": true}', env_name="X", policy_base=None)
    check_trusted(plain, {}, False, "f")  # the names of the arguments, numbers and switches are data enough


def test_a_keyword_the_constructor_does_not_take_is_named_with_those_it_takes():
    """Before: gymnasium's TypeError, wrapped with the id and every keyword argument again."""
    with pytest.raises(ConfigError) as refused:
        check_env_id("FrozenLake-v1", "off", "auto", EnvRecipe({"is_slipery": False}))
    assert str(refused.value) == (
        "--env-name 'FrozenLake-v1': --env-kwargs gives 'is_slipery', which FrozenLake-v1's constructor does not "
        "take; it takes desc, map_name, is_slippery, success_rate, reward_schedule. Did you mean 'is_slippery'?"
    )
    with pytest.raises(ConfigError, match="'x', which tests.envs_for_tests:CounterEnv's constructor does not take"):
        check_env_id("tests.envs_for_tests:CounterEnv", "off", "auto", EnvRecipe({"x": 1}))
    with pytest.raises(ConfigError) as bad_value:  # another failure: the constructor's own words, once
        check_env_id("LunarLander-v3", "off", "auto", EnvRecipe({"gravity": "x"}))
    assert "raised TypeError: '<' not supported" in str(bad_value.value)
    assert "environment creator" not in str(bad_value.value)
