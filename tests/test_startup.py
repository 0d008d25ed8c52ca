"""The start-up's pause of the garbage collector (``startup.py``) always ends: a program left
without its collector would grow without bound on cyclic garbage."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from a2c_ppo.cli import train_main
from a2c_ppo.startup import collector_paused


@pytest.fixture(autouse=True)
def restore_collector() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_pauses_then_freezes_and_resumes() -> None:
    gc.enable()
    gc.unfreeze()
    with collector_paused():
        assert not gc.isenabled()
        survivor = [{"made": "during the block"}]
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    assert survivor not in gc.get_objects(), "the block's objects are frozen, out of the collector's generations"


def test_resumes_when_the_block_raises() -> None:
    gc.enable()
    with pytest.raises(ImportError), collector_paused():
        raise ImportError("no such module")
    assert gc.isenabled()


def test_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_main_resumes_the_collector_after_start_up(capsys: pytest.CaptureFixture[str]) -> None:
    gc.enable()
    assert train_main(["--env-name", "CartPole-v1", "--show-settings"]) == 0
    assert "CartPole-v1" in capsys.readouterr().out
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
