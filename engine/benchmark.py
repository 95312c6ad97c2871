"""Speed measurements, printed as ratios measured side by side in one run.

Two measurements, each for our fast path and for a baseline that behaves like the reference
hq_demo pipeline (fp32, eager attention, one window at a time, every step's tensors copied to the
host and back):

* UNet throughput — window-steps per second and achieved TFLOP/s as a share of the device peak;
* end to end — an SR ×4 job restored with MSR through :func:`engine.pipeline.restore`.

Random weights are fine for timing. The baseline can be limited to its first N windows (all
windows cost the same), and its time is then extrapolated to the whole job and marked so.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from engine.device import describe_device, is_cuda, pick_precision
from engine.events import FinishedEvent, WindowFinished
from engine.models.attention import set_attention_backend
from engine.models.checkpoint import ModelConfig, build_model
from engine.models.cuda_graphs import GraphedDenoiser
from engine.models.speed import channels_last_pays, compile_network, prepare_network
from engine.models.tiny import build_tiny, tiny_adm_config
from engine.models.wrappers import EpsDenoiser
from engine.pipeline import restore
from engine.request import RestoreRequest, Tasks

#: Dense bf16 tensor-core peak (TFLOP/s) by device-name fragment, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}


def official_adm_config() -> ModelConfig:
    """The architecture of ``256x256_diffusion_uncond.pt`` (552.8 M parameters)."""
    return ModelConfig(family="adm", model_channels=256, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2,
                       attention_levels=(3, 4, 5), out_channels=6)


def device_peak_tflops(device: torch.device) -> Optional[float]:
    if not is_cuda(device):
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, peak in PEAK_BF16_TFLOPS.items():
        if fragment in name:
            return peak
    return None


def build_random_network(config: str, device: torch.device) -> tuple[torch.nn.Module, ModelConfig]:
    """``official``: the ADM-256 architecture with random weights; ``tiny``: test-tiny."""
    if config == "tiny":
        cfg = tiny_adm_config()
        return build_tiny(cfg, device=device), cfg
    cfg = official_adm_config()
    torch.manual_seed(0)
    with torch.device(device):
        net = build_model(cfg)
    return net.eval().requires_grad_(False), cfg


class HostRoundTrip:
    """Wraps a denoiser to copy x_t and ε through host memory every call, as the reference does."""

    def __init__(self, inner: Callable):
        self.inner = inner
        self.image_size = inner.image_size
        self.is_random = inner.is_random

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        device = x_t.device
        eps = self.inner(x_t.cpu().to(device), t)
        return eps.cpu().to(device)


@dataclass(frozen=True)
class Path_:
    """One way of running the network."""

    name: str
    precision: str
    attention: str
    channels_last: bool
    host_copies: bool
    batch: int | str
    compile: bool = False
    cuda_graphs: bool = False


def fast_path(precision: str, batch: int | str = "auto", channels_last: bool = False, compile: bool = False,
              cuda_graphs: bool = True) -> Path_:
    return Path_("ours", precision, "sdpa", channels_last, False, batch, compile, cuda_graphs)


BASELINE = Path_("baseline (reference-like)", "fp32", "eager", False, True, 1)


def make_denoiser(net: torch.nn.Module, cfg: ModelConfig, path: Path_, image_size: int) -> Callable:
    prepared = prepare_network(net, precision=path.precision, channels_last=path.channels_last)
    set_attention_backend(prepared, path.attention)
    if path.compile:
        prepared = compile_network(prepared)
    den = EpsDenoiser(prepared, cfg, precision=path.precision, is_random=True, image_size=image_size,
                      channels_last=path.channels_last)
    if path.cuda_graphs:
        den = GraphedDenoiser(den)
    return HostRoundTrip(den) if path.host_copies else den


def _sync(device: torch.device) -> None:
    if is_cuda(device):
        torch.cuda.synchronize(device)


def count_flops(denoiser: Callable, size: int, device: torch.device) -> float:
    """FLOPs of one window-step (batch 1) counted by PyTorch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, size, size, device=device)
    t = torch.full((1,), 500, dtype=torch.long, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        denoiser(x, t)
    return float(counter.get_total_flops())


def unet_throughput(denoiser: Callable, batch: int, size: int, device: torch.device, iters: int) -> float:
    """Window-steps per second at ``batch`` windows per call (after two warm-up calls)."""
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device, generator=g)
    t = torch.full((batch,), 500, dtype=torch.long, device=device)
    for _ in range(2):
        denoiser(x, t)
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        denoiser(x, t)
    _sync(device)
    return batch * iters / (time.perf_counter() - start)


