"""Unsaved work is never lost silently, and Save writes what the canvas shows: the finished
result, the windows kept after Cancel, or the windows finished when a running restoration is
stopped to close the window or open another photo."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QCloseEvent, QDropEvent, QGuiApplication, QImage

from engine.geometry import Box
from gui.run.plan import TaskSettings
from window_helpers import fake_restore, open_photo, paint, save_result, start_run, wait_for_files, write_photo

BIG_BOXES = (Box(0, 0, 64, 64), Box(0, 64, 64, 64), Box(64, 0, 64, 64), Box(64, 64, 64, 64))


def read_png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.float32) / 255


def start_slow_upscale(qtbot, window) -> None:
    """An ×2 run whose first window finishes at once and whose second takes 2 s."""
    start_run(qtbot, window, TaskSettings(upscale=2))
    qtbot.waitUntil(lambda: window.runs.windows_finished == 1, timeout=3000)


def test_unsaved_result_is_never_lost_silently(window_with_photo, qtbot, tmp_path, save_prompt_answers):
    window = window_with_photo(fake_restore())
    start_run(qtbot, window, TaskSettings(colorize=True, model="test-tiny"))
    qtbot.waitUntil(lambda: not window.runs.running, timeout=5000)
    assert window.has_unsaved_work(), "a finished, unsaved result"

    save_prompt_answers["answers"].append("cancel")
    other = tmp_path / "other.png"
    write_photo(other, np.zeros((16, 16, 3), np.float32))
    assert not open_photo(qtbot, window, other), "Cancel keeps the current photo and its result"
    assert window.document.preview is not None and window.document.size == (64, 64)

    save_prompt_answers["answers"].append("cancel")
    event = QCloseEvent()
    window.closeEvent(event)
    assert not event.isAccepted() and save_prompt_answers["asked"] == ["opening another photo", "closing"]

    assert save_result(qtbot, window, tmp_path / "restored.png")
    assert not window.has_unsaved_work()
    window.panel.apply_button.click()
    assert not window.has_unsaved_work(), "applying the saved result: nothing new to save"
    window.document.undo_stack.undo()
    assert not window.has_unsaved_work(), "back to the photo as opened, which is on disk"
    window.document.undo_stack.redo()
    assert not window.has_unsaved_work(), "redo brings back the saved pixels"

    asked = len(save_prompt_answers["asked"])
    assert open_photo(qtbot, window, other) and window.document.size == (16, 16)
    assert len(save_prompt_answers["asked"]) == asked, "nothing unsaved: no question"


def test_closing_during_a_run_can_save_the_finished_windows(window_with_photo, qtbot, tmp_path,
                                                            save_prompt_answers, file_dialogs):
    window = window_with_photo(fake_restore(delay=2.0, boxes=BIG_BOXES, size=(128, 128)))
    start_slow_upscale(qtbot, window)
    assert "1 window finished so far" in window.save_question("closing").text
    out = tmp_path / "partial.png"
    save_prompt_answers["answers"].append("save")
    file_dialogs["save"].append((str(out), "PNG (*.png)"))
    assert not window.close() and not window.runs.running, "the window waits while the result is saved"
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    saved = read_png(out)
    assert saved.shape == (128, 128, 3), "the result's size, not the photo's"
    assert np.allclose(saved[:64, :64], 0.25, atol=1 / 255), "the finished window"
    assert not np.allclose(saved[64:, 64:], 0.25, atol=0.02), "unfinished windows: the upscaled photo"


def test_stopping_a_run_with_nothing_finished_offers_no_save(make_window, make_photo, tmp_path,
                                                             save_prompt_answers, file_dialogs, qtbot):
    window = make_window(fake_restore(delay=2.0, boxes=BIG_BOXES, size=(128, 128)))
    write_photo(tmp_path / "a.png", make_photo(64, 64))
    assert open_photo(qtbot, window, tmp_path / "a.png")
    start_run(qtbot, window, TaskSettings(upscale=2))
    question = window.save_question("closing")
    assert question.save == "" and question.discard == "Stop" and "no window has finished" in question.text
    save_prompt_answers["answers"].append("save")  # even if asked to save: the input is never written
    assert window.close() and not window.runs.running
    assert not file_dialogs["calls"] and not list(tmp_path.glob("*_restored*"))


def test_save_after_cancel_writes_the_kept_windows(window_with_photo, qtbot, tmp_path, file_dialogs):
    window = window_with_photo(fake_restore(delay=2.0, boxes=BIG_BOXES, size=(128, 128)))
    start_slow_upscale(qtbot, window)
    assert not window.act_save.isEnabled() and not window.save(), "nothing is saved while a run paints"
    assert not file_dialogs["calls"]
    window.act_cancel.trigger()
    assert window.act_save.isEnabled() and window.has_unsaved_work()
    out = tmp_path / "kept.png"
    file_dialogs["save"].append((str(out), "PNG (*.png)"))
    window.act_save.trigger()
    wait_for_files(qtbot, window)
    saved = read_png(out)
    assert saved.shape == (128, 128, 3) and np.allclose(saved[:64, :64], 0.25, atol=1 / 255)
    assert not window.has_unsaved_work()
    assert window.runs.wait_idle(3000)



def paste_image(window, image: QImage) -> None:
    QGuiApplication.clipboard().setImage(image)
    window.paste()


def drop_image(window, image: QImage) -> None:
    mime = QMimeData()
    mime.setImageData(image)
    window.dropEvent(QDropEvent(QPointF(5, 5), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))


@pytest.mark.parametrize("bring_in", [paste_image, drop_image])
def test_a_pasted_or_dropped_photo_stops_the_run(window_with_photo, qtbot, save_prompt_answers, bring_in):
    window = window_with_photo(fake_restore(delay=2.0))
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: window.runs.windows_finished == 1, timeout=3000)
    image = QImage(30, 20, QImage.Format_RGB32)
    image.fill(0xFF336699)
    bring_in(window, image)
    assert save_prompt_answers["asked"] == ["pasting another photo" if bring_in is paste_image
                                            else "opening another photo"]
    assert not window.runs.running and window.runs.wait_idle(3000)
    qtbot.wait(50)  # late events of the stopped run would arrive now
    doc = window.document
    assert doc.size == (20, 30) and doc.preview is None and not window.panel.apply_button.isEnabled()


def test_a_painted_mask_is_not_lost_without_a_question(window_with_photo, qtbot, tmp_path,
                                                       save_prompt_answers, file_dialogs):
    window = window_with_photo(fake_restore())
    paint(qtbot, window, [(20, 20), (60, 20)])
    assert window.has_unsaved_work() and not window.result_unsaved()
    question = window.save_question("closing")
    assert "mask you painted would be lost" in question.text and question.save == "Export mask…"

    other = tmp_path / "other.png"
    write_photo(other, np.zeros((16, 16, 3), np.float32))
    save_prompt_answers["answers"].append("cancel")
    assert not open_photo(qtbot, window, other) and window.document.mask.any()

    exported = tmp_path / "scratches.png"
    save_prompt_answers["answers"].append("save")
    file_dialogs["save"].append((str(exported), "PNG (*.png)"))
    assert not window.close(), "the window waits while the mask is exported"
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    with Image.open(exported) as im:
        assert np.array_equal(np.asarray(im.convert("L")) > 127, window.document.mask > 127)
    assert not window.has_unsaved_work(), "exported: nothing to lose"
    assert save_prompt_answers["asked"] == ["opening another photo", "closing"]


def test_saving_a_result_keeps_the_mask_question_quiet(window_with_photo, qtbot, tmp_path):
    window = window_with_photo(fake_restore())
    paint(qtbot, window, [(20, 20), (60, 20)])
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: not window.runs.running, timeout=5000)
    assert "mask you painted would be lost too" in window.save_question("closing").text
    assert save_result(qtbot, window, tmp_path / "restored.png")
    assert not window.has_unsaved_work()
    paint(qtbot, window, [(20, 100), (60, 100)])
    assert window.mask_unsaved(), "a new stroke after saving"


def recording(restore, requests: list):
    def run(request, cancel):
        requests.append(request)
        return restore(request, cancel)

    return run


@pytest.mark.parametrize("answer", ["apply", "discard", "cancel"])
def test_restore_again_asks_about_the_unsaved_result(window_with_photo, qtbot, save_prompt_answers, answer):
    requests = []
    window = window_with_photo(recording(fake_restore(), requests))
    photo = window.document.image
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: not window.runs.running, timeout=5000)
    first = window.document.preview
    save_prompt_answers["pending"].append(answer)
    window.act_restore.trigger()
    assert save_prompt_answers["asked"] == ["restore"]
    if answer == "cancel":
        assert not window.runs.running and window.document.preview is first and len(requests) == 1
        return
    qtbot.waitUntil(lambda: len(requests) == 2 and not window.runs.running, timeout=5000)
    start = first if answer == "apply" else photo
    assert np.array_equal(requests[1].image, start), "Apply: the new run starts from the result"
    window.document.undo_stack.undo()
    assert window.document.image is photo, "the applied result is one undo step"


def test_restore_again_after_saving_the_result_asks_nothing(window_with_photo, qtbot, tmp_path, save_prompt_answers):
    window = window_with_photo(fake_restore())
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: not window.runs.running, timeout=5000)
    assert save_result(qtbot, window, tmp_path / "first.png")
    window.act_restore.trigger()
    assert window.runs.running and save_prompt_answers["asked"] == []
    assert window.runs.wait_idle(3000)


def test_save_reuses_the_format_options_chosen_in_save_as(window_with_photo, qtbot, tmp_path, file_dialogs,
                                                          monkeypatch):
    from gui.files import ops as file_ops

    calls = []
    real = file_ops.save_photo
    monkeypatch.setattr(file_ops, "save_photo", lambda path, pixels, like=None, quality=95, bit_depth=None: (
        calls.append((path, quality, bit_depth)), real(path, pixels, like, quality, bit_depth))[1])
    window = window_with_photo(fake_restore())
    jpeg, tiff = str(tmp_path / "out.jpg"), str(tmp_path / "out.tif")
    file_dialogs["save"] += [(jpeg, "JPEG (*.jpg *.jpeg)"), (tiff, "TIFF 16-bit (*.tif *.tiff)")]
    file_dialogs["int"].append((60, True))
    for action in (window.act_save_as, window.act_save, window.act_save_as, window.act_save):
        action.trigger()
        wait_for_files(qtbot, window)
    assert calls == [(jpeg, 60, 8), (jpeg, 60, 8), (tiff, 60, 16), (tiff, 60, 16)]


def test_the_title_star_shows_what_closing_would_ask_about(window_with_photo, qtbot, tmp_path):
    """The title's ``*`` is the unsaved-work question's decision: a finished result not saved has
    it (the undo history has no step for it) and a save takes it away; a painted mask has it,
    still after the result of a run is discarded."""
    window = window_with_photo(fake_restore())

    def starred() -> bool:
        assert window.has_unsaved_work() == window.windowTitle().startswith("photo.png*"), window.windowTitle()
        return window.has_unsaved_work()

    assert not starred()
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: not window.runs.running, timeout=5000)
    assert starred(), "a finished result, not saved"
    assert save_result(qtbot, window, tmp_path / "restored.png")
    assert not window.windowTitle().startswith("restored.png*") and not window.has_unsaved_work()

    paint(qtbot, window, [(20, 20), (60, 20)])
    assert "*" in window.windowTitle(), "a painted mask"
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: not window.runs.running, timeout=5000)
    window.runs.discard()
    assert "*" in window.windowTitle() and window.has_unsaved_work(), "the mask is still not saved"
