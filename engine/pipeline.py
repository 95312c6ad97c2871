"""``restore(request, cancel) -> Iterator[Event]``: the one entry point of the engine.

Load the photo (and mask) -> [-1, 1] -> choose device, load the denoiser (and guidance) -> plan
the windows for the OUTPUT size (sr × input) -> MSR, with HiR on large outputs -> FinishedEvent
with the result (H, W, 3) float32 [0, 1] and a report.

Only the windows being solved (and their y crops) ever live on the device; the full-size canvas
is a compact uint16 host array (see :mod:`engine.tiling.canvas`). Outputs smaller than a window,
or not a multiple of the alignment, are padded by symmetric reflection at input resolution and
cropped back (see :mod:`engine.tiling.window_plan`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Any, Iterator, Optional

import numpy as np
import torch

from engine.device import describe_device, pick_device, pick_precision, precision_warning
from engine.errors import EngineError, InputError
from engine.events import Event, FinishedEvent, LogEvent, StageEvent
from engine.host_memory import restore_bytes_per_input_pixel
from engine.operators.base import Observation
from engine.request import MASK_AUTO, RestoreRequest
from engine.resshift.stage import fast_upscale_request
from engine.samplers import Schedule, make_schedule
from engine.tiling.hir import HirPlan, run_hir
from engine.tiling.memory import plan_batch_size
from engine.tiling.msr import MsrStage, Progress, SamplingSettings
from engine.tiling.problem import PhotoProblem
from engine.tiling.resume import ResumeState, request_fingerprint, unsaved_progress_warning
from engine.tiling.run_plan import plan_run
from engine.tiling.window_plan import NETWORK_MULTIPLE, WindowPlan

from engine.cleanup.stage import PreStage, role_for

# Module-level names so tests can substitute a fast fake model.
from engine.models import load_denoiser, load_guidance  # noqa: E402

RANDOM_MODEL_WARNING = "{model} has random weights: its output is NOT a restoration"


def _load_inputs(request: RestoreRequest, need: float) -> tuple[np.ndarray, Optional[np.ndarray], str]:
    """(rgb (h, w, 3) float32 [0, 1], fill mask (h, w) bool or None, a note on the file's other frames);
    ``need``: host bytes the run needs per photo pixel (refused before decoding when it cannot fit)."""
    from engine.image_io import frames_note, load_image, load_mask

    loaded = load_image(request.image, bytes_per_pixel=need)
    rgb, note = loaded.rgb, frames_note(loaded.frames)
    del loaded
    mask = None
    if request.tasks.inpaint and not _auto_mask(request):
        mask = load_mask(request.mask, rgb.shape[:2])
        if not mask.any():
            raise InputError("the mask is empty: paint the areas to fill (white = fill)")
    return rgb, mask, note


def _auto_mask(request: RestoreRequest) -> bool:
    return isinstance(request.mask, str) and request.mask == MASK_AUTO


def _detected_damage(rgb: np.ndarray, request: RestoreRequest, cancel: Optional[threading.Event]):
    """The fill mask of ``mask="auto"``: the damage the default detector finds at its default
    sensitivity (``(fill, request)``; with nothing found, the request without the fill task, or
    InputError when filling was all there was to do). Only its stage and log events are passed on."""
    from engine.detection import DEFAULT_DETECTOR, DEFAULT_SENSITIVITY, detect

    events = detect(rgb, DEFAULT_DETECTOR, cancel=cancel, device=request.device)
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            scores = stop.value
            break
        if isinstance(event, (StageEvent, LogEvent)):
            yield event
    fill = scores.mask(DEFAULT_SENSITIVITY)
    del scores
    if fill.any():
        yield LogEvent("info", f"damage found on {fill.mean():.2%} of the photo: it will be filled")
        return fill, request
    tasks = dataclasses.replace(request.tasks, inpaint=False)
    if not tasks.any() and not request.cleanup:  # (a fast upscale always has its ×sr left to do)
        raise InputError("no damage was found in the photo, so there is nothing to fill: paint a mask instead")
    yield LogEvent("info", "no damage was found, so nothing is filled")
    return None, request.replace(tasks=tasks, mask=None)


#: A photo whose channels differ by at most this (in [0, 1]) at every pixel is black and white:
#: gray scans saved as RGB and JPEG round trips stay within it; toned prints (sepia) and a colour
#: date stamp do not.
MONOCHROME_TOLERANCE = 3 / 255


def looks_monochrome(rgb: np.ndarray) -> bool:
    """Whether (h, w, 3) pixels in [0, 1] are a black-and-white photo (R ≈ G ≈ B everywhere)."""
    for top in range(0, rgb.shape[0], 256):  # in row bands: no full-size temporary
        band = rgb[top : top + 256]
        if float((band.max(axis=2) - band.min(axis=2)).max()) > MONOCHROME_TOLERANCE:
            return False
    return True


def _photo_problem(rgb: np.ndarray, fill: Optional[np.ndarray], tasks, device: torch.device, quirks,
                   monochrome: bool = False) -> PhotoProblem:
    """The problem on the host. ``rgb`` is turned into the photo in [-1, 1] in place (no copy of the
    full-size image); the caller must not use it as [0, 1] pixels afterwards. ``monochrome``: the
    photo is made exactly gray first, and the result will stay so."""
    if monochrome:
        for top in range(0, rgb.shape[0], 256):  # in row bands: no full-size temporary
            band = rgb[top : top + 256]
            band[...] = band.mean(axis=2, keepdims=True)
    np.multiply(rgb, 2.0, out=rgb)
    np.subtract(rgb, 1.0, out=rgb)
    photo = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    mask = None if fill is None else torch.from_numpy(fill.astype(np.float32))[None, None]
    return PhotoProblem(tasks, photo, mask, device, torch.float32, quirks, monochrome)


def schedule_for(request: RestoreRequest, t_start: Optional[int] = None) -> Schedule:
    """The sampling schedule of ``request`` (from ``t_start`` for a warm start): the one place the
    pipeline builds one, so the spacing switch (``quirks.skip_spacing``) holds for every stage."""
    spacing = "skip" if request.quirks.skip_spacing else "even"
    if t_start is not None and t_start + 1 < request.steps:
        raise InputError(f"the HiR warm start at timestep {t_start} leaves fewer timesteps than the {request.steps} "
                         f"steps: start at {request.steps - 1} or later, or use fewer steps")
    return make_schedule(request.steps, request.travel_length, request.travel_repeat, t_start=t_start, spacing=spacing)


def restore(request: RestoreRequest, cancel: Optional[threading.Event] = None, *,
            denoiser: Optional[Any] = None) -> Iterator[Event]:
    """Run ``request``; yield events, the last being :class:`FinishedEvent`.

    ``cancel``: a ``threading.Event``; the run stops within one denoiser call and raises
    :class:`engine.errors.Cancelled` (finished windows are kept in the resume state if enabled).
    ``denoiser``: use this Denoiser object instead of loading ``request.model`` (evaluation with
    an oracle, tests); it may offer ``for_windows(boxes)`` to see where each window lies on the
    (padded) canvas of the stage.
    """
    started = time.perf_counter()
    request = fast_upscale_request(request) or request  # a fast upscaler named as the model moves to `upscaler`
    if not request.tasks.any() and not request.cleanup:
        raise InputError("nothing to do: tick at least one task")
    role = role_for(request)  # a network over tiles first (engine/cleanup/stage.py): a clean-up or a fast upscale
    n_stages = 4 if role else 3
    yield StageEvent("loading image", 0, n_stages)
    device = pick_device(request.device)
    request = request.replace(precision=pick_precision(request.precision, device))
    pre = PreStage.load(request, device, cancel) if role else None
    for level, line in pre.notes() if pre else ():
        yield LogEvent(level, line)
    rgb, fill, frames_note = _load_inputs(request, pre.host_bytes_per_input_pixel(request.tasks) if pre
                                          else restore_bytes_per_input_pixel(request.tasks))
    if frames_note:  # an animated GIF, a multi-page TIFF
        yield LogEvent("warning", frames_note)
    if request.tasks.inpaint and _auto_mask(request):  # the damage of the photo as it is, before any pre-stage
        fill, request = yield from _detected_damage(rgb, request, cancel)
    fingerprint_fields = {}
    if pre is not None:  # from here on, `request` is stage 2's: the pre-stage's result, maybe pooled, is its photo
        fingerprint_fields = pre.fingerprint_fields()
        request = pre.plan(request, rgb.shape[:2])
    tasks = request.tasks
    h_in, w_in = pre.stage2_photo_size if pre else rgb.shape[:2]
    s = tasks.sr
    H, W = h_in * s, w_in * s
    stage2 = pre is None or pre.needs_stage2  # else the pre-stage's result is the answer: no diffusion model

    yield StageEvent("loading model", 1, n_stages)
    slow = precision_warning(request.precision, device)
    if slow:
        yield LogEvent("warning", slow)
    if denoiser is None and stage2:
        denoiser = load_denoiser(request.model, device=device, precision=request.precision,
                                 class_label=request.class_label, compile=request.compile)
        if request.compile:
            yield LogEvent("info", "compiling the network for this device: the first steps of the first run "
                                   "take a minute or two; later runs reuse the compiled kernels")
        native = int(getattr(denoiser, "image_size", 0) or request.window)
        if native < request.window:  # a model trained on smaller crops: use its own window size
            yield LogEvent("info", f"this model works on {native} px windows; using them instead of {request.window}")
            request = request.replace(window=native, overlap=request.overlap * native // request.window)
    guidance = None
    if request.guidance_scale and stage2:
        guidance = load_guidance(request.model, class_label=request.class_label, scale=request.guidance_scale,
                                 device=device, precision=request.precision, classifier=request.classifier)
        if guidance is None:
            yield LogEvent("warning", "classifier guidance is off: it steers towards a class, and no class was given"
                           if request.class_label is None else f"{request.model} cannot be guided by a classifier, "
                           "so classifier guidance is off")
    is_random = stage2 and bool(getattr(denoiser, "is_random", False))
    if is_random:
        yield LogEvent("warning", RANDOM_MODEL_WARNING.format(model=request.model))

    resume = None
    if request.resume_dir:
        fingerprint = request_fingerprint({**request.to_dict(), **fingerprint_fields}, rgb, fill)
        try:
            resume, warning = ResumeState.open(request.resume_dir, fingerprint)
        except OSError as exc:  # the state is only a convenience: the run goes on without it
            warning = unsaved_progress_warning(request.resume_dir, exc)
        if warning:
            yield LogEvent("warning", warning)

    monochrome = not tasks.colorize and looks_monochrome(rgb)
    if monochrome:
        yield LogEvent("info", "the photo is black and white, so the result stays black and white "
                               "(tick Colorize to add colour)")
    if not stage2:  # fidelity 1 and nothing else to do: the pre-stage's result is the result
        progress = Progress(total=pre.progress_units())
        yield StageEvent(pre.role.title, 2, n_stages)
        yield from pre.run(rgb, fill, monochrome, progress, resume, cancel)
        report = _report(request, None, pre.x1, pre.photo_size, pre.output_size, progress, [], 1, device, False,
                         time.perf_counter() - started)
        report.update(pre.report(pre.x1), consistency=0.0, monochrome=monochrome, denoiser_calls=0)
        yield FinishedEvent(pre.x1, report)
        return

    # geometry (HiR factor, alignment, plans: engine.tiling.run_plan, which the app's estimate asks
    # too) and schedules: from the sizes alone
    stages = plan_run(request, h_in, w_in)
    factor, plan_high, plan_low = stages.factor, stages.high, stages.low
    align = math.lcm(s, factor)
    if stages.hir_skipped:
        yield LogEvent("info", "hierarchical restoration skipped: nothing to solve at the low scale")
    if request.tiling != "none" and plan_high.window_h != request.window:
        yield LogEvent("info", f"windows are {plan_high.window_h} px, not {request.window}: a window is a multiple of "
                               f"{math.lcm(align, NETWORK_MULTIPLE)} px (the network's {NETWORK_MULTIPLE}"
                               + (f" and the scale {align})" if align > 1 else ")"))
    schedule = schedule_for(request)
    sigma_y = tasks.noise * (1.0 if request.quirks.sigma_y_unscaled else 2.0)
    settings = SamplingSettings(schedule, request.eta, sigma_y, request.sampler, request.seed, guidance, request.quirks)
    warm_start_t = request.hir_start if plan_low is not None else (pre.soft.start_t if pre else None)
    high_settings = settings if warm_start_t is None else dataclasses.replace(
        settings, schedule=schedule_for(request, t_start=warm_start_t))
    units = pre.progress_units() if pre else 0  # its tiles, sized for the memory stage 2's network left
    progress = Progress(total=high_settings.schedule.num_calls * len(plan_high.boxes) + units
                        + (schedule.num_calls * len(plan_low.boxes) if plan_low is not None else 0))
    if pre is not None:
        yield StageEvent(pre.role.title, 2, n_stages)
        rgb, fill = yield from pre.run(rgb, fill, monochrome, progress, resume, cancel)

    base = _photo_problem(rgb, fill, tasks, device, request.quirks, monochrome)  # rgb becomes the photo in [-1, 1]
    problem_high = base.padded(plan_high.padded_height, plan_high.padded_width)
    base = problem_high.cropped(H, W)  # a view: the photo is held once, padded
    del rgb, fill
    low_problem = None
    if plan_low is not None:
        low_problem = problem_high.downscaled(factor).padded(plan_low.padded_height, plan_low.padded_width)
    cap = plan_batch_size(request.batch, device, plan_high.window_h, plan_high.window_w, request.precision)

    def make(problem: PhotoProblem, plan: WindowPlan, name: str, stage_id: int, scale: float,
             stage_settings: SamplingSettings) -> MsrStage:
        stage = MsrStage(problem=problem, plan=plan, denoiser=denoiser, settings=stage_settings, progress=progress,
                         batch_cap=cap, stage=name, stage_id=stage_id, scale_to_output=scale, cancel=cancel)
        if resume is not None:
            stage.canvas, stage.finished = resume.load_stage(name, plan.padded_height, plan.padded_width, plan.boxes)
            progress.done += len(stage.finished) * stage_settings.schedule.num_calls
            progress.baseline += len(stage.finished) * stage_settings.schedule.num_calls  # made by an earlier run
            stage.checkpoint = lambda st: resume.try_save(st.stage, st.canvas, st.finished, st.plan.boxes)
        return stage

    high = make(problem_high, plan_high, "restore", 0, 1.0, high_settings)
    low = make(low_problem, plan_low, "hir-low", 1, float(factor), settings) if plan_low is not None else None
    if pre is not None and pre.soft.start_t is not None:  # the fast preset: start from the cleaned photo, noised
        high.start = pre.warm_start(plan_high.padded_height, plan_high.padded_width, high_settings.schedule,
                                    device, torch.float32)
    for warning in resume.warnings if resume is not None else ():  # saved windows that could not be read
        yield LogEvent("warning", warning)
    yield StageEvent(pre.role.stage2_title if pre else "restoring", n_stages - 1, n_stages)
    stages = [st for st in (low, high) if st is not None]
    resumed = sum(len(st.finished) for st in stages)
    if resumed:
        total = sum(len(st.plan.boxes) for st in stages)
        yield LogEvent("info", f"resuming: {resumed} of {total} windows were already finished")
        yield progress.event()  # progress starts where the earlier run stopped
    if low is not None:
        canvas = yield from run_hir(HirPlan(low=low, high=high, factor=factor, start_t=warm_start_t))
    else:
        canvas = yield from high.run()

    result = canvas.to_float(H, W)
    del canvas, high  # the result replaces the canvas: never hold both through the report and the save
    compile_failure = getattr(getattr(denoiser, "net", None), "fallback_reason", None)
    if compile_failure:
        yield LogEvent("warning", f"compiling the network failed, so it ran uncompiled: {compile_failure}")
    report = _report(request, base, result, (h_in, w_in), (H, W), progress, [p for p in (plan_low, plan_high) if p],
                     factor, device, is_random, time.perf_counter() - started)
    if pre is not None:  # the consistency above is with the soft observation y = A(x1); crop the padding
        result = np.ascontiguousarray(result[: pre.output_size[0], : pre.output_size[1]])
        report.update(pre.report(result), input_size=[pre.photo_size[1], pre.photo_size[0]],
                      output_size=[pre.output_size[1], pre.output_size[0]],
                      denoiser_calls=report["denoiser_calls"] - pre.tiles_computed * pre.units)
    if compile_failure:
        report["compiled"] = False
    yield FinishedEvent(result, report)


def _consistency(problem: PhotoProblem, result: np.ndarray) -> Optional[float]:
    """‖A x − y‖ / ‖y‖ over the whole image, on the host."""
    try:
        op, y = problem.full_operator_on_host()
    except (EngineError, ValueError, RuntimeError):
        return None
    x = torch.from_numpy(result).permute(2, 0, 1)[None].mul(2.0).sub_(1.0)  # one full-size temporary
    return Observation(op, y).residual(x)


def _report(request, base, result, input_hw, output_hw, progress, plans, factor, device, is_random, seconds) -> dict[str, Any]:
    from engine.report import peak_rss_mb

    return {
        "input_size": [int(input_hw[1]), int(input_hw[0])],  # width, height
        "output_size": [int(output_hw[1]), int(output_hw[0])],
        "consistency": _consistency(base, result) if base is not None else None,
        "denoiser_calls": progress.done - progress.baseline,
        "seconds": round(seconds, 3),
        "device": describe_device(device),
        "precision": request.precision,
        "compiled": request.compile,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "windows": sum(len(p.boxes) for p in plans),
        "batches": progress.batches,
        "levels": sum(p.num_levels for p in plans),
        "hir_factor": factor,
        "monochrome": bool(getattr(base, "monochrome", False)),
        "model": request.model,
        "is_random_model": is_random,
    }


def run_to_completion(request: RestoreRequest, cancel: Optional[threading.Event] = None, *,
                      denoiser: Optional[Any] = None) -> FinishedEvent:
    """Drain :func:`restore` and return its :class:`FinishedEvent`."""
    finished = None
    for event in restore(request, cancel, denoiser=denoiser):
        if isinstance(event, FinishedEvent):
            finished = event
    if finished is None:
        raise RuntimeError("restore() ended without a result")
    return finished
