"""Apply and its undo around runs. Apply after a run that filled the mask clears only the marks
that run filled: those inside the windows it finished (all of them once it completed), as they
were when it started. Marks in the windows a cancelled run never reached, and strokes painted
since it started, stay for the next run (scaled ×s on an upscaled result), so "Apply and restore"
goes on with them. While a run restores the photo shown, Undo and Redo of an Apply (which would
swap that photo) wait."""

from __future__ import annotations

import cv2
import numpy as np

from engine.geometry import Box
from gui.run.plan import TaskSettings
from window_helpers import fake_restore, paint, start_run

FILL = TaskSettings(inpaint=True)


def paint_top_left_and_bottom_right(qtbot, window) -> np.ndarray:
    """Marks in the first and the last of the four 32×32 windows (canvas at 4×); the mask."""
    paint(qtbot, window, [(20, 20), (60, 20)])
    paint(qtbot, window, [(170, 170), (230, 170)])
    return window.document.mask.copy()


def test_apply_after_cancel_keeps_the_marks_of_the_windows_not_restored(window_with_photo, qtbot,
                                                                       save_prompt_answers):
    window = window_with_photo(fake_restore(delay=10))
    doc = window.document
    painted = paint_top_left_and_bottom_right(qtbot, window)
    start_run(qtbot, window, FILL)
    qtbot.waitUntil(lambda: window.runs.windows_finished == 1, timeout=5000)  # the top-left window
    window.runs.cancel()
    assert window.act_apply.isEnabled()

    save_prompt_answers["pending"].append("apply")  # "Apply and restore"
    assert window.restore(), window.runs.last_error
    assert not doc.mask[:32, :32].any(), "the marks of the finished window are filled: cleared"
    assert np.array_equal(doc.mask[32:, 32:], painted[32:, 32:]) and doc.has_mask(), "the rest is still to do"
    window.runs.cancel()
    assert window.runs.wait_idle(5000)

    window.runs.discard()
    doc.undo_stack.undo()
    assert np.array_equal(doc.mask, painted), "undo brings back every mark"
    doc.undo_stack.redo()
    assert not doc.mask[:32, :32].any() and np.array_equal(doc.mask[32:, 32:], painted[32:, 32:])


def test_strokes_painted_after_a_fill_run_survive_apply_and_restore(window_with_photo, qtbot, save_prompt_answers):
    window = window_with_photo(fake_restore())
    doc = window.document
    paint(qtbot, window, [(20, 20), (60, 20)])
    start_run(qtbot, window, FILL)
    qtbot.waitUntil(lambda: doc.preview_finished and not window.runs.running, timeout=5000)
    before = doc.mask.copy()
    paint(qtbot, window, [(170, 170), (230, 170)])  # damage the result still shows
    new_stroke = (doc.mask > 0) & (before == 0)

    save_prompt_answers["pending"].append("apply")
    assert window.restore(), window.runs.last_error
    assert np.array_equal(doc.mask > 0, new_stroke), "the filled marks are cleared, the new stroke kept"


def test_undo_and_redo_of_an_apply_wait_for_the_run_of_the_photo_it_gave(window_with_photo, qtbot):
    window = window_with_photo(fake_restore(delay=10))
    doc = window.document
    paint(qtbot, window, [(20, 20), (60, 20)])
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: window.runs.windows_finished == 1, timeout=5000)
    window.runs.cancel()
    window.act_apply.trigger()
    applied = doc.image
    start_run(qtbot, window, TaskSettings(colorize=True))  # a run of the applied photo
    window.act_undo.trigger()
    assert doc.image is applied and window.runs.running, "the photo being restored stays"
    assert "cancel it first" in window.statusBar().currentMessage()
    paint(qtbot, window, [(170, 170), (230, 170)])
    window.act_undo.trigger()  # a stroke: undone as ever
    assert not doc.mask[32:, 32:].any() and doc.image is applied

    window.runs.cancel()
    window.runs.discard()
    window.act_undo.trigger()
    assert doc.image is doc.original, "once the run is over, Undo takes back the Apply"
    start_run(qtbot, window, TaskSettings(colorize=True))
    window.act_redo.trigger()
    assert doc.image is doc.original and "cancel it first" in window.statusBar().currentMessage()
    window.runs.cancel()


def test_apply_of_a_cancelled_upscale_keeps_the_marks_still_to_fill_scaled(window_with_photo, qtbot,
                                                                          save_prompt_answers):
    """Fill + upscale ×2, cancelled after the top-left window: Apply (here "Apply and restore")
    keeps the other marks, scaled ×2 nearest-neighbour, so the next Fill has its mask; one undo
    step with the photo swap gives back the photo and the mask at the old size exactly."""
    boxes = tuple(Box(top, left, 64, 64) for top in (0, 64) for left in (0, 64))  # output pixels
    window = window_with_photo(fake_restore(delay=10, boxes=boxes, size=(128, 128)))
    doc = window.document
    photo = doc.image
    painted = paint_top_left_and_bottom_right(qtbot, window)
    start_run(qtbot, window, TaskSettings(inpaint=True, upscale=2))
    qtbot.waitUntil(lambda: window.runs.windows_finished == 1, timeout=5000)
    window.runs.cancel()
    assert window.runs.wait_idle(5000)

    save_prompt_answers["pending"].append("apply")
    assert window.restore(), window.runs.last_error  # a Fill run of the ×2 photo: it has a mask
    assert doc.size == (128, 128) and doc.mask.shape == (128, 128)
    still_to_fill = painted.copy()
    still_to_fill[:32, :32] = 0
    expected = cv2.resize(still_to_fill, (128, 128), interpolation=cv2.INTER_NEAREST)
    assert not doc.mask[:64, :64].any(), "the marks of the finished window are filled: cleared"
    assert np.array_equal(doc.mask, expected) and doc.has_mask(), "the rest is kept, scaled ×2"
    window.runs.cancel()
    assert window.runs.wait_idle(5000)

    window.runs.discard()
    doc.undo_stack.undo()
    assert doc.image is photo and np.array_equal(doc.mask, painted), "one undo: the photo and every mark"
    doc.undo_stack.redo()
    assert np.array_equal(doc.mask, expected)
