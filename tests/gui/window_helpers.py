"""Helpers for main-window tests: a scripted restore function, photos with metadata, painting,
starting a run, opening and saving (in the background) and waiting for it, holding file work in
its thread, and the message boxes a window has opened. The fixtures that build windows are in
conftest.py."""

from __future__ import annotations

import os
import threading

import numpy as np
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QMessageBox

from engine.errors import Cancelled
from engine.events import FinishedEvent, PlanEvent, ProgressEvent, StageEvent, WindowFinished, WindowStarted
from engine.geometry import Box
from gui.run.plan import TaskSettings

BOXES = (Box(0, 0, 32, 32), Box(0, 32, 32, 32), Box(32, 0, 32, 32), Box(32, 32, 32, 32))


def fake_restore(delay: float = 0.0, boxes=BOXES, size=(64, 64), error: Exception | None = None):
    def restore(request, cancel: threading.Event):
        yield StageEvent("restoring", 0, 1)
        if error is not None:
            raise error
        yield PlanEvent(size, tuple(boxes), tuple(range(len(boxes))))
        for i, box in enumerate(boxes):
            yield WindowStarted(i, box)
            if delay and cancel.wait(delay if i else 0.01):
                return
            yield WindowFinished(i, box, np.full((box.height, box.width, 3), 0.25 * (i + 1), np.float32))
            yield ProgressEvent(i + 1, len(boxes), 0.01, 0.01)
        yield FinishedEvent(np.full(size + (3,), 0.9, np.float32), {"seconds": 0.05})

    return restore


def write_photo(path, pixels: np.ndarray, fmt="PNG") -> tuple[bytes, bytes]:
    """Save with an EXIF block and an ICC profile; return them for comparison."""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "TestCamera"  # Make
    exif[0x0110] = "Model X"
    im = Image.fromarray((pixels * 255).astype(np.uint8))
    im.save(path, fmt, exif=exif.tobytes(), icc_profile=icc)
    return exif.tobytes(), icc


def paint(qtbot, window, points):
    canvas = window.canvas
    canvas.set_zoom(4.0)
    canvas.offset = QPointF(0, 0)
    canvas.set_brush_radius(3)
    qtbot.mousePress(canvas, Qt.LeftButton, pos=QPoint(*points[0]))
    for p in points[1:]:
        qtbot.mouseMove(canvas, QPoint(*p))
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=QPoint(*points[-1]))


def start_run(qtbot, window, settings: TaskSettings) -> None:
    window.panel.set_settings(settings)
    assert window.panel.restore_button.isEnabled(), window.panel.problems
    with qtbot.waitSignal(window.runs.state_changed, timeout=2000):
        window.panel.restore_button.click()


def open_dialogs(window) -> list[tuple[str, str]]:
    """(title, text) of the message boxes the window has opened (show_error opens them non-blocking)."""
    return [(box.windowTitle(), box.text()) for box in window.findChildren(QMessageBox) if box.isVisible()]


class StuckRestore:
    """A restore function inside one long model call that cannot be interrupted: cancel is only
    seen after :attr:`release` is set. :attr:`entered` is set once the call has begun."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, request, cancel: threading.Event):
        self.entered.set()
        self.release.wait(10)
        if cancel.is_set():
            raise Cancelled()
        yield from ()


def wait_for_files(qtbot, window, timeout: int = 10_000) -> None:
    """Wait until the window's file work (a photo or mask being read, a file being written) has ended."""
    qtbot.waitUntil(lambda: not window.files.kind, timeout=timeout)


def open_photo(qtbot, window, path) -> bool:
    """Open ``path`` and wait for it; whether it is the window's photo now."""
    window.open_path(str(path))
    wait_for_files(qtbot, window)
    return window.document.path == os.path.abspath(path)


def save_result(qtbot, window, path, *options) -> bool:
    """Save to ``path`` (with save_to's ``options``) and wait for it; whether the file was written."""
    started = window.save_to(str(path), *options)
    wait_for_files(qtbot, window)
    return started and window.save_target is not None and window.save_target.path == str(path)


class Held:
    """Wraps ``function`` so a call from a worker thread waits for :attr:`release` (when
    ``hold(*args)`` is true): :attr:`entered` is set once such a call has begun. A test holds a
    file being read or written this way and looks at the window meanwhile."""

    def __init__(self, function, hold=lambda *args: True):
        self.function, self.hold = function, hold
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, *args, **kwargs):
        assert threading.current_thread() is not threading.main_thread(), "file work on the UI thread"
        if self.hold(*args):
            self.entered.set()
            assert self.release.wait(10), "never released"
        return self.function(*args, **kwargs)
