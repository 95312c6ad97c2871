"""Choosing the compute device and describing it to people."""

from __future__ import annotations

from typing import Optional

import torch

from engine.errors import InputError
from engine.request import NATIVE_BF16_LABEL, PRECISION_CHOICES


def is_cuda(device: torch.device) -> bool:
    """NVIDIA GPUs: the one device type with CUDA graphs and free-memory queries.
    (The only place in the engine that names the type; devices themselves come from the user.)"""
    return device.type == "cuda"


def pick_device(spec: str = "auto") -> torch.device:
    """``auto`` takes the first CUDA GPU, then Apple MPS, then the CPU; otherwise as named."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device(f"cuda:{torch.cuda.current_device()}")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise InputError(f"unknown device {spec!r} (use auto, cpu, cuda or cuda:N)") from exc
    if is_cuda(device):
        if not torch.cuda.is_available():
            raise InputError(f"device {spec!r} was asked for, but no CUDA GPU is available to PyTorch")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise InputError(f"device {spec!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s) found")
    return device


def describe_device(device: torch.device) -> str:
    """A human name: 'NVIDIA GeForce RTX 4090 (24.0 GB)', 'CPU (16 threads)' or 'CPU (8 threads, native bf16)'."""
    if is_cuda(device):
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.1f} GB)"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    bf16 = f", {NATIVE_BF16_LABEL}" if cpu_has_native_bf16() else ""
    return f"CPU ({torch.get_num_threads()} threads{bf16})"


def available_devices() -> list[tuple[str, str]]:
    """(spec, description) for every device a user can pick; the CPU is always last."""
    out = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            out.append((f"cuda:{i}", describe_device(torch.device(f"cuda:{i}"))))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append(("mps", describe_device(torch.device("mps"))))
    out.append(("cpu", describe_device(torch.device("cpu"))))
    return out


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (x86 AMX or AVX512-BF16): there oneDNN runs the
    network several times faster in bf16 than in fp32. Elsewhere bf16 is emulated and slower."""
    try:
        caps = torch._C._cpu._get_cpu_capability()
    except (AttributeError, RuntimeError):
        return False
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


def pick_precision(precision: str, device: torch.device) -> str:
    """Resolve ``auto`` to the fastest precision this device runs well; other names pass through.

    ``auto``: bf16 on CUDA GPUs that support it (fp16 on older ones with tensor cores, fp32 on
    those without), bf16 on CPUs with native
    bf16, fp32 elsewhere (Apple MPS, older CPUs). Reduced precision keeps GroupNorm's statistics and
    all sampler math in fp32; the network's activations and weights are 16-bit.
    """
    precision = (precision or "auto").strip().lower()
    if precision not in PRECISION_CHOICES:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISION_CHOICES)}")
    if precision != "auto":
        return precision
    if is_cuda(device):
        if torch.cuda.is_bf16_supported():
            return "bf16"
        # fp16 only with tensor cores (Volta and later); older GPUs compute half slower than fp32
        return "fp16" if torch.cuda.get_device_capability(device) >= (7, 0) else "fp32"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


#: What a run on the CPU in fp16 is told (the app's Advanced list says the same in short).
CPU_FP16_WARNING = ("fp16 is emulated on a CPU, so this run will be many times slower than with precision auto "
                    "(15 times where it was measured): choose auto, bf16 or fp32 there; fp16 is for GPUs")


def precision_warning(precision: str, device: torch.device) -> Optional[str]:
    """A warning for a precision that runs badly on ``device`` (fp16 on a CPU), else None."""
    return CPU_FP16_WARNING if precision == "fp16" and device.type == "cpu" else None
