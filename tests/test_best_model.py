"""The best model: RUN_DIR/best.pt is the checkpoint of the best evaluation so far, with its mean
return; a resumed run keeps it unless it does better; enjoy.py --best plays it."""

from __future__ import annotations

import glob
import os

import pytest
import torch

import a2c_ppo.evaluation
from a2c_ppo.arguments import resolve
from a2c_ppo.checkpoint import load_checkpoint
from a2c_ppo.enjoy import main as enjoy_main
from a2c_ppo.errors import ConfigError
from a2c_ppo.session import launch
from tests.helpers import local_run_flags

BATCH = 2 * 16


def train(tmp_path, steps: int, *extra: str, returns: list[float] | None = None, resume: str | None = None):
    """A CartPole run of ``steps`` env steps whose evaluations return ``returns`` in turn;
    the policy's parameters after each update."""
    flags = ["--num-processes", "2", "--num-steps", "16", "--num-env-steps", str(steps), "--log-interval", "1"]
    flags += local_run_flags(tmp_path) + list(extra) + (["--resume", resume] if resume else [])
    scripted = iter(returns or [])
    params: dict[int, dict[str, torch.Tensor]] = {}

    def remember(info) -> None:
        params[info.update] = {k: v.clone() for k, v in info.policy.state_dict().items()}

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(a2c_ppo.evaluation, "evaluate", lambda policy, envs, episodes, *rest: [next(scripted)] * episodes)
        request = resolve(flags)
        launch(request, callbacks=[remember])  # fmt: skip
    return params


def run_dir(tmp_path) -> str:
    (folder,) = glob.glob(str(tmp_path / "runs" / "*"))
    return folder


def test_best_model_is_the_checkpoint_of_the_best_evaluation(tmp_path, capsys):
    params = train(tmp_path, 4 * BATCH, "--eval-interval", "1", returns=[5.0, 20.0, 10.0, 20.0])
    best = load_checkpoint(os.path.join(run_dir(tmp_path), "best.pt"))
    # update 4 only equals the best: the first of equals stays
    assert best["counters"] == {"update": 2, "env_steps": 2 * BATCH, "eval_mean_return": 20.0}
    for name, tensor in best["model"].items():
        assert torch.equal(tensor, params[2][name]), name
    assert best["config"] == load_checkpoint(os.path.join(run_dir(tmp_path), "checkpoint.pt"))["config"]
    copy = tmp_path / "models" / "ppo" / "CartPole-v1.best.pt"  # the finished run's, beside ENV.pt
    assert copy.read_bytes() == open(os.path.join(run_dir(tmp_path), "best.pt"), "rb").read()
    assert "Best model so far (mean return 20.0)" in capsys.readouterr().out

    for argv in (
        ["--load-dir", str(tmp_path / "models"), "--best"],
        ["--run-dir", run_dir(tmp_path), "--best"],
        ["--checkpoint", os.path.join(run_dir(tmp_path), "best.pt")],
    ):
        assert enjoy_main([*argv, "--num-episodes", "1"]) == 0
        assert "(best model: update 2, evaluation mean return 20.0)" in capsys.readouterr().out


def test_a_resumed_run_keeps_the_best_model_unless_it_does_better(tmp_path):
    train(tmp_path, 2 * BATCH, "--eval-interval", "1", returns=[5.0, 20.0])
    checkpoint = os.path.join(run_dir(tmp_path), "checkpoint.pt")
    train(tmp_path, 4 * BATCH, returns=[15.0, 19.0], resume=checkpoint)
    assert load_checkpoint(os.path.join(run_dir(tmp_path), "best.pt"))["counters"]["update"] == 2
    train(tmp_path, 5 * BATCH, returns=[25.0], resume=checkpoint)
    assert load_checkpoint(os.path.join(run_dir(tmp_path), "best.pt"))["counters"]["eval_mean_return"] == 25.0


@pytest.mark.parametrize("which", ["copy", "run folder"])
def test_a_run_resumed_into_a_new_folder_takes_its_best_model_along(tmp_path, which):
    """Before, the new folder's first evaluation (10.0) became the best and replaced the copy's."""
    train(tmp_path, 2 * BATCH, "--eval-interval", "1", returns=[5.0, 20.0])
    first = run_dir(tmp_path)
    resume = tmp_path / "models" / "ppo" / "CartPole-v1.pt" if which == "copy" else os.path.join(first, "checkpoint.pt")
    flags = ["--log-dir", str(tmp_path / "later")]
    train(tmp_path, 4 * BATCH, *flags, returns=[10.0, 15.0], resume=str(resume))
    (later,) = glob.glob(str(tmp_path / "later" / "*"))
    assert (
        load_checkpoint(os.path.join(later, "best.pt"))["counters"]
        == load_checkpoint(os.path.join(first, "best.pt"))["counters"]
        == {"update": 2, "env_steps": 2 * BATCH, "eval_mean_return": 20.0}
    )
    assert load_checkpoint(str(tmp_path / "models" / "ppo" / "CartPole-v1.best.pt"))["counters"]["update"] == 2


