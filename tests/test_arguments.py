"""Bad input is refused before anything starts, with a message that says what to change."""

import pytest

from a2c_ppo.arguments import parse_args


def error_of(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_defaults_are_valid_and_filled_per_algorithm():
    args = parse_args([])
    assert (args.algo, args.env_name, args.num_steps, args.lr) == ("ppo", "CartPole-v1", 32, 1e-3)
    assert parse_args(["--algo", "a2c"]).num_steps == 5
    assert parse_args(["--num-steps", "7", "--num-processes", "2"]).num_steps == 7


def test_unknown_env_suggests_close_ids(capsys):
    err = error_of(["--env-name", "CartPol-v1"], capsys)
    assert "not a registered gymnasium id" in err and "CartPole-v1" in err


def test_batch_not_divisible_into_minibatches(capsys):
    err = error_of(["--num-processes", "3", "--num-steps", "5", "--num-mini-batch", "4"], capsys)
    assert "3 x 5 = 15" in err and "--num-mini-batch" in err


@pytest.mark.parametrize(
    "flag", ["--num-processes", "--num-steps", "--num-env-steps", "--num-mini-batch", "--ppo-epoch"]
)
@pytest.mark.parametrize("value", ["0", "-2"])
def test_non_positive_sizes(flag, value, capsys):
    err = error_of([flag, value], capsys)
    assert f"{flag} must be a positive integer" in err


def test_budget_smaller_than_one_batch(capsys):
    assert "less than one update's batch" in error_of(["--num-env-steps", "10"], capsys)


def test_missing_resume_checkpoint(capsys, tmp_path):
    assert "no such checkpoint file" in error_of(["--resume", str(tmp_path / "x.pt")], capsys)


@pytest.mark.parametrize(
    "argv, text", [(["--gamma", "1.5"], "--gamma"), (["--lr", "0"], "--lr"), (["--gae-lambda", "2"], "--gae-lambda")]
)
def test_out_of_range_floats(argv, text, capsys):
    assert text in error_of(argv, capsys)
