"""Ctrl-C and SIGTERM as ``StopSignals`` hands them to the training loop: held back inside
``deferred`` blocks, raised when the block ends, at once on a second signal (``escalate``) or
after ``escalate_after`` seconds, and dropped when an error ends the program anyway."""

from __future__ import annotations

import os
import signal
import time

import pytest

from a2c_ppo.signals import Interrupted, StopSignals, stop_signal_within


def send(signum: int) -> None:
    """Signal this process and give the handler a moment to run (it runs between bytecodes)."""
    os.kill(os.getpid(), signum)
    time.sleep(0.05)


def test_a_signal_inside_a_block_is_raised_when_the_block_ends():
    reached = False
    with StopSignals() as signals, pytest.raises(Interrupted) as caught:
        with signals.deferred():
            send(signal.SIGTERM)
            reached = True
    assert reached and caught.value.exit_code == 143


def test_a_held_signal_escalates_after_its_time():
    start = time.monotonic()
    with StopSignals() as signals, pytest.raises(Interrupted) as caught:
        with signals.deferred(escalate=True, escalate_after=0.3):
            send(signal.SIGINT)
            while time.monotonic() - start < 5:
                time.sleep(0.01)
    assert 0.3 <= time.monotonic() - start < 5 and caught.value.exit_code == 130


def test_a_signal_taken_from_the_block_neither_escalates_nor_is_raised_again():
    with StopSignals() as signals:
        with signals.deferred(escalate=True, escalate_after=0.2):
            send(signal.SIGTERM)
            assert signals.take_pending() == signal.SIGTERM
            time.sleep(0.5)  # the timer finds nothing held
        assert signals.take_pending() is None


def test_a_nested_block_holds_the_signal_for_the_outer_one_to_take():
    with StopSignals() as signals:
        with signals.deferred(escalate=True):
            with signals.deferred():  # an update inside the loop's block
                send(signal.SIGINT)
                send(signal.SIGINT)  # a second one in the nested block: held too
            assert signals.take_pending() == signal.SIGINT


def test_an_error_that_ends_the_outermost_block_drops_the_held_signal():
    """The error is what ends the program, with its own message and exit status: the signal
    held back must not replace it later (e.g. when the error handler saves a checkpoint)."""
    with StopSignals() as signals:
        with pytest.raises(ValueError), signals.deferred():
            send(signal.SIGTERM)
            raise ValueError("the update failed")
        with signals.deferred():  # the error handler's save
            pass


def test_a_later_torchrun_rank_waits_for_the_signal_that_says_its_first_rank_has_ended(monkeypatch):
    """``stop_signal_within``: the SIGTERM torchrun sends once the node's first rank has ended
    is taken (no handler raises), and one a handler took earlier counts without a wait."""
    import threading

    monkeypatch.setattr(StopSignals, "arrived", False)
    with StopSignals():
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        start = time.monotonic()
        assert stop_signal_within(30.0)
        assert 0.15 <= time.monotonic() - start < 10
        time.sleep(0.05)  # a handler that ran would have raised here
        start = time.monotonic()
        assert not stop_signal_within(0.2) and time.monotonic() - start >= 0.2
        monkeypatch.setattr(StopSignals, "arrived", True)  # as a handler sets it
        start = time.monotonic()
        assert stop_signal_within(30.0) and time.monotonic() - start < 1


def test_an_error_of_every_rank_is_said_once_per_node(monkeypatch, capsys):
    """Local rank 0 says it at once; a later rank says nothing where torchrun stops it (its
    first rank said it and ended), and names itself where it is not stopped in time."""
    from a2c_ppo import console

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    console.say_once_per_node("main.py: error: bad\n")
    assert capsys.readouterr().err == "main.py: error: bad\n"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    waits = []
    monkeypatch.setattr(console, "stop_signal_within", lambda seconds: waits.append(seconds) or True)
    console.say_once_per_node("main.py: error: bad\n")
    assert capsys.readouterr().err == "" and waits == [console.NODE_WIDE_WAIT_S]
    monkeypatch.setattr(console, "stop_signal_within", lambda seconds: False)
    console.say_once_per_node("main.py: error: bad\n")
    said = capsys.readouterr().err
    assert said == "rank 1 of 2 (its node's first rank did not say this within 10 s): main.py: error: bad\n"


def test_a_signal_held_again_waits_for_the_outer_block_and_its_timer_no_longer_acts():
    """Under torchrun the last update's signal is taken (every rank learns of it), then held
    again for the run's ending: the block it is held in raises it only when it ends, unless
    taken, and the escalation timer set when it came does not cut the ending short."""
    with StopSignals() as signals:
        with signals.deferred(escalate=True, escalate_after=0.2):
            send(signal.SIGTERM)
            signum = signals.take_pending()
            assert signum == signal.SIGTERM
            signals.hold(signum)
            time.sleep(0.5)  # the timer finds the signal held anew: nothing raised
            assert signals.take_pending() == signal.SIGTERM
        with pytest.raises(Interrupted), signals.deferred(escalate=True):
            signals.hold(signal.SIGINT)
