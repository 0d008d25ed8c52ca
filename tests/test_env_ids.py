"""check_env_id: every bad --env-name is a ConfigError with a message that says what to change."""

from __future__ import annotations

import importlib.util
import os
import warnings

import pytest

from a2c_ppo.envs import check_env_id
from a2c_ppo.envs.check import suggestions
from a2c_ppo.errors import ConfigError

HAS_ALE = importlib.util.find_spec("ale_py") is not None
M = "tests.envs_for_tests"


def message(env_id: str) -> str:
    with pytest.raises(ConfigError) as info:
        check_env_id(env_id)
    return str(info.value)


@pytest.mark.parametrize("env_id", ["CartPole-v1", f"{M}:CounterEnv", f"{M}:ImageEnv"])
def test_good_ids_pass(env_id):
    check_env_id(env_id)


def test_typo_suggests_the_close_id():
    text = message("CartPol-v1")
    assert "not a registered gymnasium id" in text and "CartPole-v1" in text


@pytest.mark.skipif(not HAS_ALE, reason="needs ale_py")
def test_atari_game_without_namespace_suggests_the_ale_id_not_another_game():
    text = message("Pong-v5")
    assert "Did you mean: ALE/Pong-v5" in text
    assert "Ant" not in text
    assert suggestions("Pong-v5")[0] == "ALE/Pong-v5"


@pytest.mark.skipif(not HAS_ALE, reason="needs ale_py")
def test_wrong_atari_id_with_ale_installed_does_not_ask_for_the_extra():
    text = message("ALE/Pongg-v5")
    assert "ALE/Pong-v5" in text and "extra" not in text and "pip install" not in text


def test_module_id_keeps_the_module_in_the_message():
    text = message(f"{M}:NoSuchEnv")
    assert f"{M}:NoSuchEnv" in text and f"module {M!r} has no callable 'NoSuchEnv'" in text


def test_module_that_cannot_be_imported():
    assert "cannot import module 'no_such_module_xyz'" in message("no_such_module_xyz:Env")


@pytest.mark.parametrize("env_id", [":", ":CartPole-v1", f"{M}:", "", "  "])
def test_empty_parts(env_id):
    text = message(env_id)
    assert "empty" in text or "both parts are needed" in text


@pytest.mark.parametrize(
    "name,phrase",
    [
        ("not_an_env", "returned dict, not a gymnasium.Env"),
        ("raising_env", "OSError: the simulator license file is missing"),
        ("tests.envs_failing:text_observation_env", "observation part 'mission' is Text("),
    ],
)
def test_env_built_here_is_checked(name, phrase):
    env_id = name if ":" in name else f"{M}:{name}"
    text = message(env_id)
    assert phrase in text and env_id in text


def test_channels_last_images_and_dict_observations_are_taken_as_they_come():
    image_space, _ = check_env_id(f"{M}:ChannelsLastEnv")
    assert image_space.shape == (3, 8, 8)  # transposed at the env, once
    dict_space, _ = check_env_id(f"{M}:DictObsEnv")
    assert list(dict_space.spaces) == ["position"]


def test_an_older_atari_id_is_told_it_gets_no_atari_pipeline():
    from a2c_ppo.envs.check import inspect_env

    assert any("older Atari ids" in note and "ALE/...-v5" in note for note in inspect_env("Pong-v4").notes)
    assert not any("older Atari ids" in note for note in inspect_env("ALE/Pong-v5").notes)


@pytest.mark.skipif(importlib.util.find_spec("jax") is not None, reason="jax is installed here")
def test_a_jax_id_without_jax_names_the_install():
    with pytest.raises(ConfigError, match=r"one of gymnasium's jax envs.*pip install 'gymnasium\[jax\]'"):
        check_env_id("phys2d/CartPole-v1")


@pytest.mark.skipif(importlib.util.find_spec("mujoco") is None, reason="needs the [mujoco] extra")
def test_gymnasium_mujoco_models_leave_no_log_in_the_working_folder(tmp_path, monkeypatch):
    """half_cheetah.xml's deprecated attribute is dropped, not printed per env and appended to
    MUJOCO_LOG.TXT in the user's folder; MuJoCo's other warnings become Python warnings."""
    import warnings

    import mujoco

    from a2c_ppo.envs.make import make_env

    monkeypatch.chdir(tmp_path)
    mujoco.set_mju_user_warning(None)  # MuJoCo's default, as in a new process
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            make_env("HalfCheetah-v5").close()
            handler = mujoco.get_mju_user_warning()
            handler("Nan, Inf or huge value in QACC at DOF 0. The simulation is unstable.")
        assert os.listdir(tmp_path) == []
        assert [str(w.message) for w in caught] == [
            "MuJoCo: Nan, Inf or huge value in QACC at DOF 0. The simulation is unstable."
        ]
    finally:
        mujoco.set_mju_user_warning(None)


def test_a_missing_mujoco_is_told_what_to_install():
    """The warning handler's import must not hide gymnasium's install hint."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    code = ("import sys; sys.modules['mujoco'] = None\n"
            "from a2c_ppo.envs.check import inspect_env\n"
            "inspect_env('HalfCheetah-v5')")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode != 0 and 'install the extra: pip install -e ".[mujoco]"' in proc.stderr, proc.stderr


def test_versions_are_suggested_newest_first_and_an_old_one_that_fails_names_the_current():
    """HalfCheetah has v2 to v5: the newest comes first; v3 needs gymnasium-robotics (mujoco-py),
    and its refusal names v5."""
    from a2c_ppo.envs.check import inspect_env

    assert suggestions("HalfCheetah")[:2] == ["HalfCheetah-v5", "HalfCheetah-v4"]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with pytest.raises(ConfigError, match=r"HalfCheetah-v3 is out of date, and gymnasium's current version is "
                                              r"HalfCheetah-v5\.$"):  # fmt: skip
            inspect_env("HalfCheetah-v3")
    assert said == []  # gymnasium's own "out of date" warning no longer stands above the refusal


def test_an_old_id_that_builds_keeps_gymnasiums_warning():
    from a2c_ppo.envs.check import inspect_env

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        inspect_env("CartPole-v0")
    assert any("CartPole-v0 is out of date" in str(w.message) for w in said)
