"""Launches under torchrun on loopback (gloo, CPU): one node with 2 ranks, two nodes with one
rank each, and a rank that fails. ``tests/dist_script.py`` stands in for ``main.py``."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.dist_helpers import PID_DIR_VARIABLE, alive, finish, free_port, recorded_pids, torchrun

SCRIPT = "tests/dist_script.py"
NUM_ENVS, NUM_STEPS, UPDATES = 2, 16, 3
DEADLINE_S = 180.0


def results(out_dir: str, world_size: int) -> list[dict]:
    ranks = []
    for rank in range(world_size):
        with open(os.path.join(out_dir, f"rank{rank}.json")) as f:
            ranks.append(json.load(f))
    return ranks


def script_args(out_dir: str, *extra: str) -> list[str]:
    return [SCRIPT, "--out", out_dir, "--num-envs", str(NUM_ENVS), "--num-steps", str(NUM_STEPS), *extra]


@pytest.fixture(scope="module")
def standalone(tmp_path_factory) -> list[dict]:
    """The rank results of ``torchrun --standalone --nproc_per_node=2``."""
    out = str(tmp_path_factory.mktemp("standalone"))
    code, output = finish(torchrun(script_args(out), ["--standalone", "--nproc_per_node=2"]), DEADLINE_S)
    assert code == 0, output
    assert sorted(os.listdir(out)) == ["log.txt", "rank0.json", "rank1.json"]  # rank 0 alone logs
    return results(out, 2)


def test_standalone_ranks_stay_identical_with_distinct_env_seeds(standalone):
    r0, r1 = standalone
    assert len(r0["hashes"]) == UPDATES
    assert r0["hashes"] == r1["hashes"]  # after every update
    assert r0["obs_stats"] == r1["obs_stats"]  # normalisation statistics synced
    assert r0["first_obs"] != r1["first_obs"]  # env seeds differ per rank
    assert r0["env_steps"] == 2 * NUM_ENVS * NUM_STEPS * UPDATES


def two_node_args() -> list[str]:
    """torchrun flags for one of two single-rank "nodes" meeting on a free loopback port."""
    return [
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        "--rdzv-id=dist-test",
        "--local-addr=127.0.0.1",
        "--rdzv-conf=join_timeout=60",
        "--max-restarts=0",
    ]


def launch_two_nodes(args: list[str], env: dict[str, str] | None = None) -> list[tuple[int | None, str]]:
    node_args = two_node_args()
    nodes = [torchrun(args, node_args, env) for _ in range(2)]
    return [finish(node, DEADLINE_S) for node in nodes]


def test_two_nodes_on_loopback_reach_the_same_parameters(standalone, tmp_path):
    outcomes = launch_two_nodes(script_args(str(tmp_path)))
    for code, output in outcomes:
        assert code == 0, output
    r0, r1 = results(str(tmp_path), 2)
    assert r0["hashes"] == r1["hashes"] == standalone[0]["hashes"]


@pytest.mark.parametrize("nodes", [1, 2])
def test_a_failing_rank_stops_the_launch_and_leaves_no_process(tmp_path, nodes):
    # One node: torchrun's agent stops the healthy rank. Two nodes: the healthy rank's next
    # collective fails (the peer closed its connection, or the 20 s timeout).
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    args = script_args(str(tmp_path), "--env-name", "tests.dist_helpers:make_pid_env", "--fail-rank", "1")
    env = {PID_DIR_VARIABLE: str(pid_dir)}
    start = time.monotonic()
    if nodes == 1:
        outcomes = [finish(torchrun(args, ["--standalone", "--nproc_per_node=2"], env), DEADLINE_S)]
    else:
        outcomes = launch_two_nodes(args, env)
    assert time.monotonic() - start < 90  # start-up plus at most the collective timeout
    for code, output in outcomes:
        assert code not in (0, None), output
    assert "rank 1 fails on purpose" in "".join(output for _, output in outcomes)
    pids = recorded_pids(str(pid_dir))
    assert len(pids) >= 4  # both ranks and their env workers
    time.sleep(1.0)  # workers notice their parent's exit on their pipe
    assert alive(pids) == []


def test_a_launch_killed_at_its_deadline_shows_where_its_ranks_stood(tmp_path):
    # A hang in CI must fail with the stacks that explain it, not in silence.
    started = tmp_path / "started"
    script = tmp_path / "hang.py"
    script.write_text(
        f"import pathlib, time\n\ndef wait_forever():\n    pathlib.Path({str(started)!r}).touch()\n"
        "    time.sleep(600)\n\nwait_forever()\n"
    )
    proc = torchrun([str(script)], ["--standalone", "--nproc_per_node=1"])
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    code, output = finish(proc, 0.5)
    assert code is None
    assert "in wait_forever" in output  # the rank's stack, from its own session
    assert "killed at the 0.5 s deadline" in output
