"""The real ``main.py`` under torchrun on loopback (gloo, CPU): 2 ranks on one node, two
nodes, a failing rank, and a resume. ``main.py`` checks at every logged update that all ranks
hold the same parameters (``check_in_sync``) and fails if not."""

from __future__ import annotations

import csv
import glob
import os
import re
import signal
import time

import pytest
import torch

from tests.dist_helpers import (
    FAIL_RANK_VARIABLE,
    PID_DIR_VARIABLE,
    RAISE_AT_VARIABLE,
    ROOT,
    SEED_DIR_VARIABLE,
    SLOW_RANK_VARIABLE,
    alive,
    finish,
    free_port,
    rank_process,
    recorded_pids,
    torchrun,
)

NUM_ENVS, NUM_STEPS, UPDATES, SEED = 2, 16, 3, 1
GLOBAL_BATCH = 2 * NUM_ENVS * NUM_STEPS
DEADLINE_S = 180.0
STANDALONE = ["--standalone", "--nproc_per_node=2"]


def main_args(out: str, *extra: str, updates: int = UPDATES) -> list[str]:
    return [
        os.path.join(ROOT, "main.py"),
        "--env-name", "tests.dist_helpers:make_seed_env",
        "--num-processes", str(NUM_ENVS),
        "--num-steps", str(NUM_STEPS),
        "--num-env-steps", str(updates * GLOBAL_BATCH),
        "--seed", str(SEED),
        "--norm-obs",  # the normalisation statistics are synced too
        "--norm-value",  # and the returns' statistics
        "--vec-env", "subproc",
        "--num-workers", "1",  # env workers beside the process group
        "--overlap", "off",  # no timing probe: only training envs are seeded (and recorded)
        "--num-threads", "1",
        "--log-interval", "1",
        "--eval-interval", "0",
        "--log-dir", os.path.join(out, "logs"),
        "--save-dir", os.path.join(out, "models"),
        *extra,
    ]  # fmt: skip


def launch(out: str, torchrun_args: list[str], *extra: str, env: dict[str, str] | None = None, **kw) -> str:
    """Runs main.py under torchrun with a seed folder; returns the combined output (exit 0 asserted)."""
    os.makedirs(os.path.join(out, "seeds"), exist_ok=True)
    env = {SEED_DIR_VARIABLE: os.path.join(out, "seeds"), **(env or {})}
    code, output = finish(torchrun(main_args(out, *extra, **kw), torchrun_args, env), DEADLINE_S)
    assert code == 0, output
    return output


def checkpoint(out: str) -> dict:
    """The newest run's checkpoint (rank 0 alone writes one)."""
    path = max(glob.glob(os.path.join(out, "logs", "*", "checkpoint.pt")), key=os.path.getmtime)
    return torch.load(path, weights_only=True)


def progress_rows(out: str) -> list[dict]:
    (path,) = glob.glob(os.path.join(out, "logs", "*", "progress.csv"))  # rank 0's alone
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def standalone(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("standalone"))
    launch(out, STANDALONE)
    return out


def test_two_ranks_count_all_steps_seed_apart_and_only_rank_0_writes(standalone):
    rows = progress_rows(standalone)
    assert [int(row["env_steps"]) for row in rows] == [GLOBAL_BATCH * (u + 1) for u in range(UPDATES)]
    assert checkpoint(standalone)["counters"] == {"update": UPDATES, "env_steps": UPDATES * GLOBAL_BATCH}
    # every return of both ranks reached the value normaliser's statistics (after a prior of 1e-4)
    assert checkpoint(standalone)["algorithm"]["value_norm"]["count"] == pytest.approx(UPDATES * GLOBAL_BATCH)
    # (the one unseeded reset of start-up is the probe that looks for action masks)
    seeds = sorted(name for name in os.listdir(os.path.join(standalone, "seeds")) if not name.endswith("None"))
    # env i of rank r: seed + r * num_processes + i
    assert seeds == [f"{r}-{SEED + r * NUM_ENVS + i}" for r in range(2) for i in range(NUM_ENVS)]


def test_two_nodes_reach_the_parameters_of_one_node(standalone, tmp_path):
    node_args = [
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        "--rdzv-id=main-test",
        "--local-addr=127.0.0.1",
        "--rdzv-conf=join_timeout=60",
        "--max-restarts=0",
    ]
    os.makedirs(tmp_path / "seeds")
    env = {SEED_DIR_VARIABLE: str(tmp_path / "seeds")}
    nodes = [torchrun(main_args(str(tmp_path)), node_args, env) for _ in range(2)]
    for code, output in [finish(node, DEADLINE_S) for node in nodes]:
        assert code == 0, output
    expected = checkpoint(standalone)["model"]
    got = checkpoint(str(tmp_path))["model"]
    assert all(torch.equal(got[name], expected[name]) for name in expected)