def test_a_best_model_resumed_is_its_own_best_so_far(tmp_path):
    train(tmp_path, 2 * BATCH, "--eval-interval", "1", returns=[5.0, 20.0])
    train(tmp_path, 4 * BATCH, "--log-dir", str(tmp_path / "later"), returns=[10.0, 15.0],
          resume=os.path.join(run_dir(tmp_path), "best.pt"))  # fmt: skip
    (later,) = glob.glob(str(tmp_path / "later" / "*"))
    assert load_checkpoint(os.path.join(later, "best.pt"))["counters"]["eval_mean_return"] == 20.0


def test_another_runs_best_model_beside_the_copy_is_left_behind(tmp_path):
    """Parallel seeds share SAVE_DIR: here the copy is seed 1's and the best model beside it seed 2's."""
    train(tmp_path / "one", 2 * BATCH, "--eval-interval", "1", "--save-dir", str(tmp_path / "models"),
          returns=[5.0, 20.0])  # fmt: skip
    seed_1 = (tmp_path / "models" / "ppo" / "CartPole-v1.pt").read_bytes()
    train(tmp_path / "two", 2 * BATCH, "--eval-interval", "1", "--seed", "2", "--save-dir", str(tmp_path / "models"),
          returns=[30.0, 40.0])  # fmt: skip
    (tmp_path / "models" / "ppo" / "CartPole-v1.pt").write_bytes(seed_1)
    train(tmp_path / "one", 3 * BATCH, "--log-dir", str(tmp_path / "later"), "--save-dir", str(tmp_path / "models"),
          returns=[10.0], resume=str(tmp_path / "models" / "ppo" / "CartPole-v1.pt"))  # fmt: skip
    (later,) = glob.glob(str(tmp_path / "later" / "*"))
    best = load_checkpoint(os.path.join(later, "best.pt"))
    assert (best["config"]["seed"], best["counters"]["eval_mean_return"]) == (1, 10.0)  # not seed 2's 40.0


def test_a_damaged_best_model_beside_the_resumed_checkpoint_is_refused(tmp_path):
    train(tmp_path, 2 * BATCH, "--eval-interval", "1", returns=[5.0, 20.0])
    best = os.path.join(run_dir(tmp_path), "best.pt")
    open(best, "wb").write(b"garbage")
    flags = ["--resume", os.path.join(run_dir(tmp_path), "checkpoint.pt"), "--log-dir", str(tmp_path / "later")]
    with pytest.raises(ConfigError, match=rf"the best model '{best}' of --resume cannot be read.*move it away"):
        resolve(flags)


@pytest.mark.parametrize("new_folder", [False, True])
def test_a_hand_edited_best_model_is_refused_before_the_run(tmp_path, new_folder):
    """Its evaluation's return made text: refused at resolve, in the run's own folder as in a new one."""
    train(tmp_path, 2 * BATCH, "--eval-interval", "1", returns=[5.0, 20.0])
    best = os.path.join(run_dir(tmp_path), "best.pt")
    payload = torch.load(best, weights_only=True)
    payload["counters"]["eval_mean_return"] = "abc"
    torch.save(payload, best)
    flags = ["--resume", os.path.join(run_dir(tmp_path), "checkpoint.pt"), "--num-env-steps", str(3 * BATCH)]
    flags += ["--log-dir", str(tmp_path / "later")] if new_folder else []
    with pytest.raises(ConfigError, match=r"evaluation mean return is 'abc'; move it away"):
        resolve(flags)


def test_a_run_without_evaluations_has_no_best_model(tmp_path, capsys):
    train(tmp_path, BATCH, "--eval-interval", "1", returns=[5.0])
    assert (tmp_path / "models" / "ppo" / "CartPole-v1.best.pt").is_file()
    train(tmp_path / "again", BATCH)
    assert not glob.glob(str(tmp_path / "again" / "runs" / "*" / "best.pt"))
    # the copy beside ENV.pt is the latest finished run's: a run with none leaves no older run's behind
    train(tmp_path, BATCH)
    assert not (tmp_path / "models" / "ppo" / "CartPole-v1.best.pt").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        enjoy_main(["--load-dir", str(tmp_path / "models"), "--best"])
    assert exit_info.value.code == 2
    assert "has no best model" in capsys.readouterr().err


