"""Large scans (600–1200 dpi, 16-bit): what the app holds and does per photo, stroke and paint.

The photos here are small, generated ones; the tests assert the structure that keeps a
10000×8000 scan cheap (no full-size copies, work proportional to the region touched), not times.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt

from engine import host_memory, image_io
from engine.request import Tasks
from gui.document.document import Document
from gui.run.plan import PREVIEW_BYTES_PER_OUTPUT_PIXEL, TaskSettings
from window_helpers import BOXES, fake_restore, open_photo, paint, start_run, wait_for_files


def test_an_opened_16_bit_scan_is_held_once(make_window, make_photo, tmp_path, qtbot):
    path = tmp_path / "scan.tif"
    image_io.save_image(path, make_photo(300, 400), bit_depth=16)
    window = make_window()
    assert open_photo(qtbot, window, path)
    doc, canvas = window.document, window.canvas
    assert doc.loaded.bit_depth == 16
    assert np.shares_memory(doc.image, doc.loaded.rgb), "the decoded pixels are the photo (the metadata keeps no copy)"
    assert doc.original is doc.image, "nothing applied yet: the original is the photo itself"
    window.act_compare.setChecked(True)
    canvas.grab()
    before, after = canvas._before_after()
    assert before is after is canvas._base, "comparing with the original draws the photo's own layer"


class _Watched(np.ndarray):
    """A mask that records the largest array any numpy operation or copy on it (or on a view of
    it) worked over."""

    largest = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        arrays = [x for x in inputs + tuple(kwargs.get("out", ())) if isinstance(x, np.ndarray)]
        _Watched.largest = max([_Watched.largest] + [x.size for x in arrays])
        plain = [x.view(np.ndarray) if isinstance(x, _Watched) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(x.view(np.ndarray) if isinstance(x, _Watched) else x for x in kwargs["out"])
        return getattr(ufunc, method)(*plain, **kwargs)

    def copy(self, order="C"):
        _Watched.largest = max(_Watched.largest, self.size)
        return super().copy(order)


def test_painting_undo_and_redo_work_on_the_stroke_region_only(make_window, qtbot):
    window = make_window()
    doc, canvas = window.document, window.canvas
    doc.set_photo(np.zeros((1500, 2000, 3), np.float32))
    doc.mask = doc.mask.view(_Watched)
    doc.mask_changed.emit(None)  # the canvas shows the watched mask
    canvas.zoom, canvas.offset = 1.0, QPointF(0, 0)
    canvas.set_brush_radius(8)
    _Watched.largest = 0
    for y in (100, 200):
        qtbot.mousePress(canvas, Qt.LeftButton, pos=QPoint(50, y))
        for x in range(60, 400, 20):
            qtbot.mouseMove(canvas, QPoint(x, y + x // 10))
        qtbot.mouseRelease(canvas, Qt.LeftButton, pos=QPoint(400, y + 40))
    assert doc.has_mask() and doc.undo_stack.count() == 2
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert not doc.has_mask() and not doc.mask.view(np.ndarray).any()
    doc.undo_stack.redo()
    assert doc.has_mask()
    _, _, h, w = doc.undo_stack.command(0).region
    stroke_box = (h + 20) * (w + 20)
    assert 0 < _Watched.largest <= stroke_box, f"{_Watched.largest} pixels read of a {doc.mask.size} pixel mask"


@pytest.mark.parametrize("tasks", [dict(colorize=True), dict(inpaint=True)])
def test_a_run_and_apply_reuse_one_result_layer_and_copy_no_mask(window_with_photo, qtbot, tasks):
    window = window_with_photo(fake_restore())
    doc, canvas = window.document, window.canvas
    paint(qtbot, window, [(20, 20), (60, 20)])
    mask, marked = doc.mask, np.argwhere(doc.mask)
    layers = []
    doc.preview_changed.connect(lambda _region: layers.append(canvas._preview))
    start_run(qtbot, window, TaskSettings(**tasks))
    qtbot.waitUntil(lambda: doc.preview_finished, timeout=5000)
    assert len(layers) == len(BOXES) + 2 and all(layer is layers[0] for layer in layers), \
        "the windows and the finished result are written into the layer the run began"
    window.act_apply.trigger()
    assert canvas._base is layers[0], "the applied result is shown by the layer that showed it"
    apply = doc.undo_stack.command(doc.undo_stack.count() - 1)
    if tasks.get("inpaint"):  # the filled mask is cleared: the command keeps its marked block only
        region, values = apply.mask_block
        assert region[:2] == tuple(marked.min(axis=0)) and values.shape == tuple(np.ptp(marked, axis=0) + 1)
        assert doc.mask is mask and not mask.any(), "cleared in place, not replaced"
    else:
        assert doc.mask is mask and apply.mask_block is None, "a mask that stays is neither copied nor replaced"


def test_the_window_knows_an_exported_mask_without_keeping_a_copy(window_with_photo, qtbot, tmp_path, file_dialogs):
    window = window_with_photo()
    doc = window.document
    paint(qtbot, window, [(20, 20), (60, 20)])
    file_dialogs["save"].append((str(tmp_path / "mask.png"), "PNG (*.png)"))
    assert window.mask_unsaved() and window.export_mask()
    wait_for_files(qtbot, window)
    assert not window.mask_unsaved()
    copies = [name for name, value in vars(window).items()
              if isinstance(value, np.ndarray) and value.size >= doc.mask.size]
    assert copies == [], "the exported mask is remembered by a digest"
    paint(qtbot, window, [(20, 100), (60, 100)])
    assert window.mask_unsaved()
    doc.undo_stack.undo()
    assert not window.mask_unsaved(), "back to the exported mask"


def test_a_run_that_would_not_fit_in_memory_is_refused_before_the_preview_is_made(window_with_photo, monkeypatch):
    window = window_with_photo(fake_restore(size=(100, 100)), size=(100, 100))
    window.runs.show_dialogs = False
    colorize = host_memory.restore_bytes_per_input_pixel(Tasks(colorize=True)) + PREVIEW_BYTES_PER_OUTPUT_PIXEL
    monkeypatch.setattr(host_memory, "available_bytes", lambda: 100 * 100 * colorize)  # not enough for ×2
    window.panel.set_settings(TaskSettings(upscale=2))
    assert not window.runs.start()
    assert "too large for this computer's memory" in window.runs.last_error[1]
    assert window.document.preview is None and not window.runs.running, "nothing was allocated or started"
    window.panel.set_settings(TaskSettings(colorize=True))
    assert window.runs.start()
    assert window.runs.wait_idle(5000)


def test_an_upscaled_preview_is_made_in_one_allocation(make_photo):
    doc = Document()
    doc.set_photo(make_photo(300, 400))
    doc.begin_preview(1)  # a last result, still there when the next run begins
    tracemalloc.start()
    doc.begin_preview(2)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert doc.preview.shape == (600, 800, 3) and 0 <= doc.preview.min() and doc.preview.max() <= 1
    assert peak < 1.2 * doc.preview.nbytes, "no clipped copy of the upscaled photo"
