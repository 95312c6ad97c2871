"""``python -m engine bench --upscalers``: the fast upscale (ResShift ×4) against the engine's ×4 at
the app's Fast and Balanced presets, per output megapixel, side by side in one run.

Both sides use random weights of the official architectures (ResShift v3's Swin-UNet and VQ-f4
autoencoder; ADM-256), so no model file is read; timing does not depend on the weights. The same
photo-like input is upscaled ×4 by both: ResShift through its blended tiles
(:func:`engine.tiling.blended.run_tiles`, as the pipeline runs it) before and after the engine (the
mean counts, so a machine whose load changes during the run favours neither), the engine through
:func:`engine.pipeline.restore` with MSR and the app's speed paths. The Balanced preset (4× the
steps of Fast on the same windows) may be extrapolated from the Fast run's seconds per denoiser
call, and is then marked so.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from engine.device import describe_device, pick_precision
from engine.events import FinishedEvent


def _official_upscaler(device: torch.device, precision: str):
    from engine.models.speed import prepare_network
    from engine.resshift.autoencoder import AutoencoderConfig, VQAutoencoder
    from engine.resshift.diffusion import ResShiftSchedule
    from engine.resshift.unet import SwinUNet, SwinUNetConfig
    from engine.resshift.upscaler import ResShiftUpscaler

    torch.manual_seed(0)
    unet = prepare_network(SwinUNet(SwinUNetConfig()).eval().requires_grad_(False), precision=precision,
                           device=device, inplace=True)
    autoencoder = prepare_network(VQAutoencoder(AutoencoderConfig()).eval().requires_grad_(False),
                                  precision=precision, device=device, inplace=True)
    autoencoder.quantize.float()
    return ResShiftUpscaler(unet, autoencoder, ResShiftSchedule(), device=device, precision=precision)


def _resshift_seconds(upscaler, image) -> dict[str, Any]:
    """ResShift ×4 of ``image`` through its blended tiles, as the pipeline runs it."""
    from engine.tiling.blended import plan_tiles, run_tiles

    spec = upscaler.spec()
    side = plan_tiles(*image.shape[:2], spec)[0].height
    start = time.perf_counter()
    events = run_tiles(upscaler, image, spec, device=upscaler.device, stage="upscale")
    tiles = 0
    try:
        while True:
            tiles += type(next(events)).__name__ == "WindowFinished"
    except StopIteration:
        pass
    seconds = time.perf_counter() - start
    params = sum(p.numel() for net in (upscaler.unet, upscaler.autoencoder) for p in net.parameters())
    return {"seconds": round(seconds, 2), "tiles": tiles, "tile": side, "params_m": round(params / 1e6, 1)}


def _engine_seconds(image, steps: int, device: torch.device, precision: str) -> dict[str, Any]:
    from engine.benchmark import build_random_network, fast_path, make_denoiser
    from engine.models.speed import channels_last_pays
    from engine.pipeline import restore
    from engine.request import RestoreRequest, Tasks

    net, cfg = build_random_network("official", device)
    denoiser = make_denoiser(net, cfg, fast_path(precision, channels_last=channels_last_pays(device, precision)), 256)
    request = RestoreRequest(image=image, tasks=Tasks(sr=4), model="bench-random", steps=steps, seed=0,
                             device=str(device), precision=precision, tiling="msr", hir=False, window=256, overlap=128)
    start = time.perf_counter()
    report: dict[str, Any] = {}
    for event in restore(request, denoiser=denoiser):
        if isinstance(event, FinishedEvent):
            report = event.report
    return {"seconds": round(time.perf_counter() - start, 2), "windows": report.get("windows"),
            "denoiser_calls": report.get("denoiser_calls")}


#: The app's Fast and Balanced quality presets (gui.run.plan.QUALITY_PRESETS: the engine does not import
#: the app; a test checks that they agree).
PRESET_STEPS = {"Fast": 25, "Balanced": 100}


def compare_upscalers(*, device: torch.device, precision: str = "auto", input_size: int = 64,
                      measure_balanced: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Seconds per output megapixel of ResShift ×4 and of the engine's ×4 at the Fast and Balanced
    presets on an ``input_size``² photo (printed line by line through ``log`` too). Balanced is
    extrapolated from Fast's seconds per denoiser call unless ``measure_balanced``."""
    from engine.benchmark import bench_input

    precision = pick_precision(precision, device)
    image = bench_input(input_size)
    megapixels = (4 * input_size) ** 2 / 1e6
    results: dict[str, Any] = {"device": describe_device(device), "precision": precision, "torch": torch.__version__,
                               "input": [input_size, input_size], "output_megapixels": megapixels}
    log(f"device: {results['device']}  torch {torch.__version__}  precision {precision}  "
        f"×4 of a {input_size}² photo ({megapixels:.3f} output megapixels), random weights of the official networks")

    upscaler = _official_upscaler(device, precision)
    before = _resshift_seconds(upscaler, image)
    log(f"ResShift ×4, 4 steps ({before['params_m']} M params, {before['tiles']} tile(s) of {before['tile']} px): "
        f"{before['seconds']:.1f} s (it runs again after the engine, and the mean of the two counts)")

    results["engine"] = {}
    first = None
    for name, steps in PRESET_STEPS.items():
        if first is not None and not measure_balanced:
            per_call = first["seconds"] / max(first["denoiser_calls"], 1)
            calls = first["denoiser_calls"] * steps // PRESET_STEPS["Fast"]
            entry = {"seconds": round(per_call * calls, 2), "windows": first["windows"], "denoiser_calls": calls,
                     "extrapolated": True}
        else:
            entry = {**_engine_seconds(image, steps, device, precision), "extrapolated": False}
            first = first or entry
        entry["seconds_per_mp"] = round(entry["seconds"] / megapixels, 1)
        results["engine"][name] = entry
    after = _resshift_seconds(upscaler, image)
    fast = {**before, "seconds": round((before["seconds"] + after["seconds"]) / 2, 2),
            "seconds_runs": [before["seconds"], after["seconds"]]}
    fast["seconds_per_mp"] = round(fast["seconds"] / megapixels, 1)
    results["resshift"] = fast
    log(f"ResShift ×4, 4 steps: {after['seconds']:.1f} s after the engine; mean {fast['seconds']:.1f} s = "
        f"{fast['seconds_per_mp']:.1f} s per output megapixel")
    for name, entry in results["engine"].items():
        entry["resshift_speedup"] = round(entry["seconds"] / fast["seconds"], 1)
        note = " (extrapolated from Fast's seconds per call)" if entry["extrapolated"] else ""
        log(f"engine ×4, {name} ({PRESET_STEPS[name]} steps, {entry['windows']} window(s), "
            f"{entry['denoiser_calls']} calls): {entry['seconds']:.1f} s = {entry['seconds_per_mp']:.1f} s per output "
            f"megapixel{note}  -> ResShift is {entry['resshift_speedup']}× faster")
    return results
