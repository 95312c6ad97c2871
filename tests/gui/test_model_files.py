"""Choosing a model file in the main window: the checkpoint is read off the GUI thread (an
official file is 2 GB), the window shows it is busy, a stale check never wins, and closing the
window in the middle neither blocks nor crashes."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from engine.errors import ModelFileError
from gui.main_window import MainWindow
from gui.panels.task_panel import ModelChoice
from gui.run.worker import live_threads
from window_helpers import open_dialogs


class SlowCheck:
    """Stands in for MainWindow.model_file_choice: files named ``slow*`` block until
    :attr:`release` is set, as reading a large checkpoint does; ``bad*`` files are refused."""

    def __init__(self):
        self.entered, self.release, self.finished = threading.Event(), threading.Event(), threading.Event()
        self.threads: list[int] = []

    def __call__(self, path: str) -> ModelChoice:
        self.threads.append(threading.get_ident())
        name = path.rsplit("/", 1)[-1]
        try:
            if name.startswith("slow"):
                self.entered.set()
                self.release.wait(10)
            if name.startswith("bad"):
                raise ModelFileError(f"{name} is not a supported model")
            return ModelChoice(path, name, f"Checkpoint file (adm, 256 px window): {path}")
        finally:
            if name.startswith("slow"):
                self.finished.set()


@pytest.fixture
def slow_check(monkeypatch):
    check = SlowCheck()
    monkeypatch.setattr(MainWindow, "model_file_choice", staticmethod(check))
    yield check
    check.release.set()


def choose(window, file_dialogs, path: str) -> None:
    file_dialogs["open"].append((path, ""))
    window.choose_model_file()


def test_the_check_runs_in_the_background_and_the_window_shows_it(make_window, file_dialogs, slow_check, qtbot):
    window = make_window()
    choose(window, file_dialogs, "/models/slow.pt")
    assert slow_check.entered.wait(5) and not slow_check.finished.is_set(), "choosing returned during the check"
    assert slow_check.threads and threading.get_ident() not in slow_check.threads
    assert window.panel.settings().model == "test-tiny", "nothing is chosen before the file is checked"
    assert "Checking the model file slow.pt" in window.statusBar().currentMessage()
    assert QApplication.overrideCursor().shape() == Qt.BusyCursor
    slow_check.release.set()
    qtbot.waitUntil(lambda: window.panel.settings().model == "/models/slow.pt", timeout=5000)
    assert QApplication.overrideCursor() is None and "is ready" in window.statusBar().currentMessage()


def test_a_refused_file_ends_the_busy_state_with_a_message(make_window, file_dialogs, slow_check, qtbot):
    window = make_window()
    window.interactive = True  # the error dialog opens as in the app (without blocking)
    choose(window, file_dialogs, "/models/bad.pt")
    qtbot.waitUntil(lambda: bool(open_dialogs(window)), timeout=5000)
    assert open_dialogs(window) == [("Cannot use this model file", "bad.pt is not a supported model")]
    assert QApplication.overrideCursor() is None and window.panel.settings().model == "test-tiny"


def test_a_file_chosen_later_wins_over_a_check_still_running(make_window, file_dialogs, slow_check, qtbot):
    window = make_window()
    window.interactive = True
    choose(window, file_dialogs, "/models/slow.pt")
    assert slow_check.entered.wait(5)
    choose(window, file_dialogs, "/models/quick.pt")
    qtbot.waitUntil(lambda: window.panel.settings().model == "/models/quick.pt", timeout=5000)
    assert QApplication.overrideCursor() is None, "one busy cursor, ended once"
    slow_check.release.set()
    qtbot.waitUntil(lambda: not live_threads(), timeout=5000)  # a result would arrive before this
    assert window.panel.settings().model == "/models/quick.pt"
    assert window.panel.model.findData("/models/slow.pt") < 0 and not open_dialogs(window)


def test_closing_the_window_during_a_check_neither_waits_nor_crashes(make_window, file_dialogs, slow_check, qtbot):
    window = make_window()
    choose(window, file_dialogs, "/models/slow.pt")
    assert slow_check.entered.wait(5)
    assert window.close()
    assert not slow_check.finished.is_set(), "the window closed while the file was still being read"
    assert QApplication.overrideCursor() is None
    slow_check.release.set()
    qtbot.waitUntil(lambda: not live_threads(), timeout=5000)
    assert window.panel.model.findData("/models/slow.pt") < 0


def model_ids(window) -> list[str]:
    return [window.panel.model.itemData(i) for i in range(window.panel.model.count())]


@pytest.mark.parametrize("pick", ["original", "installed file"])
def test_choosing_an_installed_models_file_selects_that_model(make_window, file_dialogs, tmp_path, qtbot, pick):
    """The file of an installed model (or the original it was copied from) is that model: it is
    selected, not listed a second time as a file."""
    import torch

    from engine.models import store
    from engine.models.tiny import build_tiny, tiny_ddpm_config

    original = tmp_path / "faces.pt"
    torch.save(build_tiny(tiny_ddpm_config()).state_dict(), original)
    imported = store.import_model_file(original, display_name="My faces")
    window = make_window()
    window.panel.select_model("test-tiny")
    path = str(original if pick == "original" else imported.path)
    choose(window, file_dialogs, path)
    qtbot.waitUntil(lambda: window._model_check is None, timeout=10_000)
    assert window.panel.settings().model == imported.model_id, getattr(window, "last_error", "")
    assert path not in model_ids(window) and model_ids(window).count(imported.model_id) == 1


def test_a_folder_is_called_a_folder(make_window, file_dialogs, tmp_path, qtbot):
    window = make_window()
    choose(window, file_dialogs, str(tmp_path))
    qtbot.waitUntil(lambda: window._model_check is None, timeout=10_000)
    assert f"{tmp_path} is a folder, not a model file" in window.last_error


def test_restore_waits_while_a_chosen_file_is_checked(window_with_photo, file_dialogs, slow_check, qtbot):
    """A run started during the check would use the model selected before: Restore waits, and says why."""
    from gui.run.plan import TaskSettings
    from window_helpers import fake_restore

    window = window_with_photo(fake_restore())
    window.panel.set_settings(TaskSettings(colorize=True))
    assert window.panel.restore_button.isEnabled(), window.panel.problems
    choose(window, file_dialogs, "/models/slow.pt")
    assert slow_check.entered.wait(5)
    assert not window.panel.restore_button.isEnabled()
    assert "Checking the model file slow.pt" in window.panel.problem_label.text()
    assert not window.restore() and not window.runs.running  # Run ▸ Restore (Ctrl+R) waits as well
    slow_check.release.set()
    qtbot.waitUntil(window.panel.restore_button.isEnabled, timeout=5000)
    assert window.panel.settings().model == "/models/slow.pt" and not window.panel.problems


def test_a_model_file_is_usable_with_a_damaged_model_registry(make_window, file_dialogs, tmp_path, qtbot):
    import torch

    from engine.models import catalog
    from engine.models.tiny import build_tiny, tiny_ddpm_config

    window = make_window()
    catalog.registry_path(catalog.models_dir()).write_text("{ not json")
    path = tmp_path / "faces.pt"
    torch.save(build_tiny(tiny_ddpm_config()).state_dict(), path)
    choose(window, file_dialogs, str(path))
    qtbot.waitUntil(lambda: window._model_check is None, timeout=10_000)
    assert window.panel.settings().model == str(path), getattr(window, "last_error", "")


def test_a_chosen_model_file_is_checked_and_kept_across_restarts(make_window, tmp_path, file_dialogs, qtbot):
    import torch

    from engine.models.tiny import build_tiny, tiny_adm_config

    good, bogus = tmp_path / "mine.pt", tmp_path / "bogus.pt"
    torch.save(build_tiny(tiny_adm_config()).state_dict(), good)
    bogus.write_bytes(b"garbage" * 10)
    window = make_window()
    window.interactive = True
    file_dialogs["open"] += [(str(bogus), ""), (str(good), "")]
    window.choose_model_file()  # checked in the background
    qtbot.waitUntil(lambda: bool(open_dialogs(window)), timeout=10_000)
    [(title, text)] = open_dialogs(window)
    assert title == "Cannot use this model file" and "bogus.pt" in text
    assert window.panel.settings().model == "test-tiny" and window.panel.model.findData(str(bogus)) < 0
    window.choose_model_file()
    qtbot.waitUntil(lambda: window.panel.settings().model == str(good), timeout=10_000)
    assert "adm" in window.panel.model_purpose.text()
    window.close()

    again = make_window()
    assert again.panel.settings().model == str(good), "still chosen after the model list is refreshed"
    again.refresh_models([])
    assert again.panel.settings().model == str(good)
    again.close()

    good.unlink()
    gone = make_window()
    assert gone.panel.settings().model == "test-tiny" and gone.panel.model.findData(str(good)) < 0
