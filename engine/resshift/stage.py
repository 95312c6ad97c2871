"""The fast upscale as a stage of a run: ResShift over blended tiles, then (for a fill or colorize
task) the DDNM engine on its result, as one run with one progress bar.

:func:`engine.pipeline.restore` hands a request over here when :func:`fast_upscale_request` says it
uses a fast upscaler: ``request.upscaler`` is set, or ``request.model`` names one (it then moves to
``upscaler``, and the engine's part, if any, uses the default diffusion model, ``RestoreRequest``'s
``model`` default; a request names another one in ``model`` together with ``upscaler``).

The run:

1. the photo (and mask) are read, the upscaler is loaded;
2. ResShift ×4 runs over tiles of the photo (:func:`engine.tiling.blended.run_tiles`, stage
   ``"upscale"``): per-tile plan and preview events, tile side from free memory, out-of-memory split,
   cancel before every network call. With ``resume_dir`` every finished tile is kept in
   ``resume_dir/upscale`` (:class:`engine.tiling.tile_resume.TileResume`) and a later run with the
   same photo, upscaler, seed and precision continues from them;
3. ×2 and other factors below 4 are the ×4 result area-resized; ×8 and above it bicubic-resized;
   a black-and-white photo stays black and white unless colorized;
4. with a fill or colorize task left, the engine runs on that result (``tasks.sr`` 1, the mask
   scaled up with it), its events passed on with its progress after the upscale's; its own resume
   state goes to ``resume_dir`` as usual. Deblurring and denoising are not combined with the fast
   upscale (ResShift's real-world model already removes blur and noise); such requests are refused.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable, Generator, Iterator, Optional

import numpy as np
import torch

from engine.errors import InputError
from engine.events import Event, FinishedEvent, LogEvent, ProgressEvent, StageEvent, WindowFinished
from engine.request import RestoreRequest
from engine.resshift.load import is_upscaler, load_upscaler, schedule_for
from engine.resshift.upscaler import describe, from_quantized, quantized
from engine.tiling.msr import Progress

STAGE = "upscale"
RANDOM_WARNING = "{model} has random weights: its output is NOT an upscale"


def fast_upscale_request(request: RestoreRequest) -> Optional[RestoreRequest]:
    """The request in this module's terms (``upscaler`` set) when it uses a fast upscaler, else None."""
    if request.upscaler:
        return request
    if is_upscaler(request.model):
        default_model = RestoreRequest.__dataclass_fields__["model"].default
        return request.replace(upscaler=request.model, model=default_model)
    return None


def check_tasks(request: RestoreRequest) -> None:
    """Refuse what the fast upscale does not combine with (one-line messages)."""
    tasks = request.tasks
    if tasks.sr < 2:
        raise InputError(f"{request.upscaler} is a fast upscaler: choose an upscale factor (×2, ×4 or ×8)")
    if tasks.deblur or tasks.noise > 0:
        raise InputError("the fast upscale removes real-world blur and noise itself: untick Deblur and set the "
                         "noise level to 0, or upscale with the diffusion engine instead")


def resize_note(sr: int) -> Optional[str]:
    """How a ×4 result becomes ×sr (None at ×4)."""
    if sr == 4:
        return None
    return f"area ×{sr}/4" if sr < 4 else f"bicubic ×{sr}/4"


def _resize(image: np.ndarray, height: int, width: int, sr: int) -> np.ndarray:
    import cv2

    method = cv2.INTER_AREA if sr < 4 else cv2.INTER_CUBIC
    return np.clip(cv2.resize(image, (width, height), interpolation=method), 0.0, 1.0).astype(np.float32)


def _bytes_per_input_pixel(request: RestoreRequest) -> float:
    from engine.host_memory import fast_upscale_bytes_per_input_pixel, restore_bytes_per_input_pixel

    need = fast_upscale_bytes_per_input_pixel(request.tasks.sr)
    rest = _engine_tasks(request.tasks)
    if rest.any():  # the engine's run on the upscaled photo, while the upscale result is held
        need += request.tasks.sr ** 2 * restore_bytes_per_input_pixel(rest)
    return need


def _engine_tasks(tasks):
    return dataclasses.replace(tasks, sr=1, sr_kernel="avgpool")


