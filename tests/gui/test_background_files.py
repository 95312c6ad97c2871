"""Photos and masks are read and written in the background: the window keeps working and says
what it is doing, file work that would conflict waits, the latest photo opened wins, and no work
is lost (a save that fails, closing while saving). A save writes what was shown when Save was
pressed. Each test holds the file work in its thread (window_helpers.Held) and drives the window
meanwhile."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication

from engine.geometry import Box
from gui.files import ops as file_ops
from gui.run.plan import TaskSettings
from gui.run.worker import live_threads
from window_helpers import Held, fake_restore, open_photo, paint, save_result, start_run, wait_for_files, write_photo


def read_png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.float32) / 255


def busy_cursor_shown() -> bool:
    cursor = QApplication.overrideCursor()
    return cursor is not None and cursor.shape() == Qt.BusyCursor


def finished_result(qtbot, window, settings: TaskSettings = TaskSettings(colorize=True)) -> np.ndarray:
    start_run(qtbot, window, settings)
    qtbot.waitUntil(lambda: window.document.preview_finished, timeout=5000)
    return window.document.preview.copy()


def full_disk(*_args, **_kwargs):
    raise OSError(28, "No space left on device")


@pytest.fixture
def held(monkeypatch):
    """held(name, ...) replaces file_ops.<name> by a Held wrapper of it (or of ``function``); all
    are released when the test ends, so a failing test leaves no thread waiting."""
    wrappers = []

    def hold(name: str, function=None, when=lambda *args: True) -> Held:
        wrappers.append(Held(function or getattr(file_ops, name), when))
        monkeypatch.setattr(file_ops, name, wrappers[-1])
        return wrappers[-1]

    yield hold
    for wrapper in wrappers:
        wrapper.release.set()


def test_a_save_runs_in_the_background_and_counts_once_written(window_with_photo, qtbot, tmp_path, held,
                                                               save_prompt_answers):
    window = window_with_photo(fake_restore())
    saving = held("save_photo")
    result = finished_result(qtbot, window)
    out = tmp_path / "restored.png"
    assert window.save_to(str(out)) and saving.entered.wait(5)
    assert window.statusBar().currentMessage() == "Saving restored.png…" and busy_cursor_shown()
    assert not any(a.isEnabled() for a in (window.act_save, window.act_save_as, window.act_restore,
                                           window.act_export_mask, window.act_import_mask))
    assert not window.panel.restore_button.isEnabled()
    assert "Saving restored.png… Restore waits for it to finish." in window.panel.problem_label.text()
    assert not window.restore() and save_prompt_answers["asked"] == [], "Restore waits, without a question"
    paint(qtbot, window, [(20, 20), (60, 20)])  # the window keeps working
    assert window.document.mask.any()
    assert window.result_unsaved() and not out.exists(), "saved only once the file is written"

    saving.release.set()
    wait_for_files(qtbot, window)
    assert np.allclose(read_png(out), result, atol=1 / 255)
    assert not window.result_unsaved()
    assert window.mask_unsaved(), "the mask saved with the result was empty: the stroke made meanwhile is new work"
    assert window.windowTitle().startswith("photo.png*"), "changed since Save was pressed"
    assert window.statusBar().currentMessage() == f"Saved {out}" and QApplication.overrideCursor() is None
    assert window.act_save.isEnabled() and window.panel.restore_button.isEnabled()


def test_a_save_writes_what_was_shown_when_save_was_pressed(window_with_photo, qtbot, tmp_path, held):
    window = window_with_photo(fake_restore())
    saving = held("save_photo")
    paint(qtbot, window, [(20, 20), (60, 20)])
    result = finished_result(qtbot, window)
    out = tmp_path / "restored.png"
    assert window.save_to(str(out)) and saving.entered.wait(5)
    assert window.windowTitle().startswith("photo.png*")
    window.act_discard.trigger()  # the canvas shows the photo again
    assert window.document.preview is None
    saving.release.set()
    wait_for_files(qtbot, window)
    assert np.allclose(read_png(out), result, atol=1 / 255), "the result, not the photo shown now"
    assert not window.has_unsaved_work(), "the mask painted for the saved result is done with"
    assert window.windowTitle().startswith("photo.png —"), "saved"


def test_an_exported_mask_is_the_mask_when_export_was_pressed(window_with_photo, qtbot, tmp_path, held,
                                                             file_dialogs):
    window = window_with_photo()
    exporting = held("save_mask_file")
    paint(qtbot, window, [(20, 20), (60, 20)])
    exported = window.document.mask.copy()
    file_dialogs["save"].append((str(tmp_path / "mask.png"), "PNG (*.png)"))
    assert window.export_mask() and exporting.entered.wait(5)
    assert window.statusBar().currentMessage() == "Exporting the mask to mask.png…"
    paint(qtbot, window, [(20, 100), (60, 100)])  # painted into the document's mask, in place
    exporting.release.set()
    wait_for_files(qtbot, window)
    with Image.open(tmp_path / "mask.png") as im:
        assert np.array_equal(np.asarray(im), exported)
    assert window.mask_unsaved(), "the second stroke is not in the file"
    window.document.undo_stack.undo()
    assert not window.mask_unsaved(), "back to the exported mask"


def test_a_failed_save_gives_the_error_and_keeps_the_work_unsaved(window_with_photo, qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(file_ops, "save_photo", full_disk)
    window = window_with_photo(fake_restore())
    finished_result(qtbot, window)
    assert not save_result(qtbot, window, tmp_path / "restored.png")
    assert window.last_error == "Cannot save restored.png: [Errno 28] No space left on device"
    assert window.result_unsaved() and window.save_target is None and QApplication.overrideCursor() is None


@pytest.mark.parametrize("fails", [False, True])
def test_closing_while_saving_waits_for_the_file(window_with_photo, qtbot, tmp_path, held, save_prompt_answers, fails):
    window = window_with_photo(fake_restore())
    saving = held("save_photo", full_disk if fails else None)
    result = finished_result(qtbot, window)
    out = tmp_path / "restored.png"
    assert window.save_to(str(out)) and saving.entered.wait(5)
    assert not window.close() and window.isVisible()
    assert window.statusBar().currentMessage() == ("Saving restored.png… The window closes once the file is "
                                                   "written.")
    assert save_prompt_answers["asked"] == [], "nothing to ask: the result is being saved"
    saving.release.set()
    if fails:  # the window stays, with the error, and the result is still unsaved
        wait_for_files(qtbot, window)
        qtbot.wait(50)  # a close would happen now
        assert window.isVisible() and window.last_error.startswith("Cannot save restored.png")
        assert window.result_unsaved() and window.close() and save_prompt_answers["asked"] == ["closing"]
    else:
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
        assert np.allclose(read_png(out), result, atol=1 / 255)


@pytest.mark.parametrize("fails", [False, True])
def test_saving_before_opening_another_photo_opens_it_once_saved(window_with_photo, qtbot, tmp_path, held,
                                                                 save_prompt_answers, file_dialogs, fails):
    window = window_with_photo(fake_restore())
    saving = held("save_photo", full_disk if fails else None)
    result = finished_result(qtbot, window)
    other, out = tmp_path / "other.png", tmp_path / "restored.png"
    write_photo(other, np.zeros((16, 16, 3), np.float32))
    save_prompt_answers["answers"].append("save")
    file_dialogs["save"].append((str(out), "PNG (*.png)"))
    assert window.open_path(str(other))
    qtbot.waitUntil(saving.entered.is_set, timeout=5000)  # read, asked about, and saving the result first
    assert save_prompt_answers["asked"] == ["opening another photo"]
    assert window.document.size == (64, 64) and window.document.preview is not None, "the photo waits for the save"
    saving.release.set()
    wait_for_files(qtbot, window)
    if fails:
        assert window.last_error.startswith("Cannot save restored.png")
        assert window.document.size == (64, 64) and window.result_unsaved(), "nothing lost"
    else:
        assert window.document.path == str(other) and np.allclose(read_png(out), result, atol=1 / 255)


@pytest.mark.parametrize("then", ["open", "paste"])
def test_the_photo_opened_last_wins(make_window, make_photo, tmp_path, qtbot, held, then):
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    write_photo(first, make_photo(30, 40))
    write_photo(second, make_photo(20, 28))
    reading = held("load_photo", when=lambda path: path.endswith("first.png"))
    window = make_window()
    assert window.open_path(str(first)) and reading.entered.wait(5)
    assert window.statusBar().currentMessage() == "Opening first.png…" and busy_cursor_shown()
    if then == "open":
        assert open_photo(qtbot, window, second)
    else:
        QGuiApplication.clipboard().setImage(QImage(str(second)))
        window.paste()
    reading.release.set()
    qtbot.waitUntil(lambda: not live_threads(), timeout=5000)  # the first photo would arrive before this
    assert window.document.size == (20, 28) and QApplication.overrideCursor() is None
    assert window.settings.recent_files() == ([str(second)] if then == "open" else [])


def file_url(path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    return mime


def drop_url(window, path) -> None:
    mime = file_url(path)  # the event does not own it
    window.dropEvent(QDropEvent(QPointF(5, 5), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))


def paste_url(window, path) -> None:
    QGuiApplication.clipboard().setMimeData(file_url(path))
    window.paste()


def open_recent(window, path) -> None:
    window.settings.add_recent_file(str(path))
    window._update_recent_menu()
    [entry] = [a for a in window.recent_menu.actions() if a.text() == path.name]
    entry.trigger()


def open_with_dialog(window, path, file_dialogs) -> None:
    file_dialogs["open"].append((str(path), ""))
    window.act_open.trigger()


@pytest.mark.parametrize("bring_in", [open_with_dialog, drop_url, paste_url, open_recent])
def test_every_way_of_opening_a_file_reads_it_in_the_background(make_window, make_photo, tmp_path, qtbot, held,
                                                                file_dialogs, bring_in):
    path = tmp_path / "scan.png"
    write_photo(path, make_photo(20, 28))
    reading = held("load_photo")
    window = make_window()
    bring_in(window, path, *([file_dialogs] if bring_in is open_with_dialog else []))
    assert reading.entered.wait(5) and window.files.kind == "photo" and not window.document.has_image
    reading.release.set()
    wait_for_files(qtbot, window)
    assert window.document.path == str(path) and window.document.size == (20, 28)


def test_opening_waits_for_a_save_and_saving_for_an_open(window_with_photo, qtbot, tmp_path, held, file_dialogs):
    window = window_with_photo(fake_restore())
    saving = held("save_photo")
    finished_result(qtbot, window)
    other = tmp_path / "other.png"
    write_photo(other, np.zeros((16, 16, 3), np.float32))
    assert window.save_to(str(tmp_path / "restored.png")) and saving.entered.wait(5)
    assert not window.act_open.isEnabled() and not window.act_paste.isEnabled()
    assert not window.open_path(str(other))
    assert window.statusBar().currentMessage() == "Saving restored.png… Wait for it to finish."
    image = QImage(30, 20, QImage.Format_RGB32)
    image.fill(0xFF336699)
    QGuiApplication.clipboard().setImage(image)
    window.paste()
    assert window.document.size == (64, 64), "neither an opened nor a pasted photo replaces one being saved"
    saving.release.set()
    wait_for_files(qtbot, window)

    reading = held("load_photo")
    assert window.open_path(str(other)) and reading.entered.wait(5)
    assert not window.act_save.isEnabled() and not window.save_to(str(tmp_path / "again.png"))
    assert not window.act_import_mask.isEnabled() and not window.export_mask() and not file_dialogs["calls"]
    assert window.statusBar().currentMessage() == "Opening other.png… Wait for it to finish."
    reading.release.set()
    wait_for_files(qtbot, window)
    assert window.document.path == str(other) and not (tmp_path / "again.png").exists()


def test_closing_while_a_photo_is_read_closes_at_once(window_with_photo, tmp_path, qtbot, held):
    window = window_with_photo()
    reading = held("load_photo")
    write_photo(tmp_path / "other.png", np.zeros((16, 16, 3), np.float32))
    assert window.open_path(str(tmp_path / "other.png")) and reading.entered.wait(5)
    assert window.close() and QApplication.overrideCursor() is None
    reading.release.set()
    qtbot.waitUntil(lambda: not live_threads(), timeout=5000)
    assert window.document.size == (64, 64)


@pytest.mark.parametrize("apply_meanwhile", [False, True])
def test_a_mask_is_read_in_the_background(window_with_photo, qtbot, tmp_path, held, file_dialogs, apply_meanwhile):
    boxes = (Box(0, 0, 64, 64), Box(0, 64, 64, 64), Box(64, 0, 64, 64), Box(64, 64, 64, 64))
    window = window_with_photo(fake_restore(boxes=boxes, size=(128, 128)))
    reading = held("load_mask_file")
    mask = np.zeros((64, 64), np.uint8)
    mask[:32] = 255  # the top half
    file_ops.save_mask_file(mask, str(tmp_path / "mask.png"))
    if apply_meanwhile:
        finished_result(qtbot, window, TaskSettings(upscale=2))
    file_dialogs["open"].append((str(tmp_path / "mask.png"), ""))
    window.act_import_mask.trigger()
    assert reading.entered.wait(5) and busy_cursor_shown()
    assert window.statusBar().currentMessage() == "Reading the mask mask.png…"
    if apply_meanwhile:
        window.act_apply.trigger()  # the photo is 128×128 now: the mask read for 64×64 no longer fits
    reading.release.set()
    wait_for_files(qtbot, window)
    doc = window.document
    if apply_meanwhile:
        assert not doc.mask.any() and "the photo changed size while the mask was read" in window.last_error
    else:
        assert doc.mask[:32].all() and not doc.mask[32:].any() and not window.mask_unsaved()


def test_a_background_task_lets_go_of_its_work_once_run(qtbot):
    """A task object may be kept (the model-file check keeps its last): the data its work holds,
    such as the scan a save writes, is freed once the work has run."""
    import gc
    import weakref

    from gui.background import BackgroundTask

    snapshot = np.zeros((64, 64, 3), np.float32)
    freed = weakref.ref(snapshot)
    task = BackgroundTask(lambda _progress, _cancel, pixels=snapshot: pixels.shape, busy=True)
    del snapshot
    with qtbot.waitSignal(task.succeeded) as outcome:
        task.start()
    qtbot.waitUntil(lambda: not live_threads(), timeout=5000)
    gc.collect()
    assert outcome.args == [(64, 64, 3)] and freed() is None and QApplication.overrideCursor() is None


@pytest.mark.parametrize("budget", [None, 1])  # 1: each push drops every older step
def test_an_undo_and_a_stroke_made_while_saving_leave_the_document_modified(window_with_photo, qtbot, tmp_path,
                                                                            held, budget):
    window = window_with_photo(fake_restore())
    if budget is not None:
        window.document.undo_stack.budget = budget
    saving = held("save_photo")
    paint(qtbot, window, [(20, 20), (60, 20)])
    assert window.save_to(str(tmp_path / "restored.png")) and saving.entered.wait(5)
    window.act_undo.trigger()
    paint(qtbot, window, [(100, 100), (140, 120)])  # back at as many steps as when Save was pressed
    saving.release.set()
    wait_for_files(qtbot, window)
    assert window.document.modified and window.windowTitle().startswith("photo.png*"), \
        "the history changed while saving: what it shows now is not what was saved"


@pytest.mark.parametrize("arriving", ["photo", "mask"])
def test_a_file_read_while_a_stroke_is_painted_ends_the_stroke(window_with_photo, qtbot, tmp_path, held, file_dialogs,
                                                               arriving):
    window = window_with_photo()
    doc, canvas = window.document, window.canvas
    if arriving == "photo":
        reading = held("load_photo")
        write_photo(tmp_path / "small.png", np.zeros((8, 8, 3), np.float32))
        assert window.open_path(str(tmp_path / "small.png"))
    else:
        reading = held("load_mask_file")
        file_ops.save_mask_file(np.where(np.arange(64) < 16, 255, 0).astype(np.uint8)[None].repeat(64, 0),
                                str(tmp_path / "mask.png"))
        file_dialogs["open"].append((str(tmp_path / "mask.png"), ""))
        window.act_import_mask.trigger()
    assert reading.entered.wait(5)
    canvas.set_zoom(4.0)
    canvas.offset = QPointF(0, 0)
    canvas.set_brush_radius(3)
    qtbot.mousePress(canvas, Qt.LeftButton, pos=QPoint(20, 20))
    qtbot.mouseMove(canvas, QPoint(40, 20))
    reading.release.set()
    wait_for_files(qtbot, window)  # it arrives mid-stroke
    arrived = doc.mask.copy()
    qtbot.mouseMove(canvas, QPoint(60, 30))  # on the old photo's mask: beyond this 8×8 one
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=QPoint(60, 30))
    assert np.array_equal(doc.mask, arrived), "the stroke ended when the file arrived"
    if arriving == "photo":
        assert doc.size == (8, 8) and not doc.mask.any() and doc.undo_stack.count() == 0
    else:
        assert doc.undo_stack.count() == 1 and doc.undo_stack.undoText() == "Import mask"
        doc.undo_stack.undo()
        assert doc.mask[5, 5:10].all() and not doc.mask[:, 16:].any(), "before the import: what the stroke painted"
