"""The main window end to end: open, paint, run (fake and test-tiny), cancel, apply/undo,
compare, save with metadata, settings that persist."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage
from PySide6.QtWidgets import QMessageBox

from engine.errors import InputError, ModelFileError, OutOfMemory
from engine.events import PlanEvent, ProgressEvent, WindowFinished, WindowStarted
from engine.geometry import Box
from gui.run.plan import TaskSettings
from gui.settings import SETTINGS_VERSION, AppSettings
from gui.run.worker import live_threads
from window_helpers import (BOXES, StuckRestore, fake_restore, open_dialogs, open_photo, paint, save_result, start_run,
                            wait_for_files, write_photo)


def test_open_paint_and_status(window_with_photo, qtbot):
    window = window_with_photo()
    assert window.document.size == (64, 64)
    assert "photo.png" in window.windowTitle() and window.status_size.text() == "64 × 64 px"
    assert window.settings.recent_files()[0].endswith("photo.png")
    window.panel.set_settings(TaskSettings(inpaint=True))
    assert not window.panel.restore_button.isEnabled()
    paint(qtbot, window, [(20, 20), (100, 20)])
    assert window.document.mask[5, 5:25].min() == 255
    assert window.panel.restore_button.isEnabled(), "painting a mask makes Fill runnable"
    assert window.status_zoom.text() == "400 %"


def test_run_paints_every_window_then_apply_and_undo(window_with_photo, qtbot):
    window = window_with_photo(fake_restore())
    original = window.document.image.copy()
    start_run(qtbot, window, TaskSettings(colorize=True, model="test-tiny"))
    qtbot.waitUntil(lambda: not window.runs.running, timeout=5000)
    assert window.runs.windows_finished == len(BOXES)
    doc = window.document
    assert doc.preview_finished and np.allclose(doc.preview, 0.9)
    assert window.panel.apply_button.isEnabled() and window.panel.restore_button.isEnabled()
    window.panel.apply_button.click()
    assert np.allclose(doc.image, 0.9) and doc.preview is None
    doc.undo_stack.undo()
    assert np.array_equal(doc.image, original)


def test_window_previews_arrive_while_running(window_with_photo, qtbot):
    window = window_with_photo(fake_restore(delay=0.3))
    seen = []
    window.document.preview_changed.connect(lambda region: seen.append(region))
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: window.runs.windows_finished >= 1, timeout=3000)
    assert window.runs.running, "the first window shows before the run ends"
    assert (0, 0, 32, 32) in seen and np.allclose(window.document.preview[:32, :32], 0.25)
    window.runs.cancel()
    assert window.runs.wait_idle(3000)


def estimating_restore(estimate: float = 0.7):
    """Window 0 finishes (0.25); window 1 shows an in-progress estimate, then waits for cancel."""
    def restore(request, cancel):
        yield PlanEvent((64, 64), BOXES, (0, 1, 1, 2))
        yield WindowStarted(0, BOXES[0])
        yield WindowFinished(0, BOXES[0], np.full((32, 32, 3), 0.25, np.float32))
        yield WindowStarted(1, BOXES[1])
        yield ProgressEvent(1, 4, 0.01, 0.01, lambda: [np.full((32, 32, 3), estimate, np.float32)])
        cancel.wait(5)

    return restore


def test_running_estimates_show_on_the_canvas_but_never_enter_the_result(window_with_photo, qtbot, monkeypatch):
    from gui.run.worker import RestoreWorker

    monkeypatch.setattr(RestoreWorker, "PREVIEW_INTERVAL", 0.0)
    window = window_with_photo(estimating_restore())
    before = window.document.image.copy()
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: 1 in window.canvas.plan.estimates, timeout=3000)
    canvas = window.canvas
    canvas.busy = False  # without the plan overlay's tint on running windows
    shot = canvas.grab().toImage()
    canvas.busy = True
    centre = canvas.to_widget(QPointF(48, 16)).toPoint()
    assert abs(QColor(shot.pixel(centre)).red() - round(0.7 * 255)) <= 2, "the estimate is drawn"
    preview = window.document.preview
    assert np.allclose(preview[:32, 32:], before[:32, 32:]), "but the result holds only finished windows"
    window.act_cancel.trigger()
    assert not canvas.plan.estimates, "cancelled: the estimate is gone"
    assert np.allclose(window.document.preview[:32, :32], 0.25)
    assert np.allclose(window.document.preview[:32, 32:], before[:32, 32:])
    assert window.runs.wait_idle(3000)


def test_cancel_returns_to_ready_and_keeps_finished_windows(window_with_photo, qtbot):
    window = window_with_photo(fake_restore(delay=2.0))
    before = window.document.image.copy()
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: window.runs.windows_finished == 1, timeout=3000)
    window.act_cancel.trigger()
    panel = window.panel
    assert panel.restore_button.isEnabled() and not panel.cancel_button.isEnabled(), "ready at once"
    assert "Cancelled" in panel.stage_label.text()
    preview = window.document.preview
    assert np.allclose(preview[:32, :32], 0.25), "the finished window is kept"
    assert np.allclose(preview[32:, 32:], before[32:, 32:]), "unfinished windows show the photo"
    assert panel.discard_button.isEnabled()
    assert window.runs.wait_idle(3000)
    window.panel.discard_button.click()
    assert window.document.preview is None


@pytest.mark.parametrize("error, kind", [(InputError("the mask is empty"), "error"),
                                         (OutOfMemory("out of memory at batch 1"), "oom")])
def test_errors_reach_the_user(window_with_photo, qtbot, error, kind):
    window = window_with_photo(fake_restore(error=error))
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: not window.runs.running, timeout=3000)
    assert window.runs.last_error == (kind, str(error))
    assert window.panel.restore_button.isEnabled()
    from gui.dialogs import oom_advice

    assert "fp16" in oom_advice("x") and "CPU" in oom_advice("x")


@pytest.mark.parametrize("error, title", [(ModelFileError("bad.pt is not a supported model"), "Cannot restore"),
                                          (OutOfMemory("out of memory at batch 1"), "Out of memory")])
def test_run_errors_open_a_dialog(window_with_photo, qtbot, error, title):
    window = window_with_photo(fake_restore(error=error))
    window.runs.show_dialogs = True  # as in the app: the path interactive=False skips
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: bool(open_dialogs(window)), timeout=3000)
    [(shown_title, text)] = open_dialogs(window)
    assert shown_title == title and str(error) in text


def test_an_unexpected_error_says_where_its_details_are(window_with_photo, qtbot):
    window = window_with_photo(fake_restore(error=RuntimeError("kaboom")))
    window.runs.show_dialogs = True
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: bool(open_dialogs(window)), timeout=3000)
    [box] = [box for box in window.findChildren(QMessageBox) if box.isVisible()]
    assert "RuntimeError: kaboom" in box.text() and "Traceback" in box.detailedText()
    assert "Show Details" in box.text(), "the traceback is behind Show Details…"
    assert "Traceback" in window.log_panel.plain_text(), "and in the log, so Copy gives a full bug report"


def test_restore_shortcut_without_a_task_explains_why(window_with_photo):
    window = window_with_photo(fake_restore())
    window.runs.show_dialogs = True
    window.panel.set_settings(TaskSettings())
    window.act_restore.trigger()
    assert not window.runs.running
    [(title, text)] = open_dialogs(window)
    assert title == "Cannot restore" and "Tick at least one task" in text


def test_compare_split_and_hold_key_show_before_and_after(window_with_photo, qtbot):
    window = window_with_photo(fake_restore())
    window.document.set_photo(np.full((64, 64, 3), 0.1, np.float32))
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: window.document.preview_finished, timeout=5000)
    canvas = window.canvas
    canvas.fit()
    window.act_compare.setChecked(True)
    image = canvas.grab().toImage()
    centre = canvas.to_widget(QPointF(32, 32))
    left, right = image.pixelColor(int(centre.x()) - 20, int(centre.y())), image.pixelColor(int(centre.x()) + 20, int(centre.y()))
    assert left.red() < 60 and right.red() > 200, (left.name(), right.name())
    window.act_compare.setChecked(False)
    canvas.setFocus()
    qtbot.keyPress(canvas, Qt.Key_Backslash)
    held = canvas.grab().toImage().pixelColor(int(centre.x()) + 20, int(centre.y()))
    qtbot.keyRelease(canvas, Qt.Key_Backslash)
    after = canvas.grab().toImage().pixelColor(int(centre.x()) + 20, int(centre.y()))
    assert held.red() < 60 and after.red() > 200


def test_save_keeps_exif_icc_and_16_bit(make_window, make_photo, tmp_path, qtbot):
    window = make_window()
    src = tmp_path / "in.jpg"
    exif, icc = write_photo(src, make_photo(40, 56), "JPEG")
    assert open_photo(qtbot, window, src)
    for name, depth in (("out.jpg", None), ("out.png", None), ("out.tif", 16)):
        out = tmp_path / name
        assert save_result(qtbot, window, out, 90, depth)
        with Image.open(out) as im:
            assert im.info.get("icc_profile") == icc, name
            assert im.getexif().get(0x010F) == "TestCamera", name
    from engine.image_io import load_image

    reopened = load_image(tmp_path / "out.tif")
    assert reopened.bit_depth == 16 and reopened.icc_profile == icc
    assert open_photo(qtbot, window, tmp_path / "out.png") and window.document.loaded.icc_profile == icc


def test_settings_persist_between_sessions(make_window):
    window = make_window()
    window.panel.set_settings(TaskSettings(colorize=True, upscale=4, steps=42, quality="Custom"))
    window.canvas.set_brush_radius(55)
    window.act_dark.setChecked(False)
    window.close()
    again = make_window()
    assert again.panel.settings().upscale == 4 and again.panel.settings().steps == 42
    assert again.canvas.brush.radius == 55 and again.settings.theme == "light"
    assert again.settings.get("settings_version", 0, int) == SETTINGS_VERSION


def test_older_settings_versions_are_migrated_or_dropped():
    settings = AppSettings()
    settings.qs.clear()
    settings.qs.setValue("settings_version", 1)
    settings.qs.setValue("dark", "false")
    migrated = AppSettings(settings.qs)
    assert migrated.theme == "light" and migrated.qs.value("dark") is None
    settings.qs.setValue("settings_version", 2)  # version 2's default fp32 becomes auto; other choices stay
    settings.qs.setValue("task_settings", json.dumps({"precision": "fp32", "steps": 40}))
    assert AppSettings(settings.qs).get_json("task_settings") == {"precision": "auto", "steps": 40}
    settings.qs.setValue("settings_version", 2)
    settings.qs.setValue("task_settings", json.dumps({"precision": "bf16"}))
    assert AppSettings(settings.qs).get_json("task_settings") == {"precision": "bf16"}
    settings.qs.setValue("settings_version", 99)
    settings.qs.setValue("task_settings", "{broken")
    fresh = AppSettings(settings.qs)
    assert fresh.qs.value("task_settings") is None and fresh.get("settings_version", 0, int) == SETTINGS_VERSION


def test_drop_a_file_opens_it(make_window, make_photo, tmp_path, qtbot):
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent

    window = make_window()
    path = tmp_path / "dropped.png"
    write_photo(path, make_photo(20, 28))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    window.dropEvent(QDropEvent(QPointF(5, 5), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))
    wait_for_files(qtbot, window)
    assert window.document.size == (20, 28) and window.document.path.endswith("dropped.png")


def test_unreadable_file_reports_an_error(make_window, tmp_path, qtbot):
    window = make_window()
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert not open_photo(qtbot, window, bad)
    assert "broken.png" in window.last_error and not window.document.has_image


def test_paste_opens_the_clipboard_image(make_window):
    window = make_window()
    image = QImage(30, 20, QImage.Format_RGB32)
    image.fill(0xFF336699)
    QGuiApplication.clipboard().setImage(image)
    window.paste()
    assert window.document.size == (20, 30)
    assert np.allclose(window.document.image[0, 0], np.array([0x33, 0x66, 0x99]) / 255, atol=1e-6)


def test_real_pipeline_with_test_tiny(window_with_photo, qtbot):
    pytest.importorskip("engine.pipeline")

    window = window_with_photo(size=(64, 64))
    plans = []
    paint(qtbot, window, [(40, 40), (120, 60)])
    start_run(qtbot, window, TaskSettings(inpaint=True, model="test-tiny", steps=2, window=64, overlap=32,
                                          hir="off", device="cpu", quality="Custom"))
    window.runs.run.plan.connect(lambda plan: plans.append(plan))
    qtbot.waitUntil(lambda: not window.runs.running, timeout=60000)
    assert window.runs.last_error is None
    assert plans and window.runs.windows_finished == sum(len(p["boxes"]) for p in plans)
    doc = window.document
    assert doc.preview_finished and doc.preview.shape == (64, 64, 3)
    assert not np.array_equal(doc.preview, doc.image), "the masked area was filled"


def test_main_starts_and_opens_the_photo(tmp_path, make_photo, qapp):
    import main

    path = tmp_path / "start.png"
    write_photo(path, make_photo(16, 16))
    assert main.main(["--quit-after-start", str(path)]) == 0
    assert main.main(["--quit-after-start", str(tmp_path / "missing.png")]) == 1


def test_apply_an_upscaled_result_and_undo_restores_photo_and_mask(window_with_photo, qtbot):
    big_boxes = (Box(0, 0, 64, 64), Box(0, 64, 64, 64), Box(64, 0, 64, 64), Box(64, 64, 64, 64))
    window = window_with_photo(fake_restore(boxes=big_boxes, size=(128, 128)))
    paint(qtbot, window, [(20, 20), (60, 20)])
    mask, image = window.document.mask.copy(), window.document.image.copy()
    start_run(qtbot, window, TaskSettings(upscale=2, inpaint=True))
    qtbot.waitUntil(lambda: window.document.preview_finished, timeout=5000)
    assert window.document.preview_scale == 2
    window.act_apply.trigger()
    doc = window.document
    assert doc.size == (128, 128) and doc.mask.shape == (128, 128) and not doc.mask.any()
    window.act_compare.setChecked(True)
    assert not window.canvas.grab().toImage().isNull()  # original (64 px) drawn stretched over 128 px
    doc.undo_stack.undo()
    assert np.array_equal(doc.image, image) and np.array_equal(doc.mask, mask)


@pytest.mark.parametrize("end", ["apply", "discard", "open"])
def test_run_status_is_cleared_when_the_result_is_applied_discarded_or_a_photo_opened(
        window_with_photo, qtbot, tmp_path, end):
    window = window_with_photo(fake_restore())
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: not window.runs.running, timeout=5000)
    panel = window.panel
    assert panel.stage_label.text().startswith("Done") and panel.progress.isVisible()
    if end == "open":
        write_photo(tmp_path / "next.png", np.zeros((16, 16, 3), np.float32))
        assert open_photo(qtbot, window, tmp_path / "next.png")
    else:
        getattr(panel, f"{end}_button").click()
    assert panel.stage_label.text() == "" and not panel.progress.isVisible()
    assert not panel.apply_button.isEnabled() and not window.act_apply.isEnabled()
    assert not window.canvas.plan.boxes and window.act_restore.isEnabled()


def test_closing_during_a_long_model_call_closes_at_once(window_with_photo, qtbot):
    stuck = StuckRestore()
    window = window_with_photo(stuck)
    start_run(qtbot, window, TaskSettings(colorize=True))
    assert stuck.entered.wait(3)
    started = time.perf_counter()
    assert window.close() and time.perf_counter() - started < 1.0, "no 5-second freeze"
    [thread] = [t for t in live_threads() if t.isRunning()]
    assert window.runs.run.cancel_event.is_set(), "the run was told to stop"
    stuck.release.set()
    qtbot.waitUntil(lambda: not live_threads(), timeout=3000)


def test_file_errors_have_fitting_titles(window_with_photo, tmp_path, file_dialogs, qtbot):
    window = window_with_photo()
    window.interactive = True  # dialogs as in the app (show_error opens them without blocking)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert not open_photo(qtbot, window, bad)
    (tmp_path / "a folder.png").mkdir()
    assert not save_result(qtbot, window, tmp_path / "a folder.png")
    file_dialogs["open"].append((str(bad), ""))
    window.act_import_mask.trigger()
    wait_for_files(qtbot, window)
    titles = [title for title, _text in open_dialogs(window)]
    assert titles == ["Cannot open the photo", "Cannot save", "Cannot import the mask"]


@pytest.mark.parametrize("tasks, kept", [(dict(colorize=True), True), (dict(inpaint=True), False)])
def test_apply_keeps_the_mask_unless_the_run_filled_it(window_with_photo, qtbot, tasks, kept):
    window = window_with_photo(fake_restore())
    doc = window.document
    paint(qtbot, window, [(20, 20), (60, 20)])
    painted = doc.mask.copy()
    start_run(qtbot, window, TaskSettings(**tasks))
    qtbot.waitUntil(lambda: doc.preview_finished, timeout=5000)
    window.act_apply.trigger()
    assert np.array_equal(doc.mask, painted) == kept and doc.mask.any() == kept
    paint(qtbot, window, [(20, 100), (60, 100)])  # painted into the document's mask in place
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert np.array_equal(doc.mask, painted), "undo brings back the mask as it was before Apply"
    doc.undo_stack.redo()
    assert np.array_equal(doc.mask, painted) == kept


def test_run_buttons_stay_in_view_in_a_short_window(make_window, qtbot):
    window = make_window()
    window.resize(1000, 560)
    window.panel.advanced_toggle.setChecked(True)  # the longest panel
    qtbot.waitUntil(lambda: window.height() == 560)
    panel = window.panel
    for button in (panel.restore_button, panel.cancel_button, panel.apply_button, panel.discard_button):
        shown = button.visibleRegion().boundingRect()
        assert shown.size() == button.size(), f"{button.text()} is cut off or scrolled away"


def test_a_photo_opened_by_a_relative_path_is_remembered_by_its_absolute_path(make_window, make_photo, tmp_path,
                                                                              monkeypatch, file_dialogs, qtbot):
    (tmp_path / "scans").mkdir()
    write_photo(tmp_path / "scans" / "old.png", make_photo(16, 16))
    monkeypatch.chdir(tmp_path)
    window = make_window()
    assert open_photo(qtbot, window, "scans/old.png")
    folder = str(tmp_path / "scans")
    assert window.document.path == str(tmp_path / "scans" / "old.png")
    assert window.settings.get("last_dir", "", str) == folder
    assert window.settings.recent_files()[0] == window.document.path
    window.save_as()
    assert file_dialogs["calls"][-1] == ("save", "Save result", str(tmp_path / "scans" / "old_restored.png"))


def test_a_recent_file_that_is_gone_leaves_the_recent_menu(make_window, make_photo, tmp_path, qtbot):
    window = make_window()
    kept, gone = tmp_path / "kept.png", tmp_path / "gone.png"
    for path in (kept, gone):
        write_photo(path, make_photo(16, 16))
        assert open_photo(qtbot, window, path)
    gone.unlink()
    [entry] = [a for a in window.recent_menu.actions() if a.text() == "gone.png"]
    entry.trigger()
    wait_for_files(qtbot, window)
    assert "gone.png" in window.last_error
    assert window.settings.recent_files() == [str(kept)]
    assert [a.text() for a in window.recent_menu.actions()][0] == "kept.png"


@pytest.mark.parametrize("size, outcome", [((32, 32), "same"), ((16, 16), "scaled"), ((32, 16), "refused")])
def test_importing_a_mask_of_another_size(window_with_photo, tmp_path, file_dialogs, qtbot, size, outcome):
    from gui.files import ops as file_ops

    window = window_with_photo(size=(32, 32))
    mask = np.zeros(size, np.uint8)
    mask[: size[0] // 2] = 255  # the top half
    file_ops.save_mask_file(mask, str(tmp_path / "mask.png"))
    file_dialogs["open"].append((str(tmp_path / "mask.png"), ""))
    window.act_import_mask.trigger()
    wait_for_files(qtbot, window)
    doc, status = window.document, window.statusBar().currentMessage()
    if outcome == "refused":
        assert not doc.mask.any() and "the mask is 16×32 pixels and the photo 32×32" in window.last_error
        return
    assert doc.mask[:16].all() and not doc.mask[16:].any()
    assert ("scaled from 16×16 to the photo's 32×32" in status) == (outcome == "scaled")


def test_opening_another_photo_clears_the_cursor_readout_and_the_run_message(window_with_photo, qtbot, tmp_path):
    window = window_with_photo(fake_restore(delay=10))
    start_run(qtbot, window, TaskSettings(colorize=True))
    window.runs.cancel()
    window.canvas.cursor_moved.emit(5, 5)  # the pointer over the photo
    assert window.statusBar().currentMessage() == "Cancelled" and window.status_cursor.text().startswith("x 5, y 5")

    write_photo(tmp_path / "next.png", np.zeros((16, 16, 3), np.float32))
    assert open_photo(qtbot, window, tmp_path / "next.png")
    assert window.status_cursor.text() == "", "the old photo's position and colour"
    assert window.statusBar().currentMessage() == "", "the old photo's run"