def test_the_last_update_is_evaluated_off_the_interval(tmp_path, capsys):
    """Updates 2 (the interval) and 3 (the last) are evaluated; no others (the script has two)."""
    train(tmp_path, 3 * BATCH, "--eval-interval", "2", returns=[5.0, 20.0])
    assert load_checkpoint(os.path.join(run_dir(tmp_path), "best.pt"))["counters"]["update"] == 3
    assert capsys.readouterr().out.count("Evaluation over 10 episodes") == 2


@pytest.mark.parametrize(
    ("env_name", "said"),
    [
        ("tests.envs_failing:tiny_env", "Evaluation over 2 episodes: mean return "),
        ("tests.envs_failing:endless_env", "Evaluation: no episode finished, no result this time (3 of 3 episodes"),
    ],
)
def test_an_evaluation_stops_at_its_step_cap_with_the_episodes_finished(tmp_path, capsys, env_name, said):
    """A cap of 5 steps per episode of the largest share: 2 eval envs play 2 and 1 of 3 episodes,
    so the evaluation stops after 10 steps, as TinyEnv's first episodes (10 steps) end; an env
    whose episodes never end gets no result, and no best model."""
    flags = ["--env-name", env_name, "--num-processes", "2", "--num-steps", "16", "--num-env-steps", str(BATCH),
             "--eval-interval", "1", "--eval-episodes", "3", *local_run_flags(tmp_path)]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(a2c_ppo.evaluation, "EVAL_MAX_EPISODE_STEPS", 5)
        launch(resolve(flags))
    out = capsys.readouterr().out
    assert said in out and "of 3 episodes did not end within 5 steps and were left out: give the env a time" in out
    assert bool(glob.glob(str(tmp_path / "runs" / "*" / "best.pt"))) == ("tiny" in env_name)


def test_replays_stop_at_the_step_cap_too(tmp_path, capsys):
    """enjoy.py and Agent.evaluate on an env whose episodes never end: they end, saying so."""
    from a2c_ppo.api import load

    flags = ["--env-name", "tests.envs_failing:endless_env", "--num-processes", "2", "--num-steps", "16",
             "--num-env-steps", str(BATCH), *local_run_flags(tmp_path)]  # fmt: skip
    launch(resolve(flags))
    (checkpoint,) = glob.glob(str(tmp_path / "runs" / "*" / "checkpoint.pt"))
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(a2c_ppo.evaluation, "EVAL_MAX_EPISODE_STEPS", 50)
        assert enjoy_main(["--checkpoint", checkpoint, "--num-episodes", "2", "--trust-checkpoint"]) == 0
        out = capsys.readouterr().out
        assert "Note: 2 of 2 episodes did not end within 50 steps and were left out" in out and "mean return" not in out
        with pytest.warns(RuntimeWarning, match="evaluate: 3 of 3 episodes did not end within 50 steps"):
            assert load(checkpoint, trust_checkpoint=True).evaluate(episodes=3) == []


def test_evaluations_play_a_network_of_ones_own_in_eval_mode_and_training_goes_on_in_train_mode(tmp_path):
    """A base with dropout: the run's evaluations (one env: batches of 1) and rollouts (batches of
    2) play it in eval mode, deterministic as enjoy.py and load play it, and the updates after
    them train it in train mode again."""
    from a2c_ppo import train as train_api
    from tests.custom_nets import DropoutNet

    DropoutNet.calls.clear()
    train_api("CartPole-v1", policy_base=DropoutNet, num_processes=2, num_steps=16, num_env_steps=64,
              eval_interval=1, eval_episodes=1, vec_env="sync", overlap="off", log_dir=str(tmp_path / "runs"),
              save_dir=str(tmp_path / "models"))  # fmt: skip
    evaluation = [training for training, rows in DropoutNet.calls if rows == 1]
    assert evaluation and not any(evaluation)
    rollout = [training for training, rows in DropoutNet.calls if rows == 2]  # acting on the 2 envs
    assert rollout and not any(rollout)  # as Stable-Baselines3 collects: dropout off
    update = [training for training, rows in DropoutNet.calls if rows == 32]  # a whole batch: an update's pass
    assert update and all(update)


