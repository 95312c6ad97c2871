"""Small things a user saw: the status bar's sizes with an upscaled preview, stages in words, the
whole shortcuts list, a Models menu, Save as where the last result went, native file dialogs."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtWidgets import QTextBrowser

from engine.events import FinishedEvent, PlanEvent, StageEvent, WindowFinished, WindowStarted
from engine.geometry import Box
from gui.app import native_dialog_theme
from gui.dialogs import ShortcutsDialog
from gui.run.plan import TaskSettings
from window_helpers import open_photo, save_result, start_run, write_photo


def staged_restore(gate: threading.Event, stages, upscale: int = 1):
    """The engine's stages (held at the last one until ``gate``), then a result ``upscale`` times larger."""

    def restore(request, cancel):
        for i, name in enumerate(stages):
            yield StageEvent(name, i, len(stages))
        size = (64 * upscale, 64 * upscale)
        box = Box(0, 0, *size)
        yield PlanEvent(size, (box,), (0,))
        yield WindowStarted(0, box)
        gate.wait(10)
        yield WindowFinished(0, box, np.full(size + (3,), 0.5, np.float32))
        yield FinishedEvent(np.full(size + (3,), 0.5, np.float32), {"seconds": 1.0})

    return restore


def test_the_status_bar_shows_the_result_size_of_an_upscaled_preview(window_with_photo, qtbot):
    gate = threading.Event()
    window = window_with_photo(staged_restore(gate, ["restoring"], upscale=2))
    assert window.status_size.text() == "64 × 64 px"
    start_run(qtbot, window, TaskSettings(upscale=2))
    gate.set()
    qtbot.waitUntil(lambda: window.document.preview_finished, timeout=5000)
    assert window.status_size.text() == "64 × 64 px → result 128 × 128 px"
    window.runs.apply()
    assert window.status_size.text() == "128 × 128 px"


@pytest.mark.parametrize("stages, shown", [
    (["loading image", "loading model", "restoring"], "Step 3 of 3: restoring the photo, window by window"),
    (["HiR phase 1/2: global structure"], "Pass 1 of 2, the whole photo small: overall shapes and colours"),
])
def test_the_stages_of_a_run_are_said_in_words(window_with_photo, qtbot, stages, shown):
    gate = threading.Event()
    window = window_with_photo(staged_restore(gate, stages))
    start_run(qtbot, window, TaskSettings(colorize=True))
    label = window.panel.stage_label
    qtbot.waitUntil(lambda: label.text() == shown, timeout=5000)
    assert "reads the photo, loads the model, then restores the photo window by window" in label.toolTip()
    gate.set()
    assert window.runs.wait_idle()


def test_the_shortcuts_list_shows_every_line(qtbot):
    dialog = ShortcutsDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    view = dialog.findChild(QTextBrowser)
    assert view.verticalScrollBar().maximum() == 0, "the last line is not below the fold"


def test_models_have_a_menu_of_their_own(make_window):
    window = make_window()
    menus = {m.title().replace("&", ""): m for m in (a.menu() for a in window.menuBar().actions()) if m}
    assert window.act_models in menus["Models"].actions()
    assert window.act_models not in menus["Run"].actions()


def test_save_as_starts_where_the_last_result_was_saved(window_with_photo, make_photo, tmp_path, qtbot,
                                                         file_dialogs):
    window = window_with_photo()
    (tmp_path / "restored").mkdir()
    (tmp_path / "scans").mkdir()
    assert save_result(qtbot, window, tmp_path / "restored" / "first.png")
    write_photo(tmp_path / "scans" / "old.png", make_photo(16, 16))
    assert open_photo(qtbot, window, tmp_path / "scans" / "old.png")
    window.save_as()
    assert file_dialogs["calls"][-1] == ("save", "Save result", str(tmp_path / "restored" / "old_restored.png"))


@pytest.mark.parametrize("environ, platform, theme", [
    ({"XDG_CURRENT_DESKTOP": "KDE"}, "linux", "xdgdesktopportal"),  # Qt's KDE theme has no file dialogs
    ({"XDG_CURRENT_DESKTOP": "sway"}, "linux", "xdgdesktopportal"),
    ({"XDG_CURRENT_DESKTOP": "ubuntu:GNOME"}, "linux", None),  # the gtk3 theme has them
    ({"XDG_CURRENT_DESKTOP": "KDE", "QT_QPA_PLATFORMTHEME": "qt6ct"}, "linux", None),  # the user's choice
    ({}, "linux", None),
    ({"XDG_CURRENT_DESKTOP": "KDE"}, "win32", None),
])
def test_file_dialogs_are_the_desktops_own(environ, platform, theme):
    assert native_dialog_theme(environ, platform) == theme
