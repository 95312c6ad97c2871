"""GUI tests: offscreen Qt, settings isolated in a temporary folder, small generated photos."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any Qt import

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

SHARED_DATA = Path(os.environ.get("RESTORER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
if not SHARED_DATA.is_dir():
    SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory, monkeypatch):
    """Every test reads and writes QSettings (and the models folder, and the progress of runs) in
    its own temporary folder."""
    folder = tmp_path_factory.mktemp("settings")
    monkeypatch.setenv("RESTORER_MODELS_DIR", str(folder / "models"))
    monkeypatch.setenv("RESTORER_RUNS_DIR", str(folder / "runs"))
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(folder))
    QSettings.setPath(QSettings.IniFormat, QSettings.SystemScope, str(folder / "system"))
    yield folder


@pytest.fixture(autouse=True)
def save_prompt_answers(monkeypatch):
    """The "save before closing?" question never blocks a test: it answers "discard" and records
    the action it was asked about (tests append other answers to use them first). The question
    before a new run replaces an unsaved result answers from ``pending`` ("discard" when empty)."""
    from gui.files.unsaved import UnsavedWork

    record = {"asked": [], "answers": [], "pending": []}

    def ask(self, action):
        record["asked"].append(action)
        return record["answers"].pop(0) if record["answers"] else "discard"

    def ask_pending(self):
        record["asked"].append("restore")
        return record["pending"].pop(0) if record["pending"] else "discard"

    monkeypatch.setattr(UnsavedWork, "ask_save_changes", ask)
    monkeypatch.setattr(UnsavedWork, "ask_pending_result", ask_pending)
    return record


def make_photo(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth colourful test photo (H, W, 3) float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([xx / max(width - 1, 1), yy / max(height - 1, 1), 0.5 + 0.3 * np.sin(xx / 5.0)], axis=-1)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.fixture
def photo() -> np.ndarray:
    return make_photo()


@pytest.fixture(name="make_photo")
def make_photo_fixture():
    return make_photo


@pytest.fixture
def make_window(qtbot):
    """A main window (no device probe, no modal dialogs) with an optional scripted restore function."""
    from gui.main_window import MainWindow
    from gui.settings import AppSettings

    def make(restore=None, settings=None):
        window = MainWindow(settings or AppSettings(), restore=restore, probe_devices=False, interactive=False)
        qtbot.addWidget(window)
        window.resize(1000, 700)
        window.show()
        qtbot.waitExposed(window)
        return window

    return make


@pytest.fixture
def window_with_photo(make_window, tmp_path, qtbot):
    """A main window with ``tmp_path/photo.png`` (EXIF + ICC) open."""
    from window_helpers import open_photo, write_photo

    def make(restore=None, size=(64, 64)):
        window = make_window(restore)
        path = tmp_path / "photo.png"
        write_photo(path, make_photo(*size))
        assert open_photo(qtbot, window, path)
        return window

    return make


@pytest.fixture
def file_dialogs(monkeypatch):
    """QFileDialog's open/save questions and QInputDialog.getInt answer from queues; each call is
    recorded as (kind, caption, suggested path). Empty queue: the dialog is cancelled."""
    from PySide6.QtWidgets import QFileDialog, QInputDialog

    record = {"calls": [], "open": [], "save": [], "int": []}

    def answer(kind, caption, start, empty):
        record["calls"].append((kind, caption, start))
        return record[kind].pop(0) if record[kind] else empty

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(
        lambda parent, caption="", start="", *a, **k: answer("open", caption, start, ("", ""))))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(
        lambda parent, caption="", start="", *a, **k: answer("save", caption, start, ("", ""))))
    monkeypatch.setattr(QInputDialog, "getInt", staticmethod(
        lambda parent, title, label, value=0, *a, **k: answer("int", title, value, (value, False))))
    return record
