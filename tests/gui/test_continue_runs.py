"""Restore continues an interrupted run: after Cancel, or after the app was closed in the middle,
the same photo, mask and settings go on from the finished windows (real engine, test-tiny)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from engine.events import PlanEvent, WindowFinished, WindowStarted
from engine.tiling.resume import ResumeState
from gui.run.plan import TaskSettings
from gui.run.state import runs_root, state_folder
from gui.run.worker import engine_restore, live_threads
from window_helpers import paint, start_run

pytest.importorskip("engine.pipeline")

#: 96×96 with 64-px windows overlapping by 32: 4 windows in 3 wavefront levels, 2 calls each.
WINDOWS, STEPS = 4, 2


def settings(**changes) -> TaskSettings:
    base = dict(colorize=True, model="test-tiny", steps=STEPS, window=64, overlap=32, hir="off", device="cpu",
                quality="Custom")
    return TaskSettings(**{**base, **changes})


class EngineRuns:
    """The engine, with a pause the test controls in each run, in order (then none):

    * ``"stop"``: after the first new window, wait for Cancel (the run is cancelled mid-way);
    * ``"hold"``: before the first new window, wait for :attr:`go` (what a continued run shows
      before it does any work).
    """

    def __init__(self, *modes: str):
        self.modes = list(modes)
        self.runs: list[list] = []  # the events of each run
        self.held, self.go = threading.Event(), threading.Event()

    def __call__(self, request, cancel):
        mode = self.modes.pop(0) if self.modes else ""
        events: list = []
        self.runs.append(events)
        for event in engine_restore(request, cancel):
            if mode == "hold" and isinstance(event, WindowStarted):
                self.held.set()
                self.go.wait(60)
                mode = ""
            events.append(event)
            yield event
            if mode == "stop" and isinstance(event, WindowFinished) and not event.resumed:
                cancel.wait(60)
                mode = ""

    def resumed(self, run: int) -> list[int]:
        return [e.index for e in self.runs[run] if isinstance(e, WindowFinished) and e.resumed]


def cancel_after_first_window(qtbot, window) -> list[int]:
    """Cancel the running "stop" run once a window is finished; the windows its state keeps."""
    qtbot.waitUntil(lambda: window.runs.windows_finished >= 1, timeout=60000)
    window.runs.cancel()
    assert window.runs.wait_idle(60000)
    state = json.loads((state_folder(window.document.image) / "state.json").read_text())
    return state["stages"]["restore"]["finished"]


def saved_canvas(folder, events):
    """The canvas the state in ``folder`` holds, on the plan of the run whose ``events`` are given."""
    state = json.loads((folder / "state.json").read_text())
    plan = next(e for e in events if isinstance(e, PlanEvent))
    canvas, _ = ResumeState.open(folder, state["fingerprint"])[0].load_stage("restore", *plan.output_size, plan.boxes)
    return canvas


def test_restore_after_cancel_continues_from_the_finished_windows(window_with_photo, qtbot):
    engine = EngineRuns("stop", "hold")
    window = window_with_photo(engine, size=(96, 96))
    start_run(qtbot, window, settings())
    saved = cancel_after_first_window(qtbot, window)
    assert 1 <= len(saved) < WINDOWS
    assert "Restore with the same photo, mask and settings continues from them" in window.log_panel.plain_text()
    folder = state_folder(window.document.image)
    assert window.pending_question().discard == "Continue", "Restore offers to continue, not to start over"

    start_run(qtbot, window, settings())  # "Continue" (conftest answers "discard")
    qtbot.waitUntil(engine.held.is_set, timeout=60000)
    # before any new work: the finished windows are on the canvas, the progress is past them
    qtbot.waitUntil(lambda: window.runs.windows_finished == len(saved), timeout=10000)
    assert engine.resumed(1) == saved
    canvas = saved_canvas(folder, engine.runs[1]).pixels.astype(np.float32) / 65535
    boxes = {e.index: e.box for e in engine.runs[1] if isinstance(e, WindowFinished)}
    for index in saved:
        rows, cols = boxes[index].slices()
        np.testing.assert_allclose(window.document.preview[rows, cols], canvas[rows, cols], atol=1e-6)
    assert window.panel.progress.value() == len(saved) * STEPS
    assert f"resuming: {len(saved)} of {WINDOWS} windows were already finished" in window.log_panel.plain_text()

    engine.go.set()
    qtbot.waitUntil(lambda: not window.runs.running, timeout=60000)
    assert window.runs.last_error is None and window.document.preview_finished
    assert engine.runs[1][-1].report["denoiser_calls"] == (WINDOWS - len(saved)) * STEPS, "only the rest ran"
    assert window.runs.wait_idle(10000) and not folder.exists(), "a finished run leaves no state behind"


def test_restore_offers_to_continue_only_what_would_continue(window_with_photo, qtbot):
    """Another mask or other settings start over and replace the saved windows: Restore says so."""
    window = window_with_photo(EngineRuns("stop"), size=(96, 96))
    paint(qtbot, window, [(20, 20), (60, 20)])
    start_run(qtbot, window, settings(colorize=False, inpaint=True))
    cancel_after_first_window(qtbot, window)
    assert window.pending_question().discard == "Continue"

    window.panel.set_settings(settings(colorize=False, inpaint=True, seed=7))
    question = window.pending_question()
    assert question.discard == "Discard and start over" and "replaces its finished windows" in question.text
    window.panel.set_settings(settings(colorize=False, inpaint=True))
    assert window.pending_question().discard == "Continue", "the same settings again"
    paint(qtbot, window, [(100, 100), (140, 120)])  # more damage marked
    assert window.pending_question().discard == "Discard and start over"


def test_restore_after_closing_the_app_mid_run_continues(make_window, window_with_photo, qtbot, tmp_path):
    first = window_with_photo(EngineRuns("stop"), size=(96, 96))
    start_run(qtbot, first, settings())
    qtbot.waitUntil(lambda: first.runs.windows_finished >= 1, timeout=60000)
    first.close()  # the unsaved-work question answers "discard": the run is stopped
    for thread in live_threads():
        assert thread.wait(60000)
    assert (state_folder(first.document.image) / "state.json").exists(), "saved when the run stopped"

    engine = EngineRuns()
    second = make_window(engine)
    assert second.open_path(str(tmp_path / "photo.png"))
    qtbot.waitUntil(lambda: "This photo has saved progress" in second.log_panel.plain_text(), timeout=30000)
    start_run(qtbot, second, settings())
    qtbot.waitUntil(lambda: not second.runs.running, timeout=60000)
    assert engine.resumed(0), "the windows finished before closing were not redone"
    assert "resuming:" in second.log_panel.plain_text() and second.document.preview_finished


def test_a_changed_mask_starts_fresh_and_replaces_the_saved_state(window_with_photo, qtbot):
    engine = EngineRuns("stop", "stop")
    window = window_with_photo(engine, size=(96, 96))
    paint(qtbot, window, [(20, 20), (60, 20)])
    start_run(qtbot, window, settings(colorize=False, inpaint=True))
    cancel_after_first_window(qtbot, window)
    folder = state_folder(window.document.image)
    before = json.loads((folder / "state.json").read_text())["fingerprint"]

    window.runs.discard()
    paint(qtbot, window, [(100, 100), (140, 120)])  # more damage marked
    start_run(qtbot, window, settings(colorize=False, inpaint=True))
    cancel_after_first_window(qtbot, window)
    log = window.log_panel.plain_text()
    assert "different request" in log and "resuming" not in log and engine.resumed(1) == []
    assert [p.name for p in runs_root().iterdir()] == [folder.name], "one state per photo"
    assert json.loads((folder / "state.json").read_text())["fingerprint"] != before, "replaced"


def test_a_photo_opened_after_a_crash_gets_back_the_mask_its_saved_progress_needs(
        make_window, window_with_photo, qtbot, tmp_path):
    first = window_with_photo(EngineRuns("stop"), size=(96, 96))
    paint(qtbot, first, [(20, 20), (60, 20)])
    painted = first.document.engine_mask()
    start_run(qtbot, first, settings(colorize=False, inpaint=True))
    cancel_after_first_window(qtbot, first)
    first.close()  # or the app crashed: the mask was never saved anywhere else
    for thread in live_threads():
        assert thread.wait(60000)

    engine = EngineRuns()
    second = make_window(engine)
    assert second.open_path(str(tmp_path / "photo.png"))
    qtbot.waitUntil(lambda: "its mask is back" in second.log_panel.plain_text(), timeout=30000)
    np.testing.assert_array_equal(second.document.engine_mask(), painted)
    second.document.undo_stack.undo()
    assert not second.document.has_mask(), "undoable"
    second.document.undo_stack.redo()
    start_run(qtbot, second, settings(colorize=False, inpaint=True))
    qtbot.waitUntil(lambda: not second.runs.running, timeout=60000)
    assert engine.resumed(0), "the same mask: the windows finished before were not redone"
