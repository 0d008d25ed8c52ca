"""Every user mistake: exit status 2, one paragraph that says what to change, no traceback,
and nothing started (no worker, no env step, no run folder)."""

from __future__ import annotations

import os
import signal
import zipfile

import pytest
import torch

from a2c_ppo import console
from a2c_ppo.cli import train_main
from a2c_ppo.enjoy import main as enjoy_main
from a2c_ppo.session import run
from tests.test_checkpoint import Payload

TINY = ["--num-processes", "2", "--num-steps", "8", "--num-env-steps", "32", "--vec-env", "sync"]


@pytest.fixture(autouse=True)
def restore_signal_handlers():
    """train_main leaves its handlers installed (the program exits right after); not so pytest."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder with a good checkpoint (``good.pt``), a file, and broken checkpoints."""
    from a2c_ppo.arguments import parse_args

    root = tmp_path_factory.mktemp("cli")
    config = parse_args([*TINY, "--log-dir", str(root / "runs"), "--save-dir", str(root / "models")])
    good = run(config).checkpoint
    os.replace(good, root / "good.pt")
    sde = [
        *TINY,
        "--env-name",
        "Pendulum-v1",
        "--use-sde",
        "--num-mini-batch",
        "1",
        "--log-dir",
        str(root / "runs"),
        "--save-dir",
        str(root),
    ]
    os.replace(run(parse_args(sde)).checkpoint, root / "sde.pt")  # a Box-action policy with gSDE
    (root / "a_file").write_text("not a folder")
    (root / "a_folder").mkdir()
    raw = bytearray((root / "good.pt").read_bytes())
    with zipfile.ZipFile(root / "good.pt") as archive:  # one byte of the largest part's data flipped
        data = max((archive.read(name) for name in archive.namelist()), key=len)
    raw[raw.find(data) + len(data) // 2] ^= 0xFF
    (root / "damaged.pt").write_bytes(bytes(raw))
    (root / "garbage.pt").write_bytes(b"hello world")
    torch.save({"format_version": 2, "payload": Payload(str(root / "ran"))}, root / "evil.pt")
    checkpoint = torch.load(root / "good.pt", weights_only=True)
    checkpoint["model"] = {name: torch.full_like(t, float("nan")) for name, t in checkpoint["model"].items()}
    torch.save(checkpoint, root / "nan.pt")
    checkpoint = torch.load(root / "good.pt", weights_only=True)
    checkpoint["config"] = checkpoint["config"].replace('"CartPole-v1"', '"no_such_module_xyz:Env"')
    torch.save(checkpoint, root / "gone_module.pt")
    return root


MAIN_CASES = [
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--clip-param", "nan"], "--clip-param must be a finite number"),
    (["--lr", "0"], "--lr must be in (0, 1e+06]"),
    (["--seed", "-1"], "--seed must be between 0"),
    (["--seed", "5000000000"], "--seed must be between 0"),
    (["--gamma", "1.5"], "--gamma must be in (0, 1]"),
    (["--gae-lambda", "2"], "--gae-lambda must be in [0, 1]"),
    (["--alpha", "1.5"], "--alpha must be in (0, 1)"),
    (["--entropy-coef", "-1"], "--entropy-coef must be >= 0"),
    (["--dist-timeout", "0"], "--dist-timeout must be > 0"),
    (["--eval-interval", "-1"], "--eval-interval must be >= 0"),
    (["--num-processes", "0"], "--num-processes must be a positive integer"),
    (["--num-steps", "-1"], "--num-steps must be a positive integer"),
    (["--num-mini-batch", "3"], "does not split into --num-mini-batch 3"),
    (["--num-env-steps", "10"], "less than one update's batch"),
    (["--algo", "acktr", "--recurrent-policy"], "does not support --recurrent-policy"),
    (["--algo", "a2c", "--num-mini-batch", "4"], "--num-mini-batch only applies to --algo ppo"),
    (["--recurrent-policy", "--recurrent-chunk-length", "5"], "does not divide --num-steps 32"),
    (["--num-processes", "abc"], "invalid int value"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--env-name", "NoSuchEnv-v0"], "not a registered gymnasium id"),
    (["--env-name", ":"], "--env-name"),
    (["--env-name", "no_such_module_xyz:Env"], "no_such_module_xyz"),
    (["--env-name", "tests.envs_failing:not_an_env"], "not_an_env"),
    (["--env-name", "tests.module_that_raises:Env"], "importing it raised KeyError: 'episodes', at "),
    (["--policy-base", "tests.module_that_raises:Net"], "module_that_raises.py, line 5); fix that module."),
    (["--env-name", "tests.envs_failing:failing_constructor"], "failed on purpose"),
    (["--env-name", "tests.envs_failing:raising_reset_env"], "its first reset raised RuntimeError: the reset failed"),
    (["--env-name", "tests.envs_failing:reset_info_none_env"], "its first reset returned the info None; gymnasium's"),
    (["--env-name", "tests.envs_failing:reset_info_list_env"], "its first reset returned the info [1]; gymnasium's"),
    (["--env-name", "tests.envs_failing:reset_shape_env"], "returned an observation of shape (3,) where its observ"),
    (["--env-name", "tests.envs_failing:text_observation_env"], "observation part 'mission' is Text("),
    (["--env-name", "tests.envs_failing:sequence_observation_env"], "a Sequence, which no encoder takes"),
    (["--env-name", "CartPole-v1", "--action-masks", "on"], "gives no action mask"),
    (["--env-name", "Pendulum-v1", "--action-masks", "on"], "apply to Discrete and MultiDiscrete actions only"),
    (["--env-kwargs", "{{bad"], "--env-kwargs '{bad' is not JSON"),
    (["--env-kwargs", "[1]"], "--env-kwargs '[1]' must be a JSON object"),
    (["--env-kwargs", '{{"render_mode": "human"}}'], "a2c_ppo sets 'render_mode' itself"),
    (["--env-kwargs", '{{"no_such_kwarg": 1}}'], "gives 'no_such_kwarg', which CartPole-v1's constructor does not"),
    (["--vec-env", "envpool", "--env-kwargs", '{{"g": 9}}'], "without --env-kwargs"),
    (["--env-name", "PongNoFrameskip-v4", "--env-kwargs", '{{"frameskip": 4}}'], "sets 'frameskip' itself"),
    (["--env-name", "ALE/Pong-v5", "--env-kwargs", '{{"obs_type": "ram"}}'], "not 'ram'. For the RAM as the obs"),
    (["--resume", "{root}/good.pt", "--env-kwargs", '{{"sutton_barto_reward": true}}'], "an exact resume restores"),
    (["--resume", "{root}/good.pt", "--frame-stack", "2"], "built with --frame-stack 1"),
    (["--resume", "{root}/good.pt", "--norm-value"], "critic learned the returns in reward units"),
    (["--resume", "{root}/good.pt", "--norm-obs"], "network reads the env's observations, and with --norm-obs"),
    (["--resume", "{root}/good.pt", "--norm-reward"], "critic learned returns in reward units, and with --norm-reward"),
    (["--frame-size", "64"], "--frame-size processes channels-last uint8 images"),
    (["--cnn-head-size", "64"], "adds layers after the Nature CNN"),
    (["--policy-base", "tests.custom_nets:SmallNet", "--cnn-head-size", "8"], "a --policy-base network builds"),
    (["--policy-kwargs", "3"], "--policy-kwargs '3' must be a JSON object"),
    (["--policy-base", "tests.custom_nets:SmallNett"], "module 'tests.custom_nets' has no 'SmallNett'"),
    (["--save-dir", "{root}/a_file"], "--save-dir"),
    (["--log-dir", "{root}/a_file"], "--log-dir"),
    (["--save-dir", "/proc/a2c_ppo_test"], "cannot be written"),
    (["--resume", "{root}/missing.pt"], "no such checkpoint file"),
    (["--resume", "{root}/garbage.pt"], "cannot be read"),
    (["--resume", "{root}/evil.pt"], "contains code or Python objects"),
    (["--resume", "{root}/damaged.pt"], "does not match its checksum"),  # torch's reader would load it
    (["--resume", "{root}/a_folder"], "is a folder, not a checkpoint file"),
    (["--resume", "{root}/good.pt", "--num-env-steps", "16"], "has trained 32 env steps, more than"),
    (["--recurrent-type", "lstm"], "--recurrent-type only applies with --recurrent-policy"),
    (["--gail-experts", "{root}/x.npz"], "--gail-experts only applies with --gail"),
    (["--eval-episodes", "3"], "--eval-episodes only applies with --eval-interval"),
    (["--policy-kwargs", '{{"width": 8}}'], "--policy-kwargs only applies with --policy-base"),
    (["--log-dir", ""], "--log-dir is empty"),
    (["--vec-env", "sync", "--overlap", "on"], "--overlap on steps the envs in worker processes"),
    # a typed flag that would do nothing, even at its default
    (["--algo", "a2c", "--clip-param", "0.2"], "--clip-param only applies to --algo ppo"),
    (["--ppo-variant", "clip", "--kl-coef", "2"], "--kl-coef only applies with --ppo-variant kl-penalty"),
    (["--no-use-gae", "--gae-lambda", "0.9"], "--gae-lambda only applies with --use-gae"),
    (["--no-norm-adv", "--norm-adv-scope", "minibatch"], "--norm-adv-scope only applies with --norm-adv"),
    (["--algo", "a2c", "--recurrent-policy", "--recurrent-chunk-length", "4"], "only applies to --algo ppo"),
    (["--env-name", "FrozenLake-v1", "--norm-obs"], "--norm-obs normalises float vector observations"),
    (["--log-std-init", "-1"], "--log-std-init sets a Gaussian policy's spread"),
    (["--vec-env", "sync", "--num-workers", "2"], "--num-workers sets our worker processes"),
    (
        ["--env-name", "tests.custom_nets:cartpole_same_step", "--num-workers", "2"],
        "drop --num-workers (for a2c_ppo's worker processes, give --env-name a factory of single envs)",
    ),
    (["--env-name", "tests.custom_nets:cartpole_same_step", "--overlap", "on"], "drop --overlap on (for a2c_ppo's"),
    (["--trust-checkpoint"], "--trust-checkpoint (trust_checkpoint=True) trusts the checkpoint of --resume"),
    (["--hidden-size", "65536"], "--hidden-size must be between 1 and 16384"),
    (["--lr", "1e39"], "--lr must be a finite number within float32's range"),
    (["--lr", "1e38"], "--lr must be in (0, 1e+06]"),  # PPO's Adam overflowed: -lr / bias_correction1
    (["--env-name", "Pendulum-v1", "--log-std-init", "100"], "--log-std-init must be in [-20, 20]"),
    (["--resume", "{root}/good.pt", "--env-name", "Acrobot-v1"], "trained on an env with"),
    # the other env is the cause, not the checkpoint's gSDE ("drop --use-sde", which was never typed)
    (["--resume", "{root}/sde.pt", "--env-name", "CartPole-v1"], "use the env it was trained on ('Pendulum-v1')"),
    # the storage alone would be terabytes: refused, not a traceback once the run folder exists
    (["--num-steps", "100000000000", "--num-env-steps", "10000000000000"], "GiB of memory, more than this machine"),
    (["--resume", "{root}/good.pt", "--hidden-size", "128"], "--hidden-size 64 (the default for its"),
    (["--resume", "{root}/good.pt", "--recurrent-policy"], "--recurrent-policy"),
    (["--resume", "{root}/good.pt", "--algo", "a2c"], "cannot continue as --algo a2c"),
    (["--resume", "{root}/good.pt", "--algo", "acktr"], "cannot continue as --algo acktr"),
    (["--resume", "{root}/good.pt", "--preset", "mujoco"], "a resumed run keeps its checkpoint's settings"),
]


def outcome(main, argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, phrase", MAIN_CASES, ids=[" ".join(a) for a, _ in MAIN_CASES])
def test_main_refuses_bad_input(workspace, argv, phrase, capsys):
    argv = [arg.format(root=workspace) for arg in argv]
    runs = workspace / "runs-of-this-case"
    code, err = outcome(train_main, [*argv, "--log-dir", str(runs)] if "--log-dir" not in argv else argv, capsys)
    assert code == 2, err
    assert phrase in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # the paragraph, then where --help is
    assert not runs.exists()  # no run folder, not even --log-dir: nothing started
    assert not (workspace / "ran").exists()


def test_resume_accepts_the_width_the_checkpoint_left_to_its_observations(workspace, tmp_path, capsys):
    """good.pt left --hidden-size unset, so its MLP is 64 wide: typing 64 is the same network."""
    argv = ["--resume", str(workspace / "good.pt"), "--hidden-size", "64", "--num-env-steps", "48"]
    code, err = outcome(train_main, [*argv, "--log-dir", str(tmp_path / "runs"), "--save-dir", str(tmp_path)], capsys)
    assert code == 0, err


ENJOY_CASES = [
    (["--checkpoint", "{root}/missing.pt"], "no such checkpoint file"),
    (["--checkpoint", "{root}/evil.pt"], "contains code or Python objects"),
    (["--checkpoint", "{root}/nan.pt"], "is not finite"),
    (["--checkpoint", "{root}/gone_module.pt"], "no_such_module_xyz"),
    (["--checkpoint", "{root}/good.pt", "--env-name", "NoSuchEnv-v0"], "not a registered gymnasium id"),
    (["--checkpoint", "{root}/good.pt", "--video-dir", "{root}/a_file"], "--video-dir"),
    (["--checkpoint", "{root}/good.pt", "--num-episodes", "0"], "--num-episodes must be a positive integer"),
    (["--checkpoint", "{root}/good.pt", "--env-kwargs", "[]"], "--env-kwargs '[]' must be a JSON object"),
    (["--checkpoint", "{root}/good.pt", "--env-kwargs", '{{"nope": 0}}'], "gives 'nope', which CartPole-v1's"),
    (["--load-dir", "{root}/nowhere"], "no such checkpoint file"),
    (["--checkpoint", "{root}/damaged.pt"], "does not match its checksum"),
    (["--checkpoint", "{root}/good.pt", "--seed", "-1"], "--seed must be between 0 and 4,000,000,000"),
    (["--checkpoint", "{root}/good.pt", "--record-trajectories", "{root}/a_folder"], "is a folder"),
    (["--checkpoint", "{root}/good.pt", "--record-trajectories", "{root}/good.pt"], "is the file being read"),
    (["--checkpoint", "", "--load-dir", "{root}"], "--checkpoint is empty"),
    (["--checkpoint", "{root}/good.pt", "--video-dir", ""], "--video-dir is empty"),
    (["--checkpoint", "{root}/good.pt", "--algo", "a2c"], "--algo would be ignored"),
    (["--run-dir", "{root}", "--load-dir", "{root}"], "--run-dir names the checkpoint to play, and --load-dir"),
    (["--checkpoint", "{root}/good.pt", "--render", "--video-dir", "{root}/v"], "give one of them"),
    (["--checkpoint", "{root}/good.pt", "--seed", "99999999999"], "--seed must be between 0 and 4,000,000,000"),
]


@pytest.mark.parametrize("argv, phrase", ENJOY_CASES, ids=[" ".join(a) for a, _ in ENJOY_CASES])
def test_enjoy_refuses_bad_input(workspace, argv, phrase, capsys):
    code, err = outcome(enjoy_main, [arg.format(root=workspace) for arg in argv], capsys)
    assert code == 2, err
    assert phrase in err and "Traceback" not in err
    assert not (workspace / "ran").exists()


def test_only_main_pys_later_torchrun_ranks_keep_quiet(monkeypatch, capsys):
    """torchrun's ranks of a node parse one command line: local rank 0 says what is wrong. A
    LOCAL_RANK without torchrun's other variables (another launcher), or another program, says it."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    for argv in (["--lr", "-1"], ["--num-steps", "many"]):
        assert outcome(train_main, argv, capsys)[1].startswith("main.py: error: ")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    # torchrun stops the later ranks once the first has said it (without this, the test passed
    # only after another test had left StopSignals.arrived set, and alone waited 10 s and failed)
    monkeypatch.setattr(console, "stop_signal_within", lambda seconds: True)
    for argv in (["--lr", "-1"], ["--num-steps", "many"]):
        assert outcome(train_main, argv, capsys) == (2, "")
    assert outcome(enjoy_main, ["--bogus"], capsys)[1].startswith("enjoy.py: error: ")
