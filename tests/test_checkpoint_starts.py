"""Checkpoints of discrete actions that count from a ``start``: the policy's action i reaches
the env as ``start + i`` since 2026-11-21 (before, as i). A checkpoint records the start of its
spaces (format 5), so that an env whose classes start elsewhere is refused; one of format 2,
written on both sides of that change, is refused on an env whose actions start elsewhere than
0, where it could act shifted; formats 3 and 4, all written after it, still load."""

from __future__ import annotations

import json

import pytest
import torch

from a2c_ppo.api import load
from a2c_ppo.api import train as train_api
from a2c_ppo.arguments import resolve
from a2c_ppo.checkpoint import FORMAT_VERSION, load_checkpoint
from a2c_ppo.errors import ConfigError
from tests.helpers import local_run_flags

ENV = "tests.envs_for_spaces:ShiftedActionEnv"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("shifted")
    result = train_api(ENV, num_processes=2, num_steps=16, num_env_steps=32, vec_env="sync",
                       log_dir=str(folder / "runs"), save_dir=str(folder / "models"))  # fmt: skip
    return result.checkpoint


def older_format(path: str, tmp_path, version: int) -> str:
    """``path`` as a2c_ppo wrote it in checkpoint format ``version``: spaces without their start
    (as every format before 5), no optimizer state (whose layout formats 2 and 3 change)."""
    payload = torch.load(path, weights_only=True)
    spaces = json.loads(payload["spaces"])
    for desc in spaces.values():
        desc.pop("start", None)
    payload.update(format_version=version, package_version="0.1.0", spaces=json.dumps(spaces), optimizer=None)
    old = str(tmp_path / f"format{version}.pt")
    torch.save(payload, old)
    return old


def test_a_checkpoint_records_the_start_and_refuses_an_env_whose_actions_start_elsewhere(checkpoint):
    saved = load_checkpoint(checkpoint)
    assert saved["format_version"] == FORMAT_VERSION == 5
    assert saved["spaces"]["action"] == {"type": "Discrete", "shape": [], "n": 3, "start": 1}
    assert load(checkpoint, env=ENV).action_space.start == 1
    with pytest.raises(ConfigError, match=r"action space .*'start': 1.* has .*'start': 0"):
        load(checkpoint, env=ENV, env_kwargs={"start": 0})  # the same n: it took actions 1 + i, now it would take i


def test_a_format_2_checkpoint_is_refused_where_the_actions_start_elsewhere_than_0(checkpoint, tmp_path, capsys):
    old = older_format(checkpoint, tmp_path, 2)
    refusal = r"checkpoint format 2.* actions of .*ShiftedActionEnv.* count from 1.* shifted by 1"
    with pytest.raises(ConfigError, match=refusal):
        load(old, env=ENV)
    with pytest.raises(ConfigError, match=refusal):
        resolve(["--resume", old, "--trust-checkpoint", *local_run_flags(tmp_path)])
    from a2c_ppo.enjoy import main as enjoy

    with pytest.raises(SystemExit) as ended:
        enjoy(["--checkpoint", old, "--trust-checkpoint", "--num-episodes", "1"])
    assert ended.value.code == 2 and "count from 1" in capsys.readouterr().err
    # on an env whose actions count from 0 either side of the change acted alike: it loads
    assert load(old, env=ENV, env_kwargs={"start": 0}).action_space.start == 0


@pytest.mark.parametrize("version", [3, 4])
def test_checkpoints_of_formats_3_and_4_load_on_the_env_they_name(checkpoint, tmp_path, version):
    old = older_format(checkpoint, tmp_path, version)
    assert load_checkpoint(old)["format_version"] == FORMAT_VERSION
    assert load(old, env=ENV).action_space.start == 1
