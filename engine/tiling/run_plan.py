"""What a run will solve, decided before it starts: the HiR factor, the window plan of each stage
and the denoiser calls each window makes. :func:`engine.pipeline.restore` plans its stages with
:func:`plan_run`, and the app's time estimate asks it too, so an estimate never counts other
windows than the run has."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

from engine.request import RestoreRequest
from engine.samplers.schedule import make_schedule
from engine.tiling.hir import choose_factor
from engine.tiling.problem import low_scale_tasks
from engine.tiling.window_plan import (
    NETWORK_MULTIPLE,
    WindowPlan,
    ceil_to,
    effective_overlap,
    effective_window,
    plan_windows,
)


def plan_stage(height: int, width: int, request: RestoreRequest, align: int) -> WindowPlan:
    """Windows for a (height, width) canvas with the request's window/overlap, aligned to ``align``."""
    if request.tiling == "none":
        block = math.lcm(align, NETWORK_MULTIPLE)
        return plan_windows(height, width, (ceil_to(height, block), ceil_to(width, block)), 0, align)
    window = effective_window(request.window, align)
    return plan_windows(height, width, window, effective_overlap(window, request.overlap, align), align)


class RunPlan(NamedTuple):
    """The stages of a run: phase 2 (``high``, the output canvas) and, with HiR, phase 1 (``low``,
    the canvas ``factor`` times smaller, solved first)."""

    factor: int  # HiR factor; 1 = no HiR
    high: WindowPlan
    low: Optional[WindowPlan]
    calls_per_window: int  # denoiser calls of one window (time travel included)
    hir_skipped: bool = False  # HiR was due, but the small problem leaves nothing to solve

    @property
    def windows(self) -> int:
        return len(self.high.boxes) + (len(self.low.boxes) if self.low is not None else 0)

    @property
    def calls(self) -> int:
        """Window-calls of the whole run: each window makes ``calls_per_window`` calls (a warm
        start only moves the schedule's top timestep, not its length)."""
        return self.windows * self.calls_per_window


def plan_run(request: RestoreRequest, height: int, width: int) -> RunPlan:
    """The stages :func:`engine.pipeline.restore` runs for ``request`` on a (height, width) photo,
    with the request's window (the pipeline first narrows it to a model's smaller native window)."""
    sr = int(request.tasks.sr)
    out_h, out_w = height * sr, width * sr
    factor = 1 if request.tiling == "none" else choose_factor(out_h, out_w, sr, request.window, request.hir)
    high = plan_stage(out_h, out_w, request, math.lcm(sr, factor))
    low, skipped = None, False
    if factor > 1:
        low_tasks = low_scale_tasks(request.tasks, factor)
        if low_tasks is None:
            factor, skipped = 1, True
        else:  # phase 1 restores the padded phase-2 canvas, factor times smaller
            low = plan_stage(high.padded_height // factor, high.padded_width // factor, request, int(low_tasks.sr))
    calls = make_schedule(request.steps, request.travel_length, request.travel_repeat).num_calls
    return RunPlan(factor, high, low, calls, skipped)