def _engine_calls(request: RestoreRequest, height: int, width: int) -> int:
    """Denoiser calls the engine's part will make on the (height, width) upscaled photo (its plan;
    the engine's own count replaces this)."""
    from engine.pipeline import schedule_for
    from engine.tiling.run_plan import plan_run

    engine = request.replace(tasks=_engine_tasks(request.tasks))
    stages = plan_run(engine, height, width)
    start = engine.hir_start if stages.low is not None else None
    calls = schedule_for(engine, start).num_calls * len(stages.high.boxes)
    return calls + (schedule_for(engine).num_calls * len(stages.low.boxes) if stages.low is not None else 0)


def tile_units(upscaler, tile_height: int, tile_width: int) -> int:
    """A tile's share of the progress bar, in engine denoiser calls (a rough cost ratio): its
    steps over each 256² of its output, twice (the autoencoder works at output resolution)."""
    area = tile_height * tile_width * upscaler.scale ** 2
    return 2 * upscaler.schedule.steps * max(1, round(area / 256 ** 2))


def run_fast_upscale(request: RestoreRequest, cancel: Optional[threading.Event],
                     restore: Callable[..., Iterator[Event]], denoiser: Any = None) -> Generator[Event, None, None]:
    """The events of the whole run (see the module doc); ``restore`` runs the engine's part."""
    from engine.device import describe_device, pick_device, pick_precision, precision_warning
    from engine.image_io import frames_note, load_image, load_mask
    from engine.pipeline import looks_monochrome
    from engine.report import peak_rss_mb
    from engine.tiling.blended import plan_tiles, run_tiles, tile_side

    started = time.perf_counter()
    check_tasks(request)
    tasks, sr = request.tasks, request.tasks.sr
    rest = _engine_tasks(tasks)
    yield StageEvent("loading image", 0, 3)
    loaded = load_image(request.image, bytes_per_pixel=_bytes_per_input_pixel(request))
    rgb, note = loaded.rgb, frames_note(loaded.frames)
    del loaded
    if note:  # an animated GIF, a multi-page TIFF
        yield LogEvent("warning", note)
    h_in, w_in = rgb.shape[:2]
    fill = None
    if tasks.inpaint:
        fill = load_mask(request.mask, (h_in, w_in))
        if not fill.any():
            raise InputError("the mask is empty: paint the areas to fill (white = fill)")
    monochrome = not tasks.colorize and looks_monochrome(rgb)

    yield StageEvent("loading model", 1, 3)
    device = pick_device(request.device)
    precision = pick_precision(request.precision, device)
    slow = precision_warning(precision, device)
    if slow:
        yield LogEvent("warning", slow)
    upscaler = load_upscaler(request.upscaler, device=device, precision=precision, seed=request.seed, cancel=cancel)
    _, known = schedule_for(request.upscaler)
    yield LogEvent("info", f"fast upscale: {describe(upscaler.schedule)}" + (
        "" if known else " (the v3 model's schedule: this file is not a catalog model, so its own is not known)"))
    if upscaler.is_random:
        yield LogEvent("warning", RANDOM_WARNING.format(model=request.upscaler))

    spec = upscaler.spec()
    spec = dataclasses.replace(spec, tile=tile_side(spec, device))
    boxes = plan_tiles(h_in, w_in, spec)
    H, W = h_in * sr, w_in * sr
    per_tile = tile_units(upscaler, boxes[0].height, boxes[0].width)
    progress = Progress(total=per_tile * len(boxes) + (_engine_calls(request, H, W) if rest.any() else 0))
    done, save = yield from _resume(request, precision, rgb, boxes)
    progress.done = progress.baseline = per_tile * len(done)

    yield StageEvent("upscaling", 2, 3)
    if done:
        yield LogEvent("info", f"resuming: {len(done)} of {len(boxes)} tiles were already finished")
        yield progress.event()
    tiles = run_tiles(upscaler, rgb, spec, device=device, cancel=cancel, stage=STAGE, done=done,
                      on_tile=save, scale_to_output=sr / upscaler.scale)
    result = yield from _with_progress(tiles, progress, per_tile, save)
    del rgb
    if sr != upscaler.scale:
        result = _resize(result, H, W, sr)
    if monochrome:  # in row bands: no full-size temporary
        for top in range(0, result.shape[0], 256):
            band = result[top : top + 256]
            band[...] = band.mean(axis=2, keepdims=True)
    upscale_report = {"upscaler": request.upscaler, "upscaler_steps": upscaler.schedule.steps,
                      "upscale_tiles": len(boxes), "upscale_tile": [boxes[0].height, boxes[0].width],
                      "resize": resize_note(sr), "upscale_seconds": round(time.perf_counter() - started, 3)}

    if rest.any():
        mask = None if fill is None else np.repeat(np.repeat(fill, sr, axis=0), sr, axis=1)
        engine_request = request.replace(image=result, mask=mask, tasks=rest, upscaler=None)
        del result
        finished = yield from _engine_part(restore(engine_request, cancel, denoiser=denoiser), progress)
        report = dict(finished.report, input_size=[w_in, h_in], seconds=round(time.perf_counter() - started, 3),
                      **upscale_report)
        yield FinishedEvent(finished.result, report)
        return
    report = {"input_size": [w_in, h_in], "output_size": [W, H], "seconds": round(time.perf_counter() - started, 3),
              "device": describe_device(device), "precision": precision, "peak_rss_mb": round(peak_rss_mb(), 1),
              "windows": len(boxes), "monochrome": monochrome, "model": request.upscaler,
              "is_random_model": upscaler.is_random, **upscale_report}
    yield FinishedEvent(result, report)


