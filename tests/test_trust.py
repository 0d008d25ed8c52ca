"""Trust at the edges: a checkpoint is data, runs never overwrite each other, a failed write or
a closed console never costs a traceback or a lost run, a hang is never silent, and Ctrl-C at
any moment of start-up ends cleanly."""

from __future__ import annotations

import fcntl
import glob
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from a2c_ppo.api import load
from a2c_ppo.errors import ConfigError
from a2c_ppo.files import RunLock, write_atomically
from tests.envs_failing import FAIL_AFTER_VARIABLE
from tests.evil_module import MARKER_DIR_VARIABLE
from tests.helpers import PID_DIR_VARIABLE, ROOT

TINY = "tests.envs_failing:tiny_env"
STEPS_PER_UPDATE = 2 * 16


def main_argv(tmp_path, *extra: str, steps: int = 96, script: str = "main.py") -> list[str]:
    return [sys.executable, os.path.join(ROOT, script), "--num-processes", "2", "--num-steps", "16",
            "--num-env-steps", str(steps), "--log-interval", "1", "--save-interval", "1", "--vec-env", "sync",
            "--log-dir", str(tmp_path / "runs"), "--save-dir", str(tmp_path / "models"), *extra]  # fmt: skip


def run(argv: list[str], env: dict | None = None, timeout: int = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}, **kwargs
    )


def run_folders(tmp_path) -> list[str]:
    return sorted(glob.glob(str(tmp_path / "runs" / "*")))


def trained_checkpoint(tmp_path) -> str:
    proc = run(main_argv(tmp_path, "--env-name", "CartPole-v1", steps=64))
    assert proc.returncode == 0, proc.stderr
    (folder,) = run_folders(tmp_path)
    return os.path.join(folder, "checkpoint.pt")


def craft(path: str, out: str, **config_changes) -> str:
    """A copy of checkpoint ``path`` at ``out`` with its JSON config edited (it still loads with
    ``weights_only``): what someone could share."""
    payload = torch.load(path, weights_only=True)
    payload["config"] = json.dumps({**json.loads(payload["config"]), **config_changes})
    torch.save(payload, out)
    return out


# ----------------------------------------------------------------------------- a checkpoint is data