def test_resume_under_torchrun_continues_the_counts(tmp_path):
    launch(str(tmp_path), STANDALONE, updates=2)
    saved = glob.glob(os.path.join(tmp_path, "models", "*", "*.pt"))[0]
    output = launch(str(tmp_path), STANDALONE, "--resume", saved, updates=UPDATES + 1)
    assert "data-parallel run" in output  # other ranks' env states are not in the checkpoint
    # the console's episodes are rank 0's (TensorBoard's are every rank's), and it says so
    assert re.search(r"Updates 4/4, .* \| (rank 0's last \d+ episodes|no episode finished yet)", output), output
    assert re.search(r"Done: \d+ env steps, (rank 0's last|no episode)", output), output
    assert checkpoint(str(tmp_path))["counters"] == {"update": UPDATES + 1, "env_steps": (UPDATES + 1) * GLOBAL_BATCH}


def test_an_env_failing_on_one_rank_stops_both_with_a_checkpoint_and_no_process_left(tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    env = {PID_DIR_VARIABLE: str(pid_dir), RAISE_AT_VARIABLE: str(2 * NUM_STEPS + 4), FAIL_RANK_VARIABLE: "1"}
    args = [*main_args(str(tmp_path), "--save-interval", "100")]
    args[args.index("tests.dist_helpers:make_seed_env")] = "tests.dist_helpers:make_pid_env"
    start = time.monotonic()
    code, output = finish(torchrun(args, STANDALONE, env), DEADLINE_S)
    assert code not in (0, None), output
    assert time.monotonic() - start < 90
    assert "an environment failed, training stopped: rank 1 of 2: env " in output  # whose env it was
    assert checkpoint(str(tmp_path))["counters"]["update"] == 2  # rank 0 saved the last finished update
    pids = recorded_pids(str(pid_dir))
    assert len(pids) >= 4
    time.sleep(1.0)
    assert alive(pids) == []


def test_an_env_that_cannot_render_stops_every_rank_before_its_envs_start(tmp_path):
    """--capture-video's check renders on rank 0 alone: its refusal is shared as the folder's."""
    args = main_args(str(tmp_path), "--capture-video")
    args[args.index("tests.dist_helpers:make_seed_env")] = "tests.envs_failing:tiny_env"
    code, output = finish(torchrun(args, STANDALONE, {SEED_DIR_VARIABLE: str(tmp_path)}), DEADLINE_S)
    assert code not in (0, None)
    assert output.count("cannot render frames off-screen") == 1, output
    assert "exitcode  : 2" in output and "Stopped by SIGTERM" not in output and "exitcode  : 5" not in output, output


def test_an_error_one_later_rank_meets_alone_is_said_and_every_rank_stops_at_once(tmp_path):
    """Rank 1's start-up check alone cannot build the env; rank 0 goes on to join the group.
    Before, rank 1 left the error to rank 0 (an error of the command line, every rank's) and
    ended without a word, and rank 0, waiting in the group's rendezvous, did not hear
    torchrun's SIGTERM: 30 s later torchrun killed it, and nothing said what had happened."""
    args = main_args(str(tmp_path))
    args[args.index("tests.dist_helpers:make_seed_env")] = "tests.dist_helpers:make_env_unbuildable_on_one_rank"
    start = time.monotonic()
    code, output = finish(torchrun(args, STANDALONE, {FAIL_RANK_VARIABLE: "1"}), DEADLINE_S)
    assert code not in (0, None), output
    assert output.count("the port this env listens on is taken") == 1, output
    assert "rank 1 of 2 (its node's first rank did not say this within 10 s): main.py: error: " in output, output
    assert "Stopped by SIGTERM while waiting for every rank to join" in output, output
    assert "SIGKILL" not in output and time.monotonic() - start < 25, output


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="the test finds rank 1 in /proc")
def test_a_signal_to_one_rank_stops_every_rank_at_one_update_with_its_checkpoint(tmp_path):
    """SIGTERM to rank 1 alone, while rank 0 waits for it in a collective (rank 1's env is
    slow): rank 1 goes on to the update's end, where every rank learns of the signal, and all
    stop there with 143, rank 0 saving that update. Before, rank 1 stopped at once and rank 0
    failed in its collective: "another rank stopped", exit 5."""
    args = main_args(str(tmp_path), "--save-interval", "1000", updates=10_000)
    args[args.index("tests.dist_helpers:make_seed_env")] = "tests.dist_helpers:make_slow_rank_env"
    proc = torchrun(args, STANDALONE, {SLOW_RANK_VARIABLE: "1"})
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("Updates 3/"):
            break
    os.kill(rank_process(proc.pid, 1), signal.SIGTERM)
    code, rest = finish(proc, DEADLINE_S)
    output = "".join(seen) + rest
    assert code not in (0, None), output
    # (torchrun lists the ranks that ended before it stopped the others: one or both)
    assert "exitcode  : 143" in output and "exitcode  : 5" not in output, output
    assert output.count("Stopped by SIGTERM.") == 2 and "another rank stopped" not in output, output
    saved = re.search(r"Checkpoint of update (\d+) saved", output)
    assert saved is not None, output
    assert checkpoint(str(tmp_path))["counters"]["update"] == int(saved.group(1)) >= 3


