"""How many windows to denoise at once: planned from a memory budget, split on out-of-memory.

The plan is deliberately rough (activation memory of an ADM-256-sized UNet scales with the window
area and the bytes per value); the split-and-retry path in the MSR orchestrator is the safety net:
a batch that runs out of memory is halved and retried, down to one window, and only then is
:class:`engine.errors.OutOfMemory` raised.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

#: Peak inference memory of one 256² window of the 552 M-parameter ADM in fp32 (measured order of
#: magnitude: activations of 256 channels at full resolution plus attention at 32/16/8 px).
BYTES_PER_256_WINDOW_FP32 = 1.6 * 2**30
#: Never plan more than this many windows in one batch (diminishing returns, long time to first preview).
MAX_AUTO_BATCH = 16
#: Fraction of the free device memory the plan may use.
BUDGET_FRACTION = 0.7
#: CPU batches stay small so that previews come often; two windows per call are a little faster per
#: window than one (ADM-256 at 256², 2 AMX cores, bf16 NHWC, docs/benchmarks.md: 2.33 s at batch 1,
#: 2.22 s per window at batch 2).
CPU_AUTO_BATCH = 2

_BYTES_PER_VALUE = {"fp32": 4, "fp16": 2, "bf16": 2}


def window_bytes(window_h: int, window_w: int, precision: str = "fp32") -> float:
    """Estimated peak device bytes of one window of ``window_h × window_w`` at ``precision``."""
    per_value = _BYTES_PER_VALUE.get(precision, 4)
    return BYTES_PER_256_WINDOW_FP32 * (window_h * window_w) / (256 * 256) * per_value / 4


def free_device_bytes(device: torch.device) -> Optional[int]:
    """Free memory on an accelerator, or None when unknown (CPU, MPS)."""
    backend = getattr(torch, device.type, None) if device.type != "cpu" else None
    mem_get_info = getattr(backend, "mem_get_info", None)
    if mem_get_info is None:
        return None
    free, _total = mem_get_info(device)
    return int(free)


def plan_batch_size(
    requested: Union[int, str],
    device: torch.device,
    window_h: int,
    window_w: int,
    precision: str = "fp32",
    budget_bytes: Optional[float] = None,
) -> int:
    """Windows per batch: ``requested`` when it is a number, else from ``budget_bytes`` (default:
    a fraction of the device's free memory). Always ≥ 1."""
    if requested != "auto":
        n = int(requested)
        if n < 1:
            raise ValueError(f"batch must be ≥ 1 or 'auto', got {requested}")
        return n
    if budget_bytes is None:
        free = free_device_bytes(device)
        if free is None:
            return CPU_AUTO_BATCH if device.type == "cpu" else 4
        budget_bytes = free * BUDGET_FRACTION
    n = int(budget_bytes / window_bytes(window_h, window_w, precision) + 1e-9)
    return max(1, min(MAX_AUTO_BATCH, n))


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's out-of-memory errors on any backend."""
    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def release_cached_memory(device: torch.device) -> None:
    """Give cached blocks back after an out-of-memory error, before retrying smaller."""
    backend = getattr(torch, device.type, None) if device.type != "cpu" else None
    empty_cache = getattr(backend, "empty_cache", None)
    if empty_cache is not None:
        empty_cache()


def split_in_two(items: list) -> tuple[list, list]:
    half = (len(items) + 1) // 2
    return items[:half], items[half:]