@pytest.mark.parametrize("how", ["resume", "enjoy"])
def test_a_checkpoint_naming_code_is_refused_and_imports_nothing(tmp_path, how):
    crafted = craft(trained_checkpoint(tmp_path), str(tmp_path / "shared.pt"), env_name="tests.evil_module:make_env")
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {MARKER_DIR_VARIABLE: str(markers)}
    if how == "resume":
        argv = main_argv(tmp_path / "again", "--resume", crafted, steps=128)
    else:
        argv = [sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", crafted, "--num-episodes", "1"]
    proc = run(argv, env)
    assert proc.returncode == 2, proc.stderr
    assert "names code to import" in proc.stderr and "--trust-checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not os.listdir(markers)  # nothing imported it, in any process
    # naming the same reference oneself (or --trust-checkpoint) is the user's own decision
    trusted = run([*argv, "--trust-checkpoint"], env)
    assert trusted.returncode == 0, trusted.stderr
    assert os.listdir(markers)


@pytest.mark.parametrize(
    "changes, phrase",
    [({"algo": "../../escape"}, "--algo must be one of"), ({"algo": "/tmp/escape"}, "--algo must be one of"),
     ({"seed": -5}, "--seed must be between"), ({"num_steps": "16; rm"}, "must be an integer")],
)  # fmt: skip
def test_every_value_a_checkpoint_gives_is_checked_like_the_flag(tmp_path, changes, phrase):
    crafted = craft(trained_checkpoint(tmp_path), str(tmp_path / "shared.pt"), **changes)
    proc = run(main_argv(tmp_path / "again", "--resume", crafted, steps=128))
    assert proc.returncode == 2 and phrase in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists("/tmp/escape") and not os.path.exists(tmp_path / "escape")


def _edit(payload: dict, part: str, change) -> None:
    """Apply ``change`` to the checkpoint part named by a dotted path (``resume_state.obs``)."""
    *parents, last = part.split(".")
    for name in parents:
        payload = payload[name]
    change(payload, last)


def test_a_damaged_or_crafted_checkpoint_is_refused_before_anything_starts(tmp_path):
    """Each part that does not fit the run (a missing parameter, a wrong shape, an optimizer
    state of another algorithm, a counter that is text, statistics of another env, ...) is
    named in one paragraph, exit 2, before a run folder or a worker exists (the envs' own states
    are checked where they are restored, in the envs: the run folder made for them is removed)."""
    proc = run(main_argv(tmp_path, "--env-name", "CartPole-v1", "--norm-obs", steps=64))
    assert proc.returncode == 0, proc.stderr
    (folder,) = run_folders(tmp_path)
    good = os.path.join(folder, "checkpoint.pt")
    first = next(iter(torch.load(good, weights_only=True)["model"]))  # a parameter's name
    statistics = json.loads(torch.load(good, weights_only=True)["normalization"])
    other_env = json.dumps({**statistics, "obs_rms": {"mean": [0.0] * 2, "var": [1.0] * 2, "count": 9.0}})

    def drop(parent, key):
        del parent[key]

    def object_scalars(parent, key):  # numpy scalars as "objects": frombuffer refuses, nothing is unpickled
        layer = next(entry for entry in parent[key][0]["layers"] if entry["class"] == "RecordEpisodeStatistics")
        layer["attrs"]["return_queue"] = {"__deque__": {"__scalars__": "|O", "data": b"\0" * 8}, "maxlen": 100}

    cases = [
        ("model", lambda p, k: p[k].pop(first), "the model cannot be restored (Error(s) in loading state_dict"),
        ("model", lambda p, k: p[k].__setitem__(first, torch.zeros(3)), "size mismatch for " + first),
        ("model", lambda p, k: p.__setitem__(k, {"a": "b"}), "its model holds something besides named tensors"),
        ("optimizer", lambda p, k: p.__setitem__(k, {"state": {}, "param_groups": []}), "the optimizer state"),
        ("counters.update", lambda p, k: p.__setitem__(k, "x"), "its counter update is 'x', not a count"),
        ("algorithm", lambda p, k: p.__setitem__(k, {"agent": {"kl_coef": "abc"}}), "the algorithm's state"),
        ("resume_state.obs", drop, "the saved rollout state cannot be restored (missing 'obs')"),
        ("resume_state.masks", lambda p, k: p.__setitem__(k, torch.zeros(7)), "the saved rollout state"),
        ("rng.torch", lambda p, k: p.__setitem__(k, torch.zeros(3)), "the random number generators' state"),
        ("rng.numpy", lambda p, k: p[k].update(has_gauss=1, gauss="abc"), "the random number generators' state"),
        ("normalization", lambda p, k: p.__setitem__(k, {"obs_rms": 1}), "is damaged or was not written by a2c_ppo"),
        ("normalization", lambda p, k: p.__setitem__(k, other_env), "statistics cannot be restored (cannot reshape"),
        ("counters", lambda p, k: p[k].pop("update"), "its counter update is None, not a count"),
        ("spaces", lambda p, k: p.__setitem__(k, "{}"), "its spaces lack the observation or action space"),
        ("resume_state.obs", lambda p, k: p.__setitem__(k, {}), "the saved rollout state cannot be restored"),
        ("resume_state.why_not_exact", drop, "the saved rollout state cannot be restored (missing 'why_not_exact')"),
        ("resume_state.returns", lambda p, k: p.__setitem__(k, [float("nan")]), "return is not finite"),
        ("model", lambda p, k: p[k][first].fill_(float("nan")), f"its parameter {first!r} is not finite"),
        ("resume_state.env_states", lambda p, k: p[k][0].__setitem__("layers", []), "env states do not fit these envs"),
        ("resume_state.env_states", object_scalars, "which capture never writes"),
    ]
    for part, change, phrase in cases:
        edited = torch.load(good, weights_only=True)  # the good file, edited in one part
        _edit(edited, part, change)
        path = str(tmp_path / "shared.pt")
        torch.save(edited, path)
        proc = run(main_argv(tmp_path / "again", "--resume", path, steps=128))
        assert proc.returncode == 2 and phrase in proc.stderr, (part, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not run_folders(tmp_path / "again"), part  # no run folder is left (envs' states: checked in them)


def test_a_finished_checkpoint_resumed_into_a_new_folder_is_written_there(tmp_path):
    good = trained_checkpoint(tmp_path)  # its whole budget trained: no update runs again
    proc = run(main_argv(tmp_path / "again", "--resume", good, steps=64))
    assert proc.returncode == 0 and "Done: 64 env steps" in proc.stdout, proc.stderr
    (folder,) = run_folders(tmp_path / "again")
    saved = torch.load(os.path.join(folder, "checkpoint.pt"), weights_only=True)
    assert saved["counters"] == torch.load(good, weights_only=True)["counters"]
    assert os.path.isfile(tmp_path / "again" / "models" / "ppo" / "CartPole-v1.pt")


def test_the_folders_a_checkpoint_names_are_never_written(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    crafted = craft(
        trained_checkpoint(tmp_path), str(tmp_path / "shared.pt"), save_dir=str(elsewhere / "save"),
        log_dir=str(elsewhere / "logs"), run_dir=str(elsewhere / "run"),
    )  # fmt: skip
    proc = run(main_argv(tmp_path / "mine", "--resume", crafted, steps=128))
    assert proc.returncode == 0, proc.stderr
    assert not elsewhere.exists()
    assert glob.glob(str(tmp_path / "mine" / "runs" / "*" / "checkpoint.pt"))  # where the user said


# ----------------------------------------------------------------------------- runs never overwrite each other


def test_concurrent_runs_keep_their_own_checkpoints(tmp_path):
    seeds = ["1", "2", "2"]  # two seeds side by side, and the same seed twice
    procs = [
        subprocess.Popen(main_argv(tmp_path, "--env-name", TINY, "--seed", seed, steps=320), cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in seeds
    ]  # fmt: skip
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    checkpoints = glob.glob(str(tmp_path / "runs" / "*" / "checkpoint.pt"))
    assert len(checkpoints) == 3
    saved_seeds = sorted(json.loads(torch.load(c, weights_only=True)["config"])["seed"] for c in checkpoints)
    assert saved_seeds == [1, 2, 2]
    for out, _ in outputs:
        assert "the latest finished run's" in out
    assert len({line.split("Checkpoint: ")[1].split()[0] for out, _ in outputs for line in out.splitlines()
                if "Checkpoint: " in line}) == 3  # fmt: skip


def test_a_live_run_folder_cannot_be_resumed_twice(tmp_path):
    checkpoint = trained_checkpoint(tmp_path)
    lock = RunLock(os.path.dirname(checkpoint)).acquire()  # as a live run holds it
    try:
        proc = run(main_argv(tmp_path, "--resume", checkpoint, steps=128))
    finally:
        lock.release()
    assert proc.returncode == 2 and "in use by a live run" in proc.stderr and "Traceback" not in proc.stderr
    assert run(main_argv(tmp_path, "--resume", checkpoint, steps=128)).returncode == 0


def test_a_run_that_writes_nothing_leaves_no_folder_it_made(tmp_path):
    """A run that fails to start removes its run folder and the folders made to hold it (an
    empty --log-dir), never a folder that holds anything else."""
    from a2c_ppo.run_folder import own_run_folder

    with own_run_folder(str(tmp_path / "logs" / "deeper" / "run"), in_place=False) as run_dir:
        assert os.path.isdir(run_dir)
    assert os.listdir(tmp_path) == []
    (tmp_path / "logs" / "earlier-run").mkdir(parents=True)
    with own_run_folder(str(tmp_path / "logs" / "run"), in_place=False):
        pass
    assert os.listdir(tmp_path / "logs") == ["earlier-run"]
    with own_run_folder(str(tmp_path / "new" / "run"), in_place=False):
        (tmp_path / "new" / "run-2").mkdir()  # another run's, made meanwhile
    assert os.listdir(tmp_path / "new") == ["run-2"]


@pytest.mark.parametrize(
    ("tensor", "phrase"),
    [
        (lambda shape: torch.full(shape, 1e300, dtype=torch.float64), "is not finite"),
        (lambda shape: torch.full(shape, float("nan"), dtype=torch.complex64), "is torch.complex64"),
        (lambda shape: torch.zeros(1).expand(200_000, 200_000), "is larger than its data"),
    ],
)
def test_weights_that_would_hide_a_nan_or_claim_memory_are_refused(tmp_path, tensor, phrase):
    """float64 1e300 is finite as stored and infinite as the float32 the policy holds; a stride-0
    view of 4 bytes is 160 GB to the first op that reads it."""
    payload = torch.load(trained_checkpoint(tmp_path), weights_only=True)
    name = next(iter(payload["model"]))
    payload["model"][name] = tensor(payload["model"][name].shape)
    torch.save(payload, tmp_path / "crafted.pt")
    with pytest.raises(ConfigError, match=phrase):
        load(str(tmp_path / "crafted.pt"))


@pytest.mark.parametrize(("part", "value"), [("mean", float("nan")), ("var", -1.0), ("count", -5.0)])
def test_normalisation_statistics_no_data_gives_are_refused(tmp_path, part, value):
    from a2c_ppo.arguments import resolve

    argv = main_argv(tmp_path, "--env-name", "Pendulum-v1", "--norm-obs", "--num-mini-batch", "1", steps=64)
    assert run(argv).returncode == 0
    (folder,) = run_folders(tmp_path)
    payload = torch.load(os.path.join(folder, "checkpoint.pt"), weights_only=True)
    statistics = json.loads(payload["normalization"])["obs_rms"]
    statistics[part] = value if part == "count" else [value] * len(statistics[part])
    payload["normalization"] = json.dumps({**json.loads(payload["normalization"]), "obs_rms": statistics})
    torch.save(payload, tmp_path / "crafted.pt")
    for attempt in (lambda: resolve(["--resume", str(tmp_path / "crafted.pt"), "--num-env-steps", "256"]),
                    lambda: load(str(tmp_path / "crafted.pt"))):  # fmt: skip
        with pytest.raises(ConfigError, match="normalisation statistics"):
            attempt()


def test_a_checkpoint_does_not_turn_on_uploads(tmp_path):
    from a2c_ppo.arguments import resolve

    evil = craft(trained_checkpoint(tmp_path), str(tmp_path / "track.pt"), track=True, wandb_entity="attacker",
                 wandb_id="theirs")  # fmt: skip
    request = resolve(["--resume", evil, "--num-env-steps", "256"])
    assert request.config.track is False and request.config.wandb_entity is None and request.config.wandb_id is None
    assert any("tracked with W&B; this one is not" in note for note in request.notes)
    pytest.importorskip("wandb")
    tracked = resolve(["--resume", evil, "--num-env-steps", "256", "--track"]).config
    assert tracked.wandb_id is None and tracked.wandb_entity is None  # a new run of the user's, not the file's


def test_a_run_lock_is_removed_as_it_is_released_and_never_held_twice(tmp_path, monkeypatch):
    first = RunLock(str(tmp_path)).acquire()
    with pytest.raises(ConfigError, match="in use by a live run"):
        RunLock(str(tmp_path)).acquire()
    first.release()
    assert os.listdir(tmp_path) == []
    # the holder ends between a second run's open and its flock: that run must not lock the
    # removed file (a third would then lock a new one beside it), but the one at the path
    first = RunLock(str(tmp_path)).acquire()
    real_flock, calls = fcntl.flock, []

    def flock_after_the_holder_ends(fd, operation):
        if not calls:
            first.release()
        calls.append(fd)
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_the_holder_ends)
    second = RunLock(str(tmp_path)).acquire()
    monkeypatch.undo()
    assert len(calls) == 2 and os.path.exists(second.path)
    with pytest.raises(ConfigError, match="in use by a live run"):
        RunLock(str(tmp_path)).acquire()
    second.release()


# ----------------------------------------------------------------------------- write failures


def test_a_full_disk_stops_the_run_cleanly_and_keeps_the_last_checkpoint(tmp_path):
    # progress.csv's 2 whole writes (its header, then the first row's columns) and 2 checkpoint
    # writes succeed (updates 1 and 2); the third checkpoint finds the disk full
    argv = main_argv(tmp_path, "--env-name", TINY, steps=320, script="tests/disk_full_main.py")
    proc = run(argv, {"A2C_PPO_TEST_FSYNCS_LEFT": "4"})
    assert proc.returncode == 6, proc.stderr
    assert "No space left on device" in proc.stderr and "checkpoint.pt" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    (folder,) = run_folders(tmp_path)
    assert torch.load(os.path.join(folder, "checkpoint.pt"), weights_only=True)["counters"]["update"] == 2
    assert not [name for name in os.listdir(folder) if ".tmp-" in name]
    assert f"The last checkpoint written, {os.path.join(folder, 'checkpoint.pt')}, is whole" in proc.stderr


@pytest.mark.parametrize(
    "fsyncs, failed, then",
    [
        # progress.csv's second whole write (its first row's columns), then update 1's checkpoint: the
        # whole-file write's own error was wrapped again, its cause read as errno 0, "Success"
        (1, "progress.csv: No space left on device", "No checkpoint had been written yet;"),
        (2, "checkpoint.pt: No space left on device", "No checkpoint had been written yet;"),
        # the 3 updates saved, then their copy to --save-dir: training had finished, not stopped
        (5, "models/ppo/tests.envs_failing_tiny_env.pt: No space left", "(it trains no more)."),
    ],
)  # fmt: skip
def test_a_full_disk_says_what_the_run_left(tmp_path, fsyncs, failed, then):
    proc = run(main_argv(tmp_path, "--env-name", TINY, script="tests/disk_full_main.py"),
               {"A2C_PPO_TEST_FSYNCS_LEFT": str(fsyncs)})  # fmt: skip
    assert proc.returncode == 6 and failed in proc.stderr and then in proc.stderr, proc.stderr
    finished = fsyncs == 5
    how = "training finished, but" if finished else "training stopped"
    assert proc.stderr.startswith(f"main.py: error: {how}")
    (folder,) = run_folders(tmp_path)
    assert os.path.isfile(os.path.join(folder, "checkpoint.pt")) == finished


def test_a_really_full_filesystem(tmp_path):
    """On a 200 kB tmpfs (where this machine lets us mount one): the first CartPole checkpoint
    (~150 kB) fits, the next one does not."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here; the simulated ENOSPC test covers the same path")
    try:
        argv = main_argv(mount, "--env-name", "CartPole-v1", steps=320)
        proc = run(argv)
        assert proc.returncode == 6, proc.stderr
        assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
        (folder,) = run_folders(mount)
        assert torch.load(os.path.join(folder, "checkpoint.pt"), weights_only=True)["counters"]["update"] >= 1
        assert not [name for name in os.listdir(folder) if ".tmp-" in name]
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_killed_save_leaves_a_temporary_file_that_the_next_save_removes(tmp_path):
    target = tmp_path / "checkpoint.pt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".checkpoint.pt.tmp-{dead.pid}-abcd1234"
    live = tmp_path / f".checkpoint.pt.tmp-{os.getpid()}-abcd1234"  # a save under way: left alone
    # a PID gone here may be a live writer in another PID namespace (a container) or host: recent, left alone
    elsewhere = tmp_path / f".checkpoint.pt.tmp-{dead.pid}-ef567890"
    for path in (stale, live, elsewhere):
        path.write_bytes(b"half a checkpoint")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    write_atomically(str(target), lambda f: f.write(b"whole"))
    assert target.read_bytes() == b"whole" and not stale.exists() and live.exists() and elsewhere.exists()


# ----------------------------------------------------------------------------- the console never ends a run


def test_a_closed_pipe_stops_console_output_and_training_goes_on(tmp_path):
    proc = subprocess.Popen(
        main_argv(tmp_path, "--env-name", TINY, steps=640), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline(), proc.stdout.readline()  # as `| head -2` does
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "Error" not in err
    (folder,) = run_folders(tmp_path)
    assert torch.load(os.path.join(folder, "checkpoint.pt"), weights_only=True)["counters"]["update"] == 20


def test_a_closed_stdout_from_the_start(tmp_path):
    proc = run(main_argv(tmp_path, "--env-name", TINY, steps=320), stdout=None, preexec_fn=lambda: os.close(1))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert glob.glob(str(tmp_path / "runs" / "*" / "checkpoint.pt"))


# ----------------------------------------------------------------------------- no silent hang


@pytest.mark.parametrize(
    ("env", "vec_env"), [("hanging_env", "sync"), ("hanging_env", "subproc"), ("retrying_env", "sync")]
)  # retrying_env catches what interrupts it with `except Exception`
def test_a_hanging_env_stops_the_run_after_the_timeout(tmp_path, env, vec_env):
    pids = tmp_path / "pids"
    pids.mkdir()
    workers = ["--num-workers", "1"] if vec_env == "subproc" else []
    argv = main_argv(tmp_path, "--env-name", f"tests.envs_failing:{env}", "--vec-env", vec_env, *workers,
                     "--env-timeout", "2", steps=100_000)  # fmt: skip
    start = time.monotonic()
    proc = run(argv, {FAIL_AFTER_VARIABLE: "50", PID_DIR_VARIABLE: str(pids)})
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - start < 60
    assert "within 2 s" in proc.stderr and "step" in proc.stderr
    assert "env 0" in proc.stderr or "env 1" in proc.stderr
    (folder,) = run_folders(tmp_path)
    assert torch.load(os.path.join(folder, "checkpoint.pt"), weights_only=True)["counters"]["update"] >= 1
    for name in os.listdir(pids):
        with pytest.raises(ProcessLookupError):
            os.kill(int(name), 0)


def test_an_env_whose_first_reset_hangs_in_the_start_up_check_stops_after_the_timeout(tmp_path):
    argv = main_argv(tmp_path, "--env-name", "tests.envs_failing:hanging_reset_env", "--env-timeout", "2")
    start = time.monotonic()
    proc = run(argv)
    assert proc.returncode == 3 and time.monotonic() - start < 60, proc.stderr
    assert "did not return from its first reset in the start-up check within 2 s" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_env_whose_constructor_hangs_in_the_start_up_check_is_an_env_failure(monkeypatch):
    from a2c_ppo.envs import timeouts
    from a2c_ppo.envs.check import inspect_env
    from a2c_ppo.envs.subproc import EnvWorkerError

    monkeypatch.setattr(timeouts, "WORKER_START_S", 1.0)  # 60 s by default: a first build imports its simulator
    start = time.monotonic()
    match = r"its construction in the start-up check within 1 s \(--env-timeout 0\.5, and"
    with pytest.raises(EnvWorkerError, match=match):
        inspect_env("tests.envs_failing:hanging_constructor", timeout=0.5)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    ("builds", "said"),
    [(4, "env 0 did not return from its construction (to read its spaces) within 1 s"),
     (5, "env 0 (main process) did not return from creating the env: no return within 1 s (--env-timeout, and at "
         "least 1 s to build an env"),
     (7, "the evaluation's env 0 did not return from its construction (to read its spaces) within 1 s")],
)  # fmt: skip
def test_an_env_whose_constructor_hangs_after_the_start_up_check_is_an_env_failure(monkeypatch, tmp_path, builds,
                                                                                   said):  # fmt: skip
    """The start-up check builds the env four times here (twice when resolving the settings, twice
    when the trainer starts); the vector env builds one to read its spaces, then its envs in this
    process, and the evaluation's envs after the first update: each build past the check is
    limited as well."""
    import tests.envs_failing as envs_failing
    from a2c_ppo.arguments import resolve
    from a2c_ppo.envs import timeouts
    from a2c_ppo.envs.subproc import EnvWorkerError
    from a2c_ppo.session import launch

    monkeypatch.setattr(timeouts, "WORKER_START_S", 1.0)
    monkeypatch.setattr(envs_failing, "_builds", 0)
    monkeypatch.setenv(envs_failing.BUILDS_VARIABLE, str(builds))
    argv = main_argv(tmp_path, "--env-name", "tests.envs_failing:hanging_later_constructor", "--vec-env", "sync",
                     "--env-timeout", "0.5", "--eval-interval", "1")  # fmt: skip
    start = time.monotonic()
    with pytest.raises(EnvWorkerError) as error:
        launch(resolve(argv[2:]))
    assert said in str(error.value) and time.monotonic() - start < 10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the env deadlocks in glibc's pthread_mutex_lock")
def test_an_env_stuck_outside_python_ends_the_process_with_every_threads_stack(tmp_path):
    """No signal handler runs while env code is stuck in C: the backstop ends the run 5 s after
    --env-timeout, naming the limit, with the stacks on stderr, and leaves no process behind."""
    pids = tmp_path / "pids"
    pids.mkdir()
    argv = main_argv(tmp_path, "--env-name", "tests.envs_failing:stuck_env", "--vec-env", "sync", "--env-timeout", "1",
                     steps=100_000)  # fmt: skip
    start = time.monotonic()
    proc = run(argv, {FAIL_AFTER_VARIABLE: "50", PID_DIR_VARIABLE: str(pids)})
    assert proc.returncode == 3 and time.monotonic() - start < 60, proc.stderr
    assert "past its limit of 1 s (--env-timeout), and cannot be interrupted" in proc.stderr
    assert "in step" in proc.stderr  # the stack shows where the env is stuck
    for name in os.listdir(pids):
        with pytest.raises(ProcessLookupError):
            os.kill(int(name), 0)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="the test reads the child's state in /proc")
def test_the_limit_ignores_time_outside_env_calls_and_while_stopped():
    code = (
        "import os, signal, sys, time\n"
        "from a2c_ppo.envs import timeouts\n"
        "timeouts._Watch.GRACE_S = 0.5\n"
        "timeouts.arm(0.5)\n"
        "timeouts.disarm()\n"
        "time.sleep(3)\n"  # an update after the env calls: no limit runs
        "timeouts.arm(2.0)\n"
        "print('ready', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGSTOP)\n"  # stopped inside an env call, continued by the parent
        "time.sleep(1.2)\n"
        "timeouts.disarm()\n"
        "print('alive')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 30
        while open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "T":
            assert time.monotonic() < deadline, "the child never stopped"
            time.sleep(0.05)
        time.sleep(4)  # stopped 4 s, past the call's 2 s limit and its 0.5 s grace
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and out == "alive\n", err


@pytest.mark.parametrize("vec_env", ["sync", "subproc"])
def test_a_run_stopped_whole_past_the_timeout_goes_on_when_continued(tmp_path, vec_env):
    """Ctrl-Z stops the run's process group, workers and all, for longer than --env-timeout,
    most likely inside an env's step (50 ms each): that time is no env's, so `fg` must find the
    run going on, not stopped as a hang."""
    workers = ["--num-workers", "2"] if vec_env == "subproc" else []  # subproc: both envs in workers
    argv = main_argv(tmp_path, "--env-name", "tests.envs_failing:slow_env", "--vec-env", vec_env, *workers,
                     "--env-timeout", "2", "--log-interval", "1", steps=256)  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, FAIL_AFTER_VARIABLE: "0"})  # fmt: skip
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.startswith("Updates 3/"):
                break
        time.sleep(0.5)  # into the next rollout's env steps (an update's 32 take 1.6 s)
        os.killpg(proc.pid, signal.SIGSTOP)
        time.sleep(5)  # past the 2 s limit
        os.killpg(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Updates" in out


def test_a_stopped_worker_is_caught_like_a_hang(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    argv = main_argv(tmp_path, "--env-name", TINY, "--vec-env", "subproc", "--num-workers", "1", "--env-timeout", "2",
                     steps=10_000_000)  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, PID_DIR_VARIABLE: str(pids)})  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Updates 3/"):
            break
    worker = next(int(name) for name in os.listdir(pids) if int(name) != proc.pid)
    os.kill(worker, signal.SIGSTOP)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert f"pid {worker}" in err and "within 2 s" in err and "Traceback" not in err.split("--- traceback ---")[0]
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


# ----------------------------------------------------------------------------- Ctrl-C at any moment


@pytest.mark.parametrize("delay", [0.15, 0.4, 0.8, 1.5, 3.0])
def test_ctrl_c_at_any_moment_of_start_up(tmp_path, delay):
    argv = main_argv(tmp_path, "--env-name", TINY, "--vec-env", "subproc", "--num-workers", "1", steps=10_000_000)
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    assert len(err.strip().splitlines()) <= 1, err


def test_show_settings_on_a_resume_names_the_folders_default_not_the_checkpoint(tmp_path):
    from a2c_ppo.arguments import resolve, settings_table

    request = resolve(["--resume", trained_checkpoint(tmp_path), "--num-env-steps", "256"])
    assert request.origins["save_dir"] == request.origins["log_dir"] == request.origins["track"] == "default"
    assert request.origins["lr"] == "checkpoint" and request.origins["num_env_steps"] == "typed"
    (log_dir,) = [line for line in settings_table(request).splitlines() if line.startswith("--log-dir")]
    assert request.in_place and log_dir.endswith(
        f"default, unused (the run goes on in its folder {request.config.run_dir})"
    )


def test_a_checkpoint_naming_a_scripts_own_code_says_where_to_replay_it(tmp_path):
    """``__main__:X`` was the training script's: no other program imports it, trusted or not."""
    from a2c_ppo.arguments import resolve

    script = craft(trained_checkpoint(tmp_path), str(tmp_path / "script.pt"), env_name="__main__:GoToTarget")
    for extra in ([], ["--trust-checkpoint"]):
        with pytest.raises(ConfigError, match=r"--env-name '__main__:GoToTarget', code the training script made "
                                              r"itself .* load the checkpoint from that script"):  # fmt: skip
            resolve(["--resume", script, *extra])
    both = craft(script, str(tmp_path / "both.pt"), env_name="evil_module:Env", policy_base="evil_module:Net")
    with pytest.raises(ConfigError, match=r"names code to import, --env-name 'evil_module:Env' and --policy-base "
                                          r"'evil_module:Net'"):  # fmt: skip
        resolve(["--resume", both])


SCRIPT = """
import sys

import gymnasium as gym
import torch.nn as nn

import a2c_ppo


class SmallNet(nn.Module):
    is_recurrent, recurrent_hidden_state_size, output_size = False, 1, 8

    def __init__(self, observation_space, width=8):
        super().__init__()
        self.actor, self.critic = nn.Linear(4, width), nn.Linear(4, 1)

    def forward(self, obs, rnn_hxs, masks):
        return self.critic(obs), self.actor(obs).tanh(), rnn_hxs


if __name__ == "__main__":
    if sys.argv[1] == "train":
        result = a2c_ppo.train("CartPole-v1", policy_base=SmallNet, num_env_steps=64, num_processes=2,
                               num_steps=32, vec_env="sync", log_dir=sys.argv[2], save_dir=sys.argv[3])
        print(result.checkpoint)
    else:  # a new run of the same script: its own class is found again, given trust
        agent = a2c_ppo.load(sys.argv[2], trust_checkpoint=True)
        print("action", agent.act([0.0, 0.0, 0.0, 0.0]))
"""


def test_a_scripts_own_network_loads_again_in_that_script_and_is_refused_elsewhere(tmp_path):
    script = tmp_path / "train_small.py"
    script.write_text(SCRIPT)
    trained = subprocess.run([sys.executable, str(script), "train", str(tmp_path / "runs"), str(tmp_path / "models")],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    checkpoint = trained.stdout.strip().splitlines()[-1]
    again = subprocess.run([sys.executable, str(script), "load", checkpoint], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0 and "action" in again.stdout, again.stderr
    enjoy = [sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", checkpoint, "--trust-checkpoint"]
    elsewhere = subprocess.run(enjoy, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert elsewhere.returncode == 2 and "Traceback" not in elsewhere.stderr
    assert "--policy-base '__main__:SmallNet', code the training script made itself" in elsewhere.stderr
    # the class named from its module: no trust needed, as the user typed the reference
    named = subprocess.run([*enjoy[:-1], "--num-episodes", "1", "--policy-base", "train_small:SmallNet"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(tmp_path)})  # fmt: skip
    assert named.returncode == 0 and "mean return over 1 episode" in named.stdout, named.stderr


def test_replay_and_export_take_the_network_in_place_of_the_checkpoints(tmp_path):
    """A network the checkpoint names by a module this reader lacks is named again with --policy-base."""
    from a2c_ppo.enjoy import load_replay
    from a2c_ppo.onnx_export import main as export_main

    proc = run(
        main_argv(tmp_path, "--env-name", "CartPole-v1", "--policy-base", "tests.custom_nets:SmallNet", steps=64)
    )
    assert proc.returncode == 0, proc.stderr
    (folder,) = run_folders(tmp_path)
    moved = craft(os.path.join(folder, "checkpoint.pt"), str(tmp_path / "moved.pt"), policy_base="old_nets:SmallNet")
    with pytest.raises(ConfigError, match=r"name it yourself \(--policy-base old_nets:SmallNet; env= / policy_base="):
        load_replay(moved, "--checkpoint")
    replay = load_replay(moved, "--checkpoint", policy_base="tests.custom_nets:SmallNet")
    replay.envs.close()
    assert type(replay.policy.base).__name__ == "SmallNet"
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        out = str(tmp_path / "policy.onnx")
        assert export_main([moved, out, "--policy-base", "tests.custom_nets:SmallNet"]) == 0
        assert os.path.getsize(out) > 0
        with pytest.raises(SystemExit) as stop:
            export_main([moved, str(tmp_path / "other.onnx"), "--policy-base", ""])
        assert stop.value.code == 2 and not os.path.exists(tmp_path / "other.onnx")
    # a network whose weights are not the checkpoint's is blamed, not the checkpoint
    built_in = trained_checkpoint(tmp_path / "mlp")
    with pytest.raises(ConfigError, match=r"--policy-base 'tests.custom_nets:SmallNet': the weights of .* do not fit "
                                          r"that network \(it was trained with the built-in network\)"):  # fmt: skip
        load_replay(built_in, "--checkpoint", policy_base="tests.custom_nets:SmallNet")


def test_the_command_a_stopped_run_gives_to_continue_is_one_that_is_accepted(tmp_path):
    """A run of code named ``module:attribute`` (and text env arguments) is continued by naming
    them: the hint a stopped run prints types them, and --resume then takes the checkpoint."""
    import shlex

    from a2c_ppo.api import train
    from a2c_ppo.arguments import resolve
    from a2c_ppo.checkpoint import load_checkpoint, resume_command
    from a2c_ppo.config import RunConfig

    folders = {"log_dir": str(tmp_path / "runs"), "save_dir": str(tmp_path / "models")}
    result = train("tests.envs_for_spaces:MaskedChoiceEnv", num_processes=2, num_steps=16, num_env_steps=32, **folders)
    saved = RunConfig.from_dict(load_checkpoint(result.checkpoint)["config"], [])
    command = resume_command(saved, result.checkpoint)
    assert command.startswith("python main.py --resume ")
    assert "--env-name tests.envs_for_spaces:MaskedChoiceEnv" in command
    env = "tests.envs_for_spaces:MaskedChoiceEnv"
    assert command.endswith(f"train(resume={result.checkpoint!r}, env={env!r}) in Python")
    argv = shlex.split(command.split(", or ")[0])[2:]
    with pytest.raises(ConfigError, match="names code to import"):  # without the names it types
        resolve(["--resume", result.checkpoint, "--num-env-steps", "64"])
    assert resolve([*argv, "--num-env-steps", "64"]).checkpoint is not None
    lambdas = saved.replace(env_name="__main__:<lambda>")
    assert resume_command(lambdas, "c.pt") == "train(resume='c.pt', env=...) in the script that trained it"
    script = saved.replace(env_name="__main__:GoToTarget", policy_base="__main__:SmallNet")  # a script's classes
    assert resume_command(script, "c.pt") == (
        "train(resume='c.pt', env=..., policy_base=...) in the script that trained it"
    )
    text = saved.replace(env_name="CartPole-v1", env_kwargs='{"render_mode": "human"}')
    assert resume_command(text, "my run/c.pt").startswith(
        "python main.py --resume 'my run/c.pt' --env-kwargs '{\"render_mode\": \"human\"}', or "
    )