def test_two_runs_finishing_at_once_leave_one_runs_pair_of_copies(tmp_path, monkeypatch):
    """The latest finished run's checkpoint and best model in --save-dir are written as a pair:
    run B finishing between run A's two copies (here made to, deterministically: B starts when
    A has copied its checkpoint, and A goes on once B has finished or waits for A's lock) must
    not leave B's checkpoint beside A's best model."""
    import fcntl
    import threading

    import a2c_ppo.checkpointer as checkpointer
    from a2c_ppo.signals import StopSignals

    runs = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "checkpoint.pt").write_bytes(f"{name}'s checkpoint".encode())
        (tmp_path / name / "best.pt").write_bytes(f"{name}'s best model".encode())
        runs[name] = (str(tmp_path / name / "checkpoint.pt"), str(tmp_path / name / "best.pt"))
    latest = tmp_path / "models" / "ppo" / "CartPole-v1.pt"
    b_waits_or_is_done = threading.Event()

    def run_b() -> None:
        checkpointer.copy_finished_run(*runs["b"], str(latest), StopSignals())
        b_waits_or_is_done.set()

    b = threading.Thread(target=run_b)
    real_flock, real_copy = fcntl.flock, checkpointer.copy_atomically

    def flock(fd: int, operation: int) -> None:
        if threading.current_thread() is b:
            b_waits_or_is_done.set()  # B is about to wait for the pair's lock, if A holds it
        real_flock(fd, operation)

    def copy(source: str, path: str) -> None:
        real_copy(source, path)
        if source == runs["a"][0]:  # A has copied its checkpoint: B finishes now
            b.start()
            assert b_waits_or_is_done.wait(60)

    monkeypatch.setattr(fcntl, "flock", flock)
    monkeypatch.setattr(checkpointer, "copy_atomically", copy)
    assert checkpointer.copy_finished_run(*runs["a"], str(latest), StopSignals()) == str(
        tmp_path / "models" / "ppo" / "CartPole-v1.best.pt"
    )
    b.join(60)
    pair = latest.read_bytes(), (tmp_path / "models" / "ppo" / "CartPole-v1.best.pt").read_bytes()
    assert pair == (b"b's checkpoint", b"b's best model")
    assert sorted(os.listdir(latest.parent)) == ["CartPole-v1.best.pt", "CartPole-v1.pt"]  # no lock file left


def test_a_failed_copy_of_the_best_model_leaves_no_older_runs_best_model_beside_this_runs_checkpoint(
    tmp_path, monkeypatch
):
    """The disk fills up between the two copies: --save-dir keeps this run's checkpoint alone
    (the run says what failed), never beside the best model of the run that finished before."""
    import a2c_ppo.checkpointer as checkpointer
    from a2c_ppo.errors import WriteFailedError
    from a2c_ppo.signals import StopSignals

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"new checkpoint")
    (tmp_path / "run" / "best.pt").write_bytes(b"new best model")
    (tmp_path / "models" / "ppo").mkdir(parents=True)
    latest = tmp_path / "models" / "ppo" / "CartPole-v1.pt"
    latest.write_bytes(b"older run's checkpoint")
    (tmp_path / "models" / "ppo" / "CartPole-v1.best.pt").write_bytes(b"older run's best model")
    real_copy = checkpointer.copy_atomically

    def copy(source: str, path: str) -> None:
        if path.endswith(".best.pt"):
            raise WriteFailedError(path, "No space left on device")
        real_copy(source, path)

    monkeypatch.setattr(checkpointer, "copy_atomically", copy)
    with pytest.raises(WriteFailedError):
        checkpointer.copy_finished_run(str(tmp_path / "run" / "checkpoint.pt"), str(tmp_path / "run" / "best.pt"),
                                       str(latest), StopSignals())  # fmt: skip
    assert latest.read_bytes() == b"new checkpoint"
    assert sorted(os.listdir(latest.parent)) == ["CartPole-v1.pt"]  # no older best model, no lock file


@pytest.mark.parametrize("blocked", ["a file where its folder goes", "a lock file that cannot be opened"])
def test_a_save_dir_that_cannot_hold_the_pairs_lock_is_a_failed_write_of_the_copy(tmp_path, monkeypatch, blocked):
    """--save-dir's ALGO folder is a file, or the lock file cannot be opened: the copies cannot
    be written, said as such (WriteFailedError naming the copy, which the CLI reports in one
    paragraph), not an OSError's traceback from taking the lock."""
    import a2c_ppo.checkpointer as checkpointer
    import a2c_ppo.files as files
    from a2c_ppo.errors import WriteFailedError
    from a2c_ppo.signals import StopSignals

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"checkpoint")
    latest = tmp_path / "models" / "ppo" / "CartPole-v1.pt"
    if blocked == "a file where its folder goes":
        (tmp_path / "models").mkdir()
        (tmp_path / "models" / "ppo").write_bytes(b"")
    else:
        real_open = os.open

        def open_(path, *args, **kwargs):  # as a read-only folder or an immutable lock file make it (root too)
            if str(path).endswith(".CartPole-v1.pt.lock"):
                raise PermissionError(1, "Operation not permitted", path)
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(files.os, "open", open_)
    with pytest.raises(WriteFailedError) as failed:
        checkpointer.copy_finished_run(str(tmp_path / "run" / "checkpoint.pt"), str(tmp_path / "run" / "best.pt"),
                                       str(latest), StopSignals())  # fmt: skip
    assert failed.value.path == str(latest)
