"""RunConfig: plain-data round trip with a version, and clear refusals of other versions."""

from __future__ import annotations

import json

import pytest

from a2c_ppo.arguments import parse_args
from a2c_ppo.config import CONFIG_VERSION, RunConfig
from a2c_ppo.errors import ConfigError


def test_round_trip_through_json():
    config = parse_args(["--env-name", "Pendulum-v1", "--seed", "7"])
    data = json.loads(json.dumps(config.to_dict()))
    assert data["config_version"] == CONFIG_VERSION
    assert RunConfig.from_dict(data) == config


def test_frozen():
    config = parse_args([])
    with pytest.raises(AttributeError):
        config.lr = 1.0  # type: ignore[misc]
    assert config.replace(lr=1.0).lr == 1.0 and config.lr == 1e-3


@pytest.mark.parametrize(
    "change, phrase",
    [({"config_version": 1}, "version 1"), ({"unknown_flag": 3}, "unknown: ['unknown_flag']")],
)
def test_other_versions_are_refused_clearly(change, phrase):
    data = {**parse_args([]).to_dict(), **change}
    with pytest.raises(ConfigError, match=phrase.replace("[", r"\[").replace("]", r"\]")):
        RunConfig.from_dict(data)
