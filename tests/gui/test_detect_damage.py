"""Detect damage in the app: in the background, the proposal as the mask in one undo step, the
sensitivity slider moving it live, the user's marks kept or replaced only when asked, brush and
eraser correcting it, and Restore (test-tiny) filling what was found."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox
from window_helpers import open_photo, paint, start_run, write_photo

from engine.detection import detect_damage
from engine.detection.synthetic import DamageSpec, add_damage
from gui.run.plan import TaskSettings
from tests.test_damage_detection import smooth_photo


@pytest.fixture
def damaged_window(make_window, tmp_path, qtbot):
    def make(size=(96, 128), seed=2, tear=True):
        window = make_window()
        damaged = add_damage(smooth_photo(*size, seed), seed, DamageSpec(torn_corner=tear))
        path = tmp_path / "scan.png"
        write_photo(path, damaged.image)
        assert open_photo(qtbot, window, path)
        return window, damaged

    return make


def detect(qtbot, window) -> None:
    window.act_detect.trigger()
    assert window.damage_panel.cancel_button.isEnabled()  # running in the background
    qtbot.waitUntil(lambda: window._damage_task is None, timeout=20000)


def marked(window) -> np.ndarray:
    return window.document.mask > 127


def test_detect_adjust_undo_then_restore_fills_the_damage(damaged_window, qtbot):
    window, damaged = damaged_window(tear=False)
    doc = window.document
    tools = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Tools")
    assert window.act_detect in tools.actions() and window.act_detect in window.toolbar.actions()
    detect(qtbot, window)
    expected = detect_damage(doc.image)
    assert np.array_equal(marked(window), expected.mask(window.damage_panel.sensitivity()))
    assert (marked(window) & damaged.mask).sum() > 0.6 * damaged.mask.sum()
    assert doc.undo_stack.count() == 1 and doc.undo_stack.undoText() == "Detect damage"
    assert "Marked" in window.damage_panel.status_label.text()

    window.damage_panel.sensitivity_slider.setValue(95)  # live: a superset, still one step
    more = marked(window).copy()
    window.damage_panel.sensitivity_slider.setValue(20)
    fewer = marked(window).copy()
    assert np.array_equal(more, expected.mask(0.95)) and np.array_equal(fewer, expected.mask(0.2))
    assert more.sum() > fewer.sum() and (fewer <= more).all() and doc.undo_stack.count() == 1

    doc.undo_stack.undo()  # one step takes the whole proposal back
    assert not marked(window).any()
    doc.undo_stack.redo()  # and gives back the one last shown
    assert np.array_equal(marked(window), fewer)
    window.damage_panel.sensitivity_slider.setValue(60)
    shown = marked(window).copy()
    assert np.array_equal(shown, expected.mask(0.6))

    start_run(qtbot, window, TaskSettings(inpaint=True, model="test-tiny", steps=2, window=64, overlap=32,
                                          hir="off", device="cpu", quality="Custom"))
    qtbot.waitUntil(lambda: not window.runs.running, timeout=60000)
    assert window.runs.last_error is None and doc.preview_finished
    changed = np.abs(doc.preview - doc.image).max(axis=2) > 1e-3
    assert changed[shown].mean() > 0.5 and not changed[~shown].any()  # exactly the damage was filled


def test_the_brush_and_eraser_correct_the_proposal_which_then_stays(damaged_window, qtbot):
    window, _ = damaged_window()
    detect(qtbot, window)
    proposal = marked(window).copy()
    window.act_eraser.setChecked(True)
    paint(qtbot, window, [(10, 10), (200, 10), (200, 200), (10, 200)])  # erase part of it
    corrected = marked(window).copy()
    assert corrected.sum() < proposal.sum() and window.document.undo_stack.count() == 2
    assert not window.proposal_is_live()
    window.damage_panel.sensitivity_slider.setValue(100)  # no longer moves the corrected mask
    assert np.array_equal(marked(window), corrected)
    assert "no longer changes it" in window.damage_panel.status_label.text()


def test_marks_the_user_painted_are_kept_or_replaced_only_when_asked(damaged_window, qtbot):
    window, _ = damaged_window()
    doc = window.document
    doc.set_mask_region(0, 0, np.full((8, 8), 255, np.uint8))  # the user's own marks in a corner
    painted = marked(window).copy()
    window.marks_answer = "add"
    detect(qtbot, window)
    assert (marked(window) >= painted).all() and marked(window).sum() > painted.sum()
    doc.undo_stack.undo()
    assert np.array_equal(marked(window), painted)
    window.marks_answer = None  # the question was cancelled: nothing changes
    detect(qtbot, window)
    assert np.array_equal(marked(window), painted) and doc.undo_stack.index() == 0 and doc.undo_stack.canRedo()
    window.marks_answer = "replace"
    detect(qtbot, window)
    found = detect_damage(doc.image).mask(window.damage_panel.sensitivity())
    assert np.array_equal(marked(window), found) and not found[:8, :8].all()
    doc.undo_stack.undo()
    assert np.array_equal(marked(window), painted)


def test_the_question_names_both_choices(damaged_window, qtbot, monkeypatch):
    window, _ = damaged_window()
    window.interactive = True
    asked = []

    def answer(box):
        asked.append([b.text() for b in box.buttons()])
        return 0

    monkeypatch.setattr(QMessageBox, "exec", answer)
    window.document.set_mask_region(0, 0, np.full((4, 4), 255, np.uint8))
    detect(qtbot, window)
    assert asked and "Add to my marks" in asked[0] and "Replace my marks" in asked[0]


def test_detection_can_be_cancelled_and_a_new_photo_drops_it(damaged_window, qtbot, monkeypatch, tmp_path):
    import threading

    import engine.detection as detection

    window, _ = damaged_window()
    release = threading.Event()
    real = detection.detect

    def slow(image, detector="builtin", *, cancel=None, **kwargs):
        release.wait(5)
        yield from real(image, detector, cancel=cancel, **kwargs)

    monkeypatch.setattr(detection, "detect", slow)
    window.act_detect.trigger()
    window.damage_panel.cancel_button.click()
    release.set()
    qtbot.waitUntil(lambda: window._damage_task is None, timeout=20000)
    assert "cancelled" in window.damage_panel.status_label.text() and not marked(window).any()
    release.clear()
    window.act_detect.trigger()
    write_photo(tmp_path / "other.png", smooth_photo(40, 40, 1))
    assert open_photo(qtbot, window, tmp_path / "other.png")  # another photo: the detection is not for it
    release.set()
    qtbot.wait(200)
    assert window._damage_task is None and not marked(window).any() and window.document.undo_stack.count() == 0


def test_an_installed_scratch_network_is_offered_and_used(damaged_window, qtbot, tmp_path):
    import torch

    from engine.detection.network import ScratchNetConfig, ScratchUNet
    from engine.models import store

    window, _ = damaged_window(size=(64, 80))
    checkpoint = tmp_path / "FT_Epoch_latest.pt"
    torch.save({"model_state": ScratchUNet(ScratchNetConfig(depth=2, conv_num=1, wf=2)).state_dict()}, checkpoint)
    model_id = store.import_model_file(checkpoint).model_id
    window.damage_dock.show()
    window.damage_dock.raise_()
    qtbot.waitUntil(lambda: window.damage_panel.detector_combo.count() == 2, timeout=5000)
    window.damage_panel.detector_combo.setCurrentIndex(1)
    assert window.damage_panel.detector() == model_id
    detect(qtbot, window)
    assert window.proposal is not None and window.proposal.scores.detector == model_id
    assert window.proposal.scores.scores.shape == (64, 80)
