"""Renders the main window (photo, painted mask, a run in progress and a finished one) to PNGs in
test-artifacts/ for people to look at; asserts the renders are real images of the right size."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, Qt

from engine.events import FinishedEvent, PlanEvent, ProgressEvent, StageEvent, WindowFinished, WindowStarted
from engine.tiling.window_plan import plan_windows
from gui.main_window import MainWindow
from gui.run.plan import TaskSettings
from gui.settings import AppSettings
from window_helpers import open_photo

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SHARED_DATA = Path(os.environ.get("RESTORER_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
PHOTO = SHARED_DATA / "old_photos" / "old_w_scratch__a.png"


def sepia(pixels: np.ndarray) -> np.ndarray:
    gray = pixels.mean(axis=2, keepdims=True)
    return np.clip(gray * np.array([1.08, 0.95, 0.78], np.float32) + 0.03, 0, 1).astype(np.float32)


def staged_restore(image: np.ndarray, stop_after: int, gate: threading.Event):
    """Fake engine: windows of the real plan, 'restored' (toned) one by one; pauses on ``gate``."""
    plan = plan_windows(image.shape[0], image.shape[1], 256, 128)

    def restore(request, cancel):
        yield StageEvent("restoring", 2, 3)
        yield PlanEvent((plan.padded_height, plan.padded_width), plan.boxes, plan.levels)
        for i, box in enumerate(plan.boxes):
            if i == stop_after:
                yield WindowStarted(i, box)
                gate.wait(10)
                if cancel.is_set():
                    return
            yield WindowStarted(i, box)
            rows, cols = box.slices()
            window = np.zeros((box.height, box.width, 3), np.float32)
            crop = image[rows, cols]
            window[: crop.shape[0], : crop.shape[1]] = sepia(crop)
            yield WindowFinished(i, box, window)
            yield ProgressEvent(i + 1, len(plan.boxes), 3.0 * (i + 1), 3.0 * (len(plan.boxes) - i - 1))
        yield FinishedEvent(sepia(image), {"seconds": 12.0})

    return restore, len(plan.boxes)


def test_screenshots(qtbot, tmp_path, make_photo):
    if PHOTO.is_file():
        path = str(PHOTO)
    else:  # shared data absent: a generated photo still exercises the layout
        from PIL import Image

        path = str(tmp_path / "generated.png")
        Image.fromarray((make_photo(480, 620) * 255).astype(np.uint8)).save(path)
    gate = threading.Event()
    window = MainWindow(AppSettings(), probe_devices=False, interactive=False)
    qtbot.addWidget(window)
    from gui.app import apply_theme

    apply_theme(window.app_instance(), "dark")
    window.resize(1400, 900)
    window.show()
    qtbot.waitExposed(window)
    assert open_photo(qtbot, window, path)
    restore, n_windows = staged_restore(window.document.image, stop_after=3, gate=gate)
    window.runs.restore = restore
    canvas = window.canvas
    canvas.fit()
    canvas.set_brush_radius(9)
    start = canvas.to_widget(QPointF(150, 120))
    qtbot.mousePress(canvas, Qt.LeftButton, pos=start.toPoint())
    for k in range(1, 12):
        qtbot.mouseMove(canvas, (start + QPointF(14 * k, 6 * k + (k % 3) * 4)).toPoint())
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=(start + QPointF(154, 70)).toPoint())
    assert window.document.has_mask()
    window.panel.set_settings(TaskSettings(inpaint=True, colorize=True, model="test-tiny", quality="Balanced"))
    window.panel.restore_button.click()
    qtbot.waitUntil(lambda: window.runs.windows_finished == 3, timeout=5000)
    qtbot.wait(50)
    canvas._move_cursor(QPointF(canvas.to_widget(QPointF(420, 380))))
    ARTIFACTS.mkdir(exist_ok=True)
    running = window.grab().toImage()
    assert running.save(str(ARTIFACTS / "main_window_running.png"))
    gate.set()
    qtbot.waitUntil(lambda: window.document.preview_finished and not window.runs.running, timeout=5000)
    window.act_compare.setChecked(True)
    canvas.compare.split = 0.45
    qtbot.wait(20)
    finished = window.grab().toImage()
    assert finished.save(str(ARTIFACTS / "main_window_finished.png"))
    for image in (running, finished):
        assert image.width() >= 1400 * 0.9 and image.height() >= 900 * 0.9
        colors = {image.pixel(x, y) for x in range(0, image.width(), 37) for y in range(0, image.height(), 41)}
        assert len(colors) > 50, "a real render, not a blank window"
    assert n_windows > 3
    window.runs.wait_idle(3000)