def first_call_seconds(denoiser: Callable, batch: int, size: int, device: torch.device) -> float:
    """Seconds of the very first call at ``batch`` (includes compiling and graph capture)."""
    x = torch.zeros(batch, 3, size, size, device=device)
    t = torch.full((batch,), 500, dtype=torch.long, device=device)
    _sync(device)
    start = time.perf_counter()
    denoiser(x, t)
    _sync(device)
    return time.perf_counter() - start


#: Kernel/op name patterns for the profile summary, checked in order (first match wins).
KERNEL_CATEGORIES = (
    ("attention", r"flash|fmha|attention|softmax"),
    ("convolution", r"conv|cudnn|xmma_fprop|implicit_gemm|fprop"),
    ("matmul", r"gemm|addmm|bmm|matmul|cutlass|aten::mm|aten::linear"),
    ("group norm", r"group_?norm|groupnorm|rowwisemoments|computefusedparams|welford"),
    ("copies and layout", r"copy|cat|contiguous|transpose|permute|nchw|nhwc|to_copy|clone"),
    ("elementwise", r"elementwise|vectorized|silu|add|mul|sigmoid|triton|interpolat|upsample|pool|fill"),
)


def kernel_profile(denoiser: Callable, batch: int, size: int, device: torch.device, calls: int = 3,
                   top: int = 15) -> dict[str, Any]:
    """Where one call's time goes: device kernels on a GPU, operators on the CPU, grouped by kind.

    Returns ``{"ms_per_call": {category: ms}, "top": [(name, ms per call, launches per call)]}``.
    Profile an uncaptured denoiser (no CUDA graphs) so that each kernel is seen."""
    import re

    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(batch, 3, size, size, device=device, generator=torch.Generator(device=device).manual_seed(0))
    t = torch.full((batch,), 500, dtype=torch.long, device=device)
    for _ in range(2):
        denoiser(x, t)
    _sync(device)
    on_gpu = is_cuda(device)
    activities = [ProfilerActivity.CUDA] if on_gpu else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        for _ in range(calls):
            denoiser(x, t)
        _sync(device)
    rows = []
    for event in prof.key_averages():
        us = event.self_device_time_total if on_gpu else event.self_cpu_time_total
        if us > 0 and (not on_gpu or event.device_type != DeviceType.CPU):  # kernels, not host-side ops
            rows.append((event.key, us / 1000 / calls, event.count / calls))
    rows.sort(key=lambda r: r[1], reverse=True)
    totals: dict[str, float] = {}
    for name, ms, _count in rows:
        kind = next((k for k, pattern in KERNEL_CATEGORIES if re.search(pattern, name, re.IGNORECASE)), "other")
        totals[kind] = totals.get(kind, 0.0) + ms
    return {"ms_per_call": {k: round(v, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
            "top": [(name[:90], round(ms, 3), round(count, 1)) for name, ms, count in rows[:top]]}


def bench_input(size: int) -> np.ndarray:
    """A deterministic photo-like test input (smooth gradients + texture), (size, size, 3) in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    rng = np.random.default_rng(0)
    img = np.stack([xx, yy, 0.5 + 0.5 * np.sin(6 * xx + 4 * yy)], axis=-1)
    img += 0.05 * rng.standard_normal(img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def end_to_end(request: RestoreRequest, denoiser: Callable, max_windows: Optional[int] = None) -> dict[str, Any]:
    """Time ``request`` through the pipeline; stop after ``max_windows`` windows if given."""
    cancel = threading.Event()
    done = 0
    total_windows = None
    calls = levels = 0
    start = time.perf_counter()
    for event in restore(request, cancel, denoiser=denoiser):
        if total_windows is None and hasattr(event, "boxes"):
            total_windows = len(event.boxes)
        if isinstance(event, WindowFinished):
            done += 1
            if max_windows is not None and done >= max_windows and done < (total_windows or 0):
                cancel.set()
        if isinstance(event, FinishedEvent):
            calls = event.report.get("denoiser_calls", 0)
            levels = event.report.get("levels", 0)
            break
        if cancel.is_set():
            break
    seconds = time.perf_counter() - start
    total_windows = total_windows or done
    measured_all = done >= total_windows
    per_window = seconds / max(done, 1)
    return {
        "windows": total_windows,
        "windows_measured": done,
        "seconds_measured": round(seconds, 3),
        "seconds": round(seconds if measured_all else per_window * total_windows, 3),
        "extrapolated": not measured_all,
        "denoiser_calls": calls,
        "levels": levels,  # sequential wavefront batches (0 when stopped early)
    }


def run_benchmark(*, config: str = "official", device: torch.device, precision: str = "auto", batch: int = 8,
                  output_size: int = 1024, window: int = 256, steps: int = 100, travel: tuple[int, int] = (10, 3),
                  unet_iters: int = 10, baseline_windows: Optional[int] = None, skip_baseline: bool = False,
                  compile: bool = False, channels_last: bool = False, cuda_graphs: bool = True,
                  latency_batches: tuple[int, ...] = (), profile: bool = False,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every measurement and return the figures (also printed line by line through ``log``).

    ``precision`` ``auto`` resolves as the app does (:func:`engine.device.pick_precision`);
    ``latency_batches`` adds milliseconds per call of our path at those batch sizes (MSR's
    wavefront runs batches of 1-4 on small photos, so batch-1 latency bounds those jobs);
    ``profile`` adds where one call's time goes (:func:`kernel_profile`)."""
    precision = pick_precision(precision, device)
    channels_last = channels_last or channels_last_pays(device, precision)  # as load_denoiser decides
    net, cfg = build_random_network(config, device)
    size = window
    results: dict[str, Any] = {"device": describe_device(device), "config": config, "precision": precision,
                               "params_m": round(sum(p.numel() for p in net.parameters()) / 1e6, 2),
                               "torch": torch.__version__}
    peak = device_peak_tflops(device)
    results["peak_bf16_tflops"] = peak
    log(f"device: {results['device']}  torch {torch.__version__}  model: {config} ({results['params_m']} M params)  "
        f"peak bf16: {peak or 'n/a'} TFLOP/s")

    fast = fast_path(precision, batch, channels_last=channels_last, compile=compile, cuda_graphs=cuda_graphs)
    fast_den = make_denoiser(net, cfg, fast, size)
    first = first_call_seconds(fast_den, batch, size, device)
    results["first_call_s"] = round(first, 2)
    setup = [name for name, on in (("CUDA graph capture", cuda_graphs and is_cuda(device)), ("compiling", compile)) if on]
    log(f"first call of our path at batch {batch}{' (' + ', '.join(setup) + ')' if setup else ''}: {first:.1f} s")
    base_den = None if skip_baseline else make_denoiser(net, cfg, BASELINE, size)
    flops = count_flops(make_denoiser(net, cfg, fast_path("fp32", 1, cuda_graphs=False), size), size, device)
    results["tflop_per_window_step"] = round(flops / 1e12, 4)
    log(f"FLOPs per {size}² window-step: {flops / 1e12:.3f} TFLOP")

    def report_unet(label: str, den: Callable, b: int, iters: int) -> float:
        rate = unet_throughput(den, b, size, device, iters)
        tflops = rate * flops / 1e12
        share = f" = {100 * tflops / peak:.1f}% of bf16 peak" if peak else ""
        log(f"UNet {label}, batch {b}: {rate:.2f} window-steps/s ({1000 / rate:.2f} ms each), {tflops:.1f} TFLOP/s{share}")
        results["unet"][f"{label}, batch {b}"] = {"window_steps_per_s": round(rate, 2), "tflops": round(tflops, 1),
                                                  "share_of_peak": round(tflops / peak, 3) if peak else None}
        return rate

    results["unet"] = {}
    extras = "".join(f", {name}" for name, on in (("channels_last", channels_last), ("compiled", compile),
                                                  ("CUDA graphs", cuda_graphs and is_cuda(device))) if on)
    fast_label = f"ours ({precision}, sdpa{extras})"
    rate_fast = report_unet(fast_label, fast_den, batch, unet_iters)
    if latency_batches:
        results["ms_per_call"] = {}
        for b in latency_batches:
            ms = 1000 * b / unet_throughput(fast_den, b, size, device, max(2, unet_iters // 2))
            results["ms_per_call"][b] = round(ms, 2)
        log("ours, ms per call: " + "  ".join(f"batch {b}: {ms:.1f}" for b, ms in results["ms_per_call"].items()))
    if profile:
        plain = make_denoiser(net, cfg, dataclasses.replace(fast, cuda_graphs=False), size)
        prof = kernel_profile(plain, batch, size, device)
        results["profile"] = prof
        total = sum(prof["ms_per_call"].values())
        log(f"profile of one call at batch {batch} ({'GPU kernels' if is_cuda(device) else 'CPU operators'}, "
            f"{total:.1f} ms):")
        for kind, ms in prof["ms_per_call"].items():
            log(f"    {kind:18s} {ms:9.2f} ms  {100 * ms / max(total, 1e-9):5.1f}%")
        for name, ms, count in prof["top"]:
            log(f"    {ms:9.3f} ms  ×{count:<6g} {name}")
    if base_den is not None:
        rate_base = report_unet("baseline (fp32, eager, host copies)", base_den, 1, max(2, unet_iters // 2))
        results["unet"]["speedup"] = round(rate_fast / rate_base, 2)
        log(f"    -> {rate_fast / rate_base:.1f}× per window-step")

    in_size = output_size // 4
    image = bench_input(in_size)
    base_req = RestoreRequest(image=image, tasks=Tasks(sr=4), model="bench-random", steps=steps, seed=0,
                              device=str(device), tiling="msr", hir=False, window=window, overlap=window // 2)
    jobs = {f"{steps} steps": base_req, f"{steps} steps, travel L={travel[0]} r={travel[1]}":
            base_req.replace(travel_length=travel[0], travel_repeat=travel[1])}
    results["end_to_end"] = {}
    for label, req in jobs.items():
        r_fast = end_to_end(req.replace(precision=precision, batch=batch), fast_den)
        entry: dict[str, Any] = {"fast": r_fast}
        log(f"{output_size}² SR×4 MSR, {label}: ours {r_fast['seconds']:.1f} s "
            f"({r_fast['windows']} windows in {r_fast['levels']} wavefront levels, {r_fast['denoiser_calls']} window-steps)")
        if base_den is not None:
            r_base = end_to_end(req.replace(precision="fp32", batch=1), base_den, baseline_windows)
            entry["baseline"] = r_base
            entry["speedup"] = round(r_base["seconds"] / r_fast["seconds"], 2)
            note = f" (extrapolated from {r_base['windows_measured']} windows)" if r_base["extrapolated"] else ""
            log(f"    baseline {r_base['seconds']:.1f} s{note}  -> speed-up {entry['speedup']}×")
        results["end_to_end"][label] = entry
    if is_cuda(device):
        results["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        log(f"peak GPU memory: {results['peak_gpu_memory_gb']} GB")
    return results
