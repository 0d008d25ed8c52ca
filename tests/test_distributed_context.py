"""Without processes: torchrun variables -> DistContext, its errors, and the running-statistics
sync arithmetic with ranks simulated by summing their payloads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from a2c_ppo.distributed import DistContext, check_algorithm, process_group, resolve_context
from a2c_ppo.envs.running_stats import RunningMeanStd
from a2c_ppo.errors import ConfigError

TORCHRUN = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_plain_launch_is_a_single_process():
    ctx = resolve_context(use_cuda=False, environ={})
    assert ctx == DistContext()
    assert ctx.is_main and not ctx.is_distributed and ctx.reducer() is None
    with process_group(ctx, timeout_s=1):  # no process group to join
        pass


def test_torchrun_variables_give_rank_roles_and_gloo_on_cpu():
    ctx = resolve_context(use_cuda=False, environ=TORCHRUN)
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.backend) == (3, 4, 1, "gloo")
    assert ctx.device == torch.device("cpu")
    assert not ctx.is_main and ctx.is_distributed
    assert ctx.reducer().world_size == 4


def test_cuda_uses_the_local_rank_gpu_and_nccl(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    ctx = resolve_context(use_cuda=True, environ=TORCHRUN)
    assert (ctx.device, ctx.backend) == (torch.device("cuda", 1), "nccl")
    assert resolve_context(use_cuda=True, backend="gloo", environ=TORCHRUN).backend == "gloo"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="LOCAL_RANK 1 has no GPU"):
        resolve_context(use_cuda=True, environ=TORCHRUN)


@pytest.mark.parametrize(
    ("environ", "backend", "phrase"),
    [
        ({**TORCHRUN, "RANK": "x"}, None, "RANK is 'x'"),
        ({"RANK": "0"}, None, "WORLD_SIZE is None"),
        ({**TORCHRUN, "RANK": "4"}, None, "inconsistent"),
        ({**TORCHRUN, "WORLD_SIZE": "0", "RANK": "0"}, None, "inconsistent"),
        (TORCHRUN, "nccl", "needs CUDA"),
        (TORCHRUN, "mpi", "not one of"),
    ],
)
def test_bad_launches_are_config_errors(environ, backend, phrase):
    with pytest.raises(ConfigError, match=phrase):
        resolve_context(use_cuda=False, backend=backend or "auto", environ=environ)


def test_a_backend_without_torchrun_changes_nothing():
    # A resumed single-process run may carry the backend its torchrun run was trained with.
    assert resolve_context(use_cuda=False, backend="nccl", environ={}) == DistContext()


def test_flags_this_launch_does_not_use_are_noted_not_refused():
    from a2c_ppo.cli import ignored_here

    typed = {"dist_backend", "dist_timeout", "cuda_deterministic", "seed"}
    single = resolve_context(use_cuda=False, backend="gloo", environ={})
    assert ignored_here(typed, single) == [
        "--dist-backend and --dist-timeout ignored: this run is not launched by torchrun.",
        "--cuda-deterministic ignored: this run trains on the CPU.",
    ]
    ranked = resolve_context(use_cuda=False, environ={"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    assert ignored_here(typed, ranked) == ["--cuda-deterministic ignored: this run trains on the CPU."]
    assert ignored_here({"seed"}, single) == []


def test_bad_timeout_is_a_config_error():
    ctx = resolve_context(use_cuda=False, environ=TORCHRUN)
    with pytest.raises(ConfigError, match="--dist-timeout"), process_group(ctx, timeout_s=0):
        pass


def test_acktr_is_refused_only_data_parallel():
    check_algorithm("acktr", DistContext())
    check_algorithm("ppo", DistContext(world_size=2, backend="gloo"))
    with pytest.raises(ConfigError, match="acktr cannot run data-parallel"):
        check_algorithm("acktr", DistContext(world_size=2, backend="gloo"))


def simulated_sync(rms_list: list[RunningMeanStd]) -> None:
    """What sync_running_stats does across ranks, with one object per rank."""
    summed = np.sum([rms.sync_payload() for rms in rms_list], axis=0)
    for rms in rms_list:
        rms.apply_sync(summed)


def test_sync_arithmetic_matches_one_object_fed_everything():
    rng = np.random.default_rng(0)
    ranks = [RunningMeanStd((2,)) for _ in range(3)]
    single = RunningMeanStd((2,))
    for _ in range(4):
        for rank, rms in enumerate(ranks):
            for n in rng.integers(0, 6, size=2):  # includes empty batches
                batch = rng.normal([50.0 * rank, -3.0], [1.0 + rank, 0.1], size=(n, 2))
                rms.update(batch)
                single.update(batch)
        simulated_sync(ranks)
        for rms in ranks:
            np.testing.assert_allclose(rms.mean, single.mean, rtol=1e-12)
            np.testing.assert_allclose(rms.var, single.var, rtol=1e-10)
            assert rms.count == pytest.approx(single.count, rel=1e-12)
        np.testing.assert_array_equal(ranks[0].var, ranks[2].var)


def test_between_syncs_a_rank_sees_its_own_data_and_a_load_starts_afresh():
    a, b = RunningMeanStd(()), RunningMeanStd(())
    a.update(np.array([1.0, 3.0]))
    assert a.mean == pytest.approx(4.0 / (2 + 1e-4))  # its own batch counts at once
    assert b.mean == 0.0
    simulated_sync([a, b])
    assert a.mean == b.mean == pytest.approx(4.0 / (2 + 1e-4))
    state = a.state_dict()
    assert set(state) == {"mean", "var", "count"}  # the checkpoint format is unchanged
    a.update(np.array([100.0]))
    a.load_state_dict(state)
    np.testing.assert_array_equal(a.sync_payload(), np.zeros(3))  # nothing unsynced after a load
    simulated_sync([a, b])  # no data anywhere: nothing changes
    assert a.mean == pytest.approx(4.0 / (2 + 1e-4))
    assert a.var == pytest.approx(b.var)
