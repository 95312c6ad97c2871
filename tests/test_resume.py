"""Resume: cancel a run, continue from its finished windows, get the uninterrupted result."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from engine.errors import Cancelled
from engine.events import LogEvent, ProgressEvent, WindowFinished
from engine.pipeline import restore
from engine.request import RestoreRequest, Tasks
from engine.tiling.canvas import Canvas
from engine.tiling.resume import ResumeState, request_fingerprint
from engine.tiling.window_plan import plan_windows
from tests.test_msr import TinyDenoiser



def make_request(tmp_path=None, **kw):
    rng = np.random.default_rng(3)
    img = rng.random((64, 80, 3), dtype=np.float32)
    mask = np.zeros((64, 80), bool)
    mask[8:40, 20:60] = True
    base = dict(image=img, mask=mask, tasks=Tasks(inpaint=True), steps=2, window=32, overlap=16, batch=2, seed=11)
    base.update(kw)
    if tmp_path is not None:
        base["resume_dir"] = str(tmp_path / "state")
    return RestoreRequest(**base)


def run_all(req, cancel=None, cancel_after=None):
    events, den = [], TinyDenoiser()
    finished = 0
    for event in restore(req, cancel, denoiser=den):
        events.append(event)
        if isinstance(event, WindowFinished):
            finished += 1
            if cancel_after is not None and finished == cancel_after:
                cancel.set()
    return events, den


@pytest.mark.parametrize("hir", [False, True])
def test_cancel_then_resume_gives_the_uninterrupted_result(tmp_path, hir):
    reference, ref_den = run_all(make_request(hir=hir))
    req = make_request(tmp_path, hir=hir)
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        run_all(req, cancel, cancel_after=5)
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert sum(len(s["finished"]) for s in state["stages"].values()) >= 5
    events, den = run_all(req)
    assert any(isinstance(e, LogEvent) and "resuming" in e.message for e in events)
    np.testing.assert_array_equal(events[-1].result, reference[-1].result)
    assert den.calls < ref_den.calls  # finished windows were not redone
    # a third run finds everything finished
    again, den3 = run_all(req)
    np.testing.assert_array_equal(again[-1].result, reference[-1].result)
    assert den3.calls == 0


def test_mismatched_request_starts_fresh_with_a_warning(tmp_path):
    req = make_request(tmp_path)
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        run_all(req, cancel, cancel_after=3)
    other = req.replace(seed=12)
    events, _ = run_all(other)
    warnings = [e.message for e in events if isinstance(e, LogEvent) and e.level == "warning"]
    assert any("different request" in w for w in warnings)
    fresh, _ = run_all(make_request(seed=12))
    np.testing.assert_array_equal(events[-1].result, fresh[-1].result)


def test_fingerprint_ignores_batch_and_device_but_not_pixels():
    req = make_request()
    img = req.image
    fp = request_fingerprint(req.to_dict(), img)
    assert fp == request_fingerprint(req.replace(batch=7, device="cpu").to_dict(), img)
    assert fp != request_fingerprint(req.replace(steps=3).to_dict(), img)
    changed = img.copy()
    changed[0, 0, 0] += 0.5
    assert fp != request_fingerprint(req.to_dict(), changed)


def test_the_request_hashes_in_memory_pixels_in_place():
    """The app's requests carry the photo as an array: fingerprinting it must not copy it."""
    import hashlib
    import tracemalloc

    image = np.random.default_rng(0).random((1000, 1000, 3), dtype=np.float32)  # 12 MB
    req = RestoreRequest(image=image, tasks=Tasks(colorize=True))
    tracemalloc.start()
    try:
        encoded = req.to_dict()["image"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert encoded["sha256"] == hashlib.sha256(image.tobytes()).hexdigest()
    assert peak < 1_000_000, f"{peak} bytes allocated"


def test_state_round_trip(tmp_path):
    plan = plan_windows(48, 48, 32, 16, 1)
    canvas = Canvas(48, 48)
    canvas.pixels[:] = np.arange(48 * 48 * 3, dtype=np.uint16).reshape(48, 48, 3)
    state, warning = ResumeState.open(tmp_path, "abc")
    assert warning is None
    state.save_stage("restore", canvas, {0, 2}, plan.boxes)
    loaded, warning = ResumeState.open(tmp_path, "abc")
    assert warning is None and loaded.resumed_windows == 2
    back, finished = loaded.load_stage("restore", 48, 48, plan.boxes)
    assert finished == {0, 2}
    expected = np.zeros((48, 48), bool)
    for i in (0, 2):
        expected[plan.boxes[i].slices()] = True
    np.testing.assert_array_equal(back.written, expected)
    np.testing.assert_array_equal(back.pixels, np.where(expected[..., None], canvas.pixels, 0))
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries
    _, warning = ResumeState.open(tmp_path, "other")
    assert warning and "different request" in warning


class OverflowingDenoiser(TinyDenoiser):
    """Healthy for the first ``healthy_calls`` calls, then NaN (like a model overflowing in fp16)."""

    def __init__(self, healthy_calls, precision="fp16"):
        super().__init__()
        self.healthy_calls = healthy_calls
        self.precision = precision

    def __call__(self, x, t):
        eps = super().__call__(x, t)
        return eps if self.calls <= self.healthy_calls else torch.full_like(eps, float("nan"))


def test_nan_from_the_network_stops_with_a_clear_error_and_keeps_finished_windows(tmp_path):
    from engine.errors import NumericalError

    req = make_request(tmp_path, batch=1)
    den = OverflowingDenoiser(healthy_calls=2 * req.steps)  # two windows finish, the third overflows
    finished = []
    with pytest.raises(NumericalError, match="bf16 or fp32"):
        for event in restore(req, denoiser=den):
            if isinstance(event, WindowFinished):
                finished.append(event)
                assert np.isfinite(event.pixels).all()
    assert len(finished) == 2
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert sum(len(s["finished"]) for s in state["stages"].values()) >= 1  # saved level by level


@pytest.mark.parametrize("precision, advice, not_advice", [
    ("bf16", "choose fp32", "bf16"), ("fp32", "model file may be damaged", "choose"),
])
def test_nan_advice_follows_the_precision_that_ran(tmp_path, precision, advice, not_advice):
    from engine.errors import NumericalError

    req = make_request(tmp_path, batch=1)
    with pytest.raises(NumericalError) as err:
        for _ in restore(req, denoiser=OverflowingDenoiser(healthy_calls=0, precision=precision)):
            pass
    assert advice in str(err.value) and not_advice not in str(err.value).split(";")[1]


def test_resumed_windows_are_reported_first_and_progress_starts_where_it_stopped(tmp_path):
    req = make_request(tmp_path, hir=False)
    with pytest.raises(Cancelled):
        run_all(req, threading.Event(), cancel_after=5)
    saved = ResumeState.saved_windows(tmp_path / "state")
    den = TinyDenoiser()
    seen = [(event, den.calls) for event in restore(req, denoiser=den)]
    resumed = [(e, calls) for e, calls in seen if isinstance(e, WindowFinished) and e.resumed]
    assert len(resumed) == saved >= 5 and all(calls == 0 for _, calls in resumed), "shown before any new work"
    first_progress = next((e, calls) for e, calls in seen if isinstance(e, ProgressEvent))
    assert first_progress[1] == 0 and first_progress[0].done == saved * req.steps
    assert any(isinstance(e, LogEvent) and f"resuming: {saved} of 12 windows" in e.message for e, _ in seen)
    result = seen[-1][0].result
    for event, _ in resumed:  # their pixels are those of the result
        rows, cols = event.box.slices()
        np.testing.assert_allclose(event.pixels, result[rows, cols], atol=1e-6)


def test_closing_the_event_stream_keeps_the_windows_finished_so_far(tmp_path):
    """The app stops reading events when the user cancels: the generator is closed, not cancelled."""
    req = make_request(tmp_path, hir=False, batch=1)
    events = restore(req, denoiser=TinyDenoiser())
    finished = []
    for event in events:
        if isinstance(event, WindowFinished):
            finished.append(event.index)
            if len(finished) == 2:  # the second is the first window of level 1: no level checkpoint yet
                break
    events.close()
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["stages"]["restore"]["finished"] == sorted(finished)


def test_a_replaced_state_drops_the_canvases_of_stages_the_new_request_has_not(tmp_path):
    with pytest.raises(Cancelled):
        run_all(make_request(tmp_path, hir=True), threading.Event(), cancel_after=5)
    assert list((tmp_path / "state").glob("hir-low.*.npy"))
    with pytest.raises(Cancelled):
        run_all(make_request(tmp_path, hir=False), threading.Event(), cancel_after=3)
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    listed = sorted(f"restore.{n}.npy" for n, _ in state["stages"]["restore"]["patches"])
    assert list(state["stages"]) == ["restore"]
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == sorted(listed + ["state.json"])
