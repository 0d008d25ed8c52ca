"""Spaces and step values at their edges: what is refused before anything starts (exit 2, one
paragraph) and what an env that returns it at run time is told (exit 3, naming the env)."""

from __future__ import annotations

import json

import pytest

from a2c_ppo.cli import train_main

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