class _TileSaver:
    """``on_tile`` for run_tiles: keeps each computed tile (uint16) in the resume folder; a failed
    save leaves a warning in ``warnings`` for the log (once) and the run goes on."""

    def __init__(self, state):
        self.state, self.warnings = state, []

    def __call__(self, index: int, raw: np.ndarray) -> None:
        message = self.state.save(index, quantized(raw))
        if message:
            self.warnings.append(message)


def _resume(request: RestoreRequest, precision: str, rgb: np.ndarray, boxes):
    """(done tiles, saver or None); ``yield from`` it for its warnings."""
    if not request.resume_dir:
        return {}, None
    from engine.tiling.resume import request_fingerprint, unsaved_progress_warning
    from engine.tiling.tile_resume import TileResume

    semantic = {"stage": STAGE, "upscaler": request.upscaler, "seed": request.seed, "precision": precision}
    try:
        state, warning = TileResume.open(request.resume_dir, STAGE, request_fingerprint(semantic, rgb), boxes)
    except OSError as exc:
        yield LogEvent("warning", unsaved_progress_warning(request.resume_dir, exc))
        return {}, None
    if warning:
        yield LogEvent("warning", warning)
    expected = {i: (b.height * 4, b.width * 4, 3) for i, b in enumerate(boxes)}
    done = {i: from_quantized(a) for i, a in state.load().items() if a.dtype == np.uint16 and a.shape == expected[i]}
    return done, _TileSaver(state)


def _with_progress(tiles: Generator[Event, None, np.ndarray], progress: Progress, per_tile: int,
                   saver: Optional[_TileSaver]):
    """run_tiles' events with a progress event after each computed tile (weighted units) and the
    saver's warnings. Returns the result."""
    try:
        while True:
            event = next(tiles)
            yield event
            if isinstance(event, WindowFinished) and not event.resumed:
                while saver is not None and saver.warnings:
                    yield LogEvent("warning", saver.warnings.pop(0))
                progress.done += per_tile
                progress.batches += 1
                yield progress.event()
    except StopIteration as stop:
        return stop.value
    finally:
        tiles.close()


def _engine_part(events: Iterator[Event], progress: Progress):
    """The engine's events with its progress after the upscale's; returns its FinishedEvent."""
    up_done, up_elapsed = progress.done, time.perf_counter() - progress.started
    finished = None
    for event in events:
        if isinstance(event, FinishedEvent):
            finished = event
            continue
        if isinstance(event, StageEvent) and event.name in ("loading image", "loading model"):
            continue  # the run has done both already
        if isinstance(event, ProgressEvent):
            event = dataclasses.replace(event, done=up_done + event.done, total=up_done + event.total,
                                        elapsed=up_elapsed + event.elapsed)
        yield event
    if finished is None:
        raise RuntimeError("the engine's part ended without a result")
    return finished
