"""The app does what a user obviously means: painting a mask ticks Fill, the red mask overlay
steps aside over a finished result and in the compare view, the compare split starts in the
middle for another photo, and Continue does not look like a trash can."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication, QMessageBox, QProxyStyle, QStyle

from gui.run.plan import TaskSettings
from window_helpers import fake_restore, open_photo, paint, start_run, write_photo


def test_painting_a_mask_ticks_fill_and_unticking_stays_possible(window_with_photo, qtbot):
    window = window_with_photo()
    panel = window.panel
    panel.set_settings(TaskSettings(colorize=True))
    window.act_eraser.setChecked(True)
    paint(qtbot, window, [(20, 20), (60, 20)])
    assert not panel.inpaint.isChecked(), "erasing marks nothing"
    window.act_brush.setChecked(True)
    paint(qtbot, window, [(20, 20), (60, 20)])
    assert panel.inpaint.isChecked() and panel.settings().colorize, "painting says: fill this"
    panel.inpaint.setChecked(False)
    paint(qtbot, window, [(20, 60), (60, 60)])
    assert not panel.inpaint.isChecked(), "unticked by the user: more strokes leave it so"
    window.act_clear_mask.trigger()
    paint(qtbot, window, [(20, 60), (60, 60)])
    assert panel.inpaint.isChecked(), "a new mask after Clear says it again"


def test_the_mask_overlay_steps_aside_over_a_finished_result_and_in_the_compare_view(window_with_photo, qtbot):
    window = window_with_photo(fake_restore())
    paint(qtbot, window, [(20, 20), (60, 20)])
    canvas, show = window.canvas, window.act_show_mask
    assert canvas.mask_visible
    start_run(qtbot, window, TaskSettings(inpaint=True, colorize=True))
    assert canvas.mask_visible, "during the run it shows what is being filled"
    qtbot.waitUntil(lambda: window.document.preview_finished and not window.runs.running, timeout=5000)
    assert not canvas.mask_visible and not show.isChecked(), "hidden over the finished result"
    show.trigger()  # M
    assert canvas.mask_visible, "M still shows it"
    show.trigger()
    window.runs.discard()
    assert canvas.mask_visible and show.isChecked(), "as it was once the result is gone"
    window.act_compare.setChecked(True)
    assert not canvas.mask_visible, "hidden in the compare view"
    show.trigger()
    assert canvas.mask_visible, "M still shows it"
    window.act_compare.setChecked(False)
    assert canvas.mask_visible
    show.trigger()  # the user hides it: comparing leaves it hidden
    window.act_compare.setChecked(True)
    window.act_compare.setChecked(False)
    assert not canvas.mask_visible and not show.isChecked()


def test_the_compare_split_starts_in_the_middle_for_another_photo(window_with_photo, make_photo, tmp_path, qtbot):
    window = window_with_photo()
    window.act_compare.setChecked(True)
    canvas = window.canvas
    canvas.compare.drag_to(canvas.width() * 0.2, canvas.width())
    assert canvas.compare.split == pytest.approx(0.2)
    write_photo(tmp_path / "other.png", make_photo(48, 48, seed=3))
    assert open_photo(qtbot, window, tmp_path / "other.png")
    assert canvas.compare.split == 0.5


class IconButtons(QProxyStyle):
    """A desktop style whose dialog buttons carry icons (KDE, GNOME): Discard gets a trash can."""

    def styleHint(self, hint, *args):
        return 1 if hint == QStyle.SH_DialogButtonBox_ButtonsHaveIcons else super().styleHint(hint, *args)


def test_continue_is_not_a_trash_can(window_with_photo, qtbot):
    window = window_with_photo(fake_restore(delay=2.0))
    start_run(qtbot, window, TaskSettings(colorize=True))
    qtbot.waitUntil(lambda: window.runs.windows_finished == 1, timeout=3000)
    window.act_cancel.trigger()
    assert window.runs.wait_idle(3000)
    app = QApplication.instance()
    style = app.style().name()
    app.setStyle(IconButtons("Fusion"))
    try:
        box, answers = window.pending_result_box()
        qtbot.addWidget(box)
        go_on = next(b for b, answer in answers.items() if answer == "discard")
        assert go_on.text() == "Continue" and box.defaultButton() is go_on
        trash = app.style().standardIcon(QStyle.SP_DialogDiscardButton)
        assert go_on.icon().cacheKey() != trash.cacheKey() and not go_on.icon().isNull()
        assert box.buttonRole(go_on) != QMessageBox.DestructiveRole
    finally:
        app.setStyle(style or "Fusion")
