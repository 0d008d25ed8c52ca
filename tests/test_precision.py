"""Mixed precision: the choice ``--precision auto`` makes, and what bf16 changes (the policy's
passes) and what it leaves alone (parameters, RNG). Determinism, exact resume and float32
checkpoints under bf16 are in tests/test_resume.py; the CNN's learning target in both
precisions in tests/test_cnn.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from a2c_ppo import precision
from a2c_ppo.distributions import CategoricalHead, MultiCategoricalHead
from a2c_ppo.encoders import scaled_frames
from a2c_ppo.precision import BF16_MIN_SPEEDUP, autocast, choose_precision, preserved_rng

CPU = torch.device("cpu")


def never_called(precision_name: str) -> None:
    raise AssertionError("the probe must not run")


def test_a_typed_precision_is_taken_without_measuring():
    assert choose_precision("bf16", CPU, never_called, fast_path=True) == (
        "bf16",
        "set: typed, or kept from the resumed run",
    )
    assert choose_precision("fp32", CPU, never_called, fast_path=False) == (
        "fp32",
        "set: typed, or kept from the resumed run",
    )


def test_auto_keeps_the_fast_path_in_float32_without_measuring():
    chosen, why = choose_precision("auto", CPU, never_called, fast_path=True)
    assert chosen == "fp32" and "fast path" in why


def test_auto_without_bf16_units_is_float32(monkeypatch):
    monkeypatch.setattr(precision, "has_native_bf16", lambda device: False)
    chosen, why = choose_precision("auto", CPU, never_called, fast_path=False)
    assert chosen == "fp32" and "no bf16 matrix units" in why


@pytest.mark.parametrize(
    ("bf16_seconds", "expected"),
    [(1.0 / BF16_MIN_SPEEDUP, "bf16"), (1.0 / (BF16_MIN_SPEEDUP - 0.01), "fp32"), (2.0, "fp32")],
    ids=["at-the-threshold", "just-under", "slower"],
)
def test_auto_takes_bf16_only_where_measured_fast_enough(monkeypatch, bf16_seconds, expected):
    """fp32 takes 1 s a step here; bf16 ``bf16_seconds``: bf16 from BF16_MIN_SPEEDUP on."""
    monkeypatch.setattr(precision, "has_native_bf16", lambda device: True)
    seconds = {"fp32": 1.0, "bf16": bf16_seconds}
    timed: list[str] = []

    def fake_median_seconds(step, repeats: int = 5) -> float:
        step()  # the step records which precision it ran in
        return seconds[timed[-1]]

    monkeypatch.setattr(precision, "_median_seconds", fake_median_seconds)
    chosen, why = choose_precision("auto", CPU, timed.append, fast_path=False)
    assert chosen == expected and timed == ["fp32", "bf16"]
    assert f"{1.0 / bf16_seconds:.1f}x" in why


def test_bf16_runs_the_matrix_products_in_bf16_and_leaves_the_parameters_float32():
    layer = nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with autocast("bf16", CPU):
        y = layer(x)
    assert y.dtype == torch.bfloat16 and layer.weight.dtype == torch.float32
    with autocast("fp32", CPU):
        assert layer(x).dtype == torch.float32
    torch.testing.assert_close(y.float(), layer(x), rtol=2e-2, atol=2e-2)  # bf16 keeps ~3 digits


def test_the_probe_leaves_the_random_stream_alone():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    with preserved_rng():
        torch.rand(100)  # what a probe draws
    assert torch.equal(torch.rand(4), expected)


def test_frames_go_to_bf16_directly_with_the_values_a_float32_copy_would_give():
    """Every uint8 value times 1/255: cast once to bf16 under autocast, as autocast casts the
    float32 product for the convolution; without autocast, the float32 product; the frames
    themselves are never scaled in place."""
    frames = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    scale = 1.0 / 255.0
    float32 = frames.float() * scale
    with autocast("bf16", CPU):
        fast = scaled_frames(frames, scale)
    assert fast.dtype == torch.bfloat16
    assert torch.equal(fast, float32.to(torch.bfloat16))
    assert torch.equal(scaled_frames(frames, scale), float32)
    floats = torch.rand(1, 1, 4, 4)
    before = floats.clone()
    assert torch.equal(scaled_frames(floats, 0.5), before * 0.5) and torch.equal(floats, before)


def test_the_start_up_probes_leave_a_networks_running_statistics_alone(tmp_path, monkeypatch):
    """The bf16 measurement and --overlap auto's timing pass made-up (zero) observations through
    the policy in train mode; a network of one's own must start training with buffers that have
    seen none of them."""
    from a2c_ppo import load, train
    from tests.custom_nets import ZeroRowsNet

    monkeypatch.setattr(precision, "has_native_bf16", lambda device: True)  # measured on every machine
    result = train("CartPole-v1", policy_base=ZeroRowsNet, num_processes=2, num_steps=16, num_env_steps=32,
                   precision="auto", overlap="auto", vec_env="sync", log_dir=str(tmp_path / "runs"),
                   save_dir=str(tmp_path / "models"))  # fmt: skip
    assert load(result.checkpoint, policy_base=ZeroRowsNet).policy.base.zero_rows.item() == 0


@pytest.mark.parametrize("nvec", [None, [3, 2]], ids=["discrete", "multidiscrete"])
def test_masked_categorical_log_probabilities_and_entropy_are_float32_under_bf16(nvec):
    """Logits [1, 2, 3] (exact in bf16), action 1 forbidden: log p = [1 - log(e + e^3), -, 3 -
    log(e + e^3)] = [-2.126928, -, -0.126928] and H = 0.365334, to float32 rounding on every path
    (CPU autocast left the log-softmax in bf16: -2.125, -0.1270, H 0.3652). A MultiDiscrete
    second dimension [0, 0] with both allowed adds log 1/2 and log 2."""
    head = CategoricalHead(2, 3) if nvec is None else MultiCategoricalHead(2, nvec)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0][: head.linear.out_features]))
    x = torch.zeros(2, 2)
    mask = torch.tensor([True, False, True, True, True][: head.linear.out_features]).expand(2, -1)
    actions = torch.tensor([[0, 1], [2, 0]])[:, : 1 if nvec is None else 2]
    extra_log_p, extra_h = (0.0, 0.0) if nvec is None else (math.log(0.5), math.log(2.0))
    lse = math.log(math.e + math.e**3)
    expected_log_p = torch.tensor([[1.0 - lse + extra_log_p], [3.0 - lse + extra_log_p]])
    p0 = math.exp(1.0 - lse)
    expected_h = torch.full((2,), -(p0 * math.log(p0) + (1 - p0) * math.log(1 - p0)) + extra_h)
    with autocast("bf16", CPU), torch.no_grad():
        dist = head(x, mask)
        log_p, entropy = dist.log_probs(actions), dist.entropy()
        deterministic, acted_log_p = head.act(x, True, mask)
    assert torch.equal(deterministic, torch.tensor([[2, 0], [2, 0]])[:, : actions.shape[1]])
    torch.testing.assert_close(log_p.float(), expected_log_p, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(entropy.float(), expected_h, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(acted_log_p.float(), expected_log_p[1:].expand(2, 1), rtol=1e-6, atol=1e-6)