def test_acktr_under_torchrun_is_a_clear_config_error(tmp_path):
    args = main_args(str(tmp_path), "--algo", "acktr")
    code, output = finish(torchrun(args, STANDALONE, {SEED_DIR_VARIABLE: str(tmp_path)}), DEADLINE_S)
    assert code not in (0, None)
    assert "exitcode  : 2" in output  # both ranks: bad input
    assert output.count("acktr cannot run data-parallel") == 1, output  # said once per node
    assert "[rank0]: Traceback" not in output and "[rank1]: Traceback" not in output
    assert not os.path.exists(os.path.join(tmp_path, "models"))


def test_a_log_dir_no_rank_can_write_ends_every_rank_at_once(tmp_path):
    """Rank 0 proves the folder writable; the others read what they can, so that they stop as
    it does rather than wait for it until --dist-timeout (and torchrun's SIGKILL)."""
    (tmp_path / "file").write_text("")
    args = main_args(str(tmp_path), "--log-dir", str(tmp_path / "file" / "runs"))
    start = time.monotonic()
    code, output = finish(torchrun(args, STANDALONE, {SEED_DIR_VARIABLE: str(tmp_path)}), DEADLINE_S)
    assert code not in (0, None) and time.monotonic() - start < 25, output
    assert output.count("is a file, not a folder") == 1, output  # said once per node
    assert "exitcode  : 2" in output and "-9" not in output, output


def test_a_run_folder_in_use_stops_every_rank_before_its_envs_start(standalone, tmp_path):
    """Rank 0 alone claims the run folder; its refusal (a live run holds the folder) reaches the
    other ranks through the first collective, so that all stop as for bad input, said once per
    node, where rank 1 used to build its envs until torchrun stopped it (exit 143)."""
    from a2c_ppo.files import RunLock

    run_dir = sorted(glob.glob(os.path.join(standalone, "logs", "*")))[0]
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    # its own --log-dir: a resume goes on in its run folder only there
    args = main_args(standalone, "--resume", os.path.join(run_dir, "checkpoint.pt"), updates=UPDATES + 1)
    lock = RunLock(run_dir).acquire()  # this test is the live run that holds it
    try:
        start = time.monotonic()
        code, output = finish(torchrun(args, STANDALONE, {SEED_DIR_VARIABLE: str(seeds)}), DEADLINE_S)
    finally:
        lock.release()
    assert code not in (0, None) and time.monotonic() - start < 60, output
    assert output.count("is in use by a live run") == 1, output  # said once per node
    # rank 1 stops on its own, not at torchrun's SIGTERM once rank 0 has ended
    assert "exitcode  : 2" in output and "Stopped by SIGTERM" not in output and "exitcode  : 5" not in output, output
    assert os.listdir(seeds) == []  # no rank reset an env


@pytest.mark.parametrize("bad", [["--lr", "-1"], ["--num-steps", "many"]])
def test_bad_input_under_torchrun_is_said_once_per_node(tmp_path, bad):
    """Every rank of a node parses the same command line: its first rank alone says what is wrong."""
    code, output = finish(torchrun(main_args(str(tmp_path), *bad), STANDALONE, {SEED_DIR_VARIABLE: str(tmp_path)}),
                          DEADLINE_S)  # fmt: skip
    assert code not in (0, None)
    assert output.count("main.py: error: ") == 1, output
    assert bad[0] in output and "[rank0]: Traceback" not in output and "[rank1]: Traceback" not in output


def test_gail_ranks_share_one_discriminator(tmp_path):
    """Each rank builds GAIL's discriminator under its own seed: rank 0's is broadcast at the
    start, and main.py checks it, with the policy, on every rank at every logged update."""
    import gymnasium as gym
    import numpy as np

    from a2c_ppo.trajectories import save_trajectories

    space = gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    episodes = [
        {"obs": rng.normal(size=(30, 4)).astype(np.float32), "actions": rng.integers(0, 2, (30, 1)),
         "rewards": np.ones(30, np.float32)}
        for _ in range(4)
    ]  # fmt: skip
    experts = str(tmp_path / "expert.npz")
    save_trajectories(experts, env_id="tests.dist_helpers:make_seed_env", observation_space=space.observation_space,
                      action_space=space.action_space, episodes=episodes)  # fmt: skip
    output = launch(str(tmp_path / "run"), STANDALONE, "--gail", "--gail-experts", experts)
    assert "Updates 3/3" in output
