"""engine.tiling.run_plan.plan_run says, before a run, exactly the windows and denoiser calls the
pipeline runs (the app's time estimate counts with it)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.events import PlanEvent, ProgressEvent
from engine.pipeline import restore
from engine.request import RestoreRequest, Tasks
from engine.tiling.run_plan import plan_run
from tests.test_pipeline import ZeroImage, gradient_image

CASES = [  # (input h, w), tasks, request options
    ((40, 56), Tasks(colorize=True), dict(hir=False)),
    ((70, 100), Tasks(colorize=True), dict()),  # auto: HiR on (short side ≥ 2 windows)
    ((40, 56), Tasks(colorize=True), dict(hir=True)),
    ((24, 40), Tasks(inpaint=True, sr=2), dict(hir=True)),  # phase 1 keeps the fill at ×1
    ((40, 40), Tasks(sr=2), dict(hir=True)),  # ×2 alone at half size is nothing: HiR skipped
    ((40, 56), Tasks(sr=4, colorize=True), dict()),
    ((30, 50), Tasks(colorize=True), dict(tiling="none")),
    ((70, 100), Tasks(colorize=True), dict(travel_length=2, travel_repeat=3, steps=5, hir_start=500)),
]


@pytest.mark.parametrize("size, tasks, options", CASES)
def test_plan_run_is_what_the_pipeline_runs(size, tasks, options):
    h, w = size
    mask = np.zeros((h, w), bool)
    mask[h // 3 : h // 2, w // 4 : w // 2] = True
    request = RestoreRequest(image=gradient_image(h, w), mask=mask if tasks.inpaint else None, tasks=tasks,
                             **{"steps": 2, "window": 32, "overlap": 16, **options})
    events = list(restore(request, denoiser=ZeroImage()))
    plans = {e.stage: e for e in events if isinstance(e, PlanEvent)}
    planned = plan_run(request, h, w)
    assert plans["restore"].boxes == planned.high.boxes and plans["restore"].levels == planned.high.levels
    if planned.low is None:
        assert set(plans) == {"restore"} and events[-1].report["hir_factor"] == 1
    else:
        assert plans["hir-low"].boxes == planned.low.boxes and events[-1].report["hir_factor"] == planned.factor
    assert events[-1].report["windows"] == planned.windows
    assert [e.total for e in events if isinstance(e, ProgressEvent)][-1] == planned.calls
    assert events[-1].report["denoiser_calls"] == planned.calls
