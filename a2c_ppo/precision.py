"""Mixed precision: the policy's forward and backward passes in bfloat16 where it pays.

Parameters, the optimizer's state, returns, advantages and the losses stay float32; only the
policy's matrix products and convolutions run in bf16, under ``torch.autocast`` (which keeps
the reductions in float32; the log-softmax is float32 too, by ``distributions.log_softmax``'s
request, as the CPU's autocast leaves it in bf16). ``--precision auto`` takes bf16 where the
hardware has native bf16 matrix units (a CPU with AMX or AVX-512 BF16; CUDA compute
capability 8.0 and up) and one minibatch step of this policy is measured at least
``BF16_MIN_SPEEDUP`` times faster (the Nature CNN: 2.5-2.8x on the development VM's AMX;
small MLPs: slower, and the fast path is float32), float32 otherwise. The choice is printed
and recorded, so a resumed run makes the same one; a run is deterministic for a seed and a
precision. fp16 is not offered: every device with bf16 units runs bf16 as fast, without the
loss scaler fp16 needs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

#: ``auto`` takes bf16 only when a minibatch step is measured this much faster.
BF16_MIN_SPEEDUP = 1.3
#: The rows of the probe's minibatch.
PROBE_ROWS = 256


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` has bf16 matrix units (CPU: AMX or AVX-512 BF16; CUDA: sm_80+)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()) or bool(
            getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
        )
    return False


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context the policy's passes run in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _median_seconds(step: Callable[[], object], repeats: int = 5) -> float:
    step()  # warm-up: kernels chosen, caches filled
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measured_speedup(minibatch_step: Callable[[str], object]) -> float:
    """fp32 time over bf16 time of ``minibatch_step(precision)`` (one forward and backward)."""
    fp32 = _median_seconds(lambda: minibatch_step("fp32"))
    bf16 = _median_seconds(lambda: minibatch_step("bf16"))
    return fp32 / max(bf16, 1e-9)


def choose_precision(
    precision: str, device: torch.device, minibatch_step: Callable[[str], object], fast_path: bool
) -> tuple[str, str]:
    """``fp32`` or ``bf16`` for ``--precision`` (``auto``: see the module docstring), and why.

    ``fast_path``: the policy is a small MLP the fast path computes in float32 (never measured)."""
    if precision != "auto":
        return precision, "set: typed, or kept from the resumed run"
    if fast_path:
        return "fp32", "auto: a small MLP, computed by the float32 fast path"
    if not has_native_bf16(device):
        return "fp32", f"auto: no bf16 matrix units on {device.type}"
    speedup = measured_speedup(minibatch_step)
    if speedup >= BF16_MIN_SPEEDUP:
        return "bf16", f"auto: a minibatch step measured {speedup:.1f}x faster in bf16"
    return "fp32", f"auto: bf16 measured {speedup:.1f}x, under {BF16_MIN_SPEEDUP}x"


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Leave torch's RNG as it was: a probe must not change what the run draws."""
    state = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(state)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def preserved_buffers(module: torch.nn.Module) -> Iterator[None]:
    """Leave ``module``'s buffers as they were: a probe's passes on made-up observations must not
    reach the running statistics of a network of one's own (batch norm, a running mean of its
    inputs, a counter), which train mode updates."""
    saved = [(buffer, buffer.clone()) for buffer in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
