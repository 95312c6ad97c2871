"""Canvas: view math, painting with simulated mouse events, overlays, partial layer updates."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, QRect, Qt
from PySide6.QtGui import QImage, QPainter

from gui.canvas.view import GRID_ZOOM, Canvas
from gui.document.document import Document
from gui.canvas.layer_image import MaskLayer, RgbLayer


@pytest.fixture
def canvas(qtbot, photo):
    doc = Document()
    view = Canvas(doc)
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    doc.set_photo(photo)
    return view


def test_fit_centres_the_photo_and_actual_size_is_100_percent(canvas):
    h, w = canvas.document.size
    canvas.fit()
    assert canvas.zoom == pytest.approx(min(400 / w, 300 / h) * 0.97)
    centre = canvas.to_widget(QPointF(w / 2, h / 2))
    assert centre.x() == pytest.approx(200, abs=1) and centre.y() == pytest.approx(150, abs=1)
    canvas.actual_size()
    assert canvas.zoom == 1.0


def test_wheel_zoom_keeps_the_point_under_the_cursor(canvas, qtbot):
    anchor = QPointF(123, 77)
    before = canvas.to_scene(anchor)
    canvas.zoom_by(2.5, anchor)
    after = canvas.to_scene(anchor)
    assert (after.x(), after.y()) == pytest.approx((before.x(), before.y()), abs=1e-6)


def test_middle_button_drag_pans(canvas, qtbot):
    start = QPointF(canvas.offset)
    qtbot.mousePress(canvas, Qt.MiddleButton, pos=QPoint(100, 100))
    qtbot.mouseMove(canvas, QPoint(140, 90))
    qtbot.mouseRelease(canvas, Qt.MiddleButton, pos=QPoint(140, 90))
    assert canvas.offset.x() - start.x() == pytest.approx(40) and canvas.offset.y() - start.y() == pytest.approx(-10)
    assert not canvas.document.mask.any(), "panning must not paint"


def test_stroke_paints_the_mask_under_the_cursor(canvas, qtbot):
    doc = canvas.document
    canvas.set_zoom(4.0, QPointF(0, 0))
    canvas.offset = QPointF(0, 0)
    canvas.set_brush_radius(3)
    canvas.brush.hardness = 1.0
    qtbot.mousePress(canvas, Qt.LeftButton, pos=QPoint(40, 40))  # scene (10, 10)
    qtbot.mouseMove(canvas, QPoint(120, 40))  # scene (30, 10)
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=QPoint(120, 40))
    assert doc.mask[10, 10] == 255 and doc.mask[10, 20] == 255 and doc.mask[10, 30] == 255
    assert doc.mask[20, 20] == 0 and doc.mask[10, 40] == 0
    assert doc.undo_stack.count() == 1


def test_eraser_tool_removes_mask(canvas, qtbot):
    doc = canvas.document
    doc.set_mask(np.full(doc.size, 255, np.uint8))
    canvas.set_zoom(4.0)
    canvas.offset = QPointF(0, 0)
    canvas.set_tool("eraser")
    canvas.set_brush_radius(2)
    qtbot.mousePress(canvas, Qt.LeftButton, pos=QPoint(40, 40))
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=QPoint(40, 40))
    assert doc.mask[10, 10] == 0 and doc.mask[30, 30] == 255


def test_space_drag_pans_instead_of_painting(canvas, qtbot):
    canvas.setFocus()
    qtbot.keyPress(canvas, Qt.Key_Space)
    start = QPointF(canvas.offset)
    qtbot.mousePress(canvas, Qt.LeftButton, pos=QPoint(50, 50))
    qtbot.mouseMove(canvas, QPoint(70, 50))
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=QPoint(70, 50))
    qtbot.keyRelease(canvas, Qt.Key_Space)
    assert canvas.offset.x() - start.x() == pytest.approx(20)
    assert not canvas.document.mask.any()


def test_rgb_layer_region_update_changes_only_that_region_at_every_level():
    big = np.zeros((1100, 1300, 3), np.float32)
    layer = RgbLayer(big)
    assert len(layer.levels) >= 2, "a large image gets a pyramid"
    patch = np.ones((64, 96, 3), np.float32)
    layer.update_region(200, 300, patch)
    base = layer.levels[0]
    assert base[200:264, 300:396, :3].min() == 255 and base[:200].max(axis=(0, 1))[:3].max() == 0
    assert base[264:, :, :3].max() == 0
    half = layer.levels[1]
    assert half[100:132, 150:198, :3].min() == 255 and half[140:, :, :3].max() == 0


def test_rgb_layer_converts_in_bands_without_a_full_size_temporary():
    import tracemalloc

    pixels = np.random.default_rng(0).uniform(-0.2, 1.2, (1200, 1000, 3)).astype(np.float32)
    tracemalloc.start()
    layer = RgbLayer(pixels)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = sum(level.nbytes for level in layer.levels)
    assert peak - kept < pixels.nbytes / 8, "one band at a time, never a whole-photo float or 8-bit copy"
    expected = np.rint(np.clip(pixels, 0, 1) * 255)
    assert np.abs(layer.levels[0][..., 2::-1] - expected).max() <= 1 and (layer.levels[0][..., 3] == 255).all()


def test_layer_draw_paints_only_the_exposed_part():
    layer = RgbLayer(np.full((50, 80, 3), 1.0, np.float32))
    target = QImage(200, 100, QImage.Format_ARGB32)
    target.fill(0)
    painter = QPainter(target)
    layer.draw(painter, 2.0, (0.0, 0.0), QRect(0, 0, 40, 40))
    painter.end()
    assert QImage.pixel(target, 10, 10) == 0xFFFFFFFF
    assert QImage.pixel(target, 100, 60) == 0, "outside the exposed rect nothing is drawn"


def test_mask_layer_draws_the_mask_itself_tinted_by_its_values():
    mask = np.zeros((600, 700), np.uint8)
    mask[2:4, 2:4] = 200
    layer = MaskLayer(mask)
    assert layer.source is mask and len(layer.levels) == 2, "no copy of the mask, and a pyramid"
    assert sum(level.nbytes for level in layer.levels[1:]) <= mask.nbytes * 4 / 3
    mask[500:520, 600:640] = 255  # the document paints in place, then says where
    layer.refresh_region(500, 600, 20, 40)
    assert layer.levels[1][250:260, 300:320, 3].min() == 255 and layer.levels[1][240, 300, 3] == 0
    target = QImage(20, 20, QImage.Format_ARGB32)
    target.fill(0xFF000000)
    painter = QPainter(target)
    layer.draw_with_opacity(painter, 1.0, (0.0, 0.0), QRect(0, 0, 20, 20), 1.0)
    painter.end()
    tinted, clear = target.pixelColor(3, 3), target.pixelColor(10, 10)
    assert tinted.red() == round(255 * 200 / 255) and tinted.green() < 50, tinted.name()
    assert clear.name() == "#000000"
    target.fill(0xFF000000)  # zoomed out, the tinted half-size level is drawn
    painter = QPainter(target)
    layer.draw_with_opacity(painter, 0.5, (-295.0, -245.0), QRect(0, 0, 20, 20), 1.0)
    painter.end()
    assert target.pixelColor(10, 10).red() == 255 and target.pixelColor(10, 2).name() == "#000000"


def test_plan_overlay_highlights_running_window_and_grid_shows_at_high_zoom(canvas, qtbot):
    from PySide6.QtCore import QRectF

    canvas.document.set_photo(np.full((48, 64, 3), 0.2, np.float32))
    canvas.busy = True
    canvas.set_plan([QRectF(0, 0, 32, 32), QRectF(16, 0, 32, 32)])
    canvas.set_window_state(0, "finished")
    canvas.set_window_state(1, "running")
    canvas.zoom, canvas.offset = 4.0, QPointF(0, 0)
    image = canvas.grab().toImage()
    border = image.pixelColor(65, 60)  # left edge of window 1 (scene x = 16)
    assert border.red() > 200 and border.green() > 150 and border.blue() < 120, border.name()
    inside = image.pixelColor(150, 60)
    assert abs(inside.red() - inside.blue()) < 40, "inside a running window only a light tint"
    canvas.busy = False
    canvas.zoom, canvas.offset = GRID_ZOOM * 2, QPointF(0, 0)
    image = canvas.grab().toImage()
    line, cell = image.pixelColor(16 * 3, 5), image.pixelColor(16 * 3 + 8, 5)
    assert line != cell, "the pixel grid is drawn at high zoom"
    canvas.zoom = 2.0
    image = canvas.grab().toImage()
    assert image.pixelColor(16, 5) == image.pixelColor(17, 5), "no grid when zoomed out"


def test_plan_overlay_draws_only_the_visible_boxes(canvas, monkeypatch):
    from PySide6.QtCore import QRectF

    canvas.document.set_photo(np.full((64, 64, 3), 0.2, np.float32))
    canvas.busy = True
    canvas.set_plan([QRectF(x, y, 8, 8) for y in range(0, 64, 8) for x in range(0, 64, 8)])
    canvas.zoom, canvas.offset = 16.0, QPointF(0, 0)  # 400×300 widget: scene [0, 25) × [0, 18.75)
    canvas.set_window_state(0, "finished")
    canvas.set_window_state(1, "running")
    batches = []
    monkeypatch.setattr(QPainter, "drawRects", lambda painter, rects: batches.append(len(rects)))
    monkeypatch.setattr(QPainter, "drawRect", lambda painter, rect: batches.append("one box"))
    canvas.grab()
    assert sum(batches) == 4 * 3, "columns x = 0, 8, 16, 24 and rows y = 0, 8, 16 of the 64 boxes"
    assert batches == [10, 1, 1], "one batch per state, not a call per box"
    assert list(canvas.plan_indices_in(QRect(0, 0, 16, 16))) == [0]


def test_a_fitted_view_stays_fitted_when_the_canvas_is_resized(canvas, qtbot):
    h, w = canvas.document.size
    canvas.fit()
    canvas.resize(800, 500)
    qtbot.waitUntil(lambda: canvas.width() == 800)
    assert canvas.zoom == pytest.approx(min(800 / w, 500 / h) * 0.97)
    centre = canvas.to_widget(QPointF(w / 2, h / 2))
    assert (centre.x(), centre.y()) == pytest.approx((400, 250), abs=1)
    canvas.zoom_by(2.0)
    zoom = canvas.zoom
    canvas.resize(600, 400)
    qtbot.waitUntil(lambda: canvas.width() == 600)
    assert canvas.zoom == zoom, "a zoom the user chose is kept"


@pytest.mark.parametrize("zoom", [1.0, 8.0, 64.0])
def test_a_click_paints_the_pixel_under_the_cursor(canvas, qtbot, zoom):
    doc = canvas.document
    doc.set_photo(np.zeros((300, 400, 3), np.float32))
    canvas.zoom, canvas.offset = zoom, QPointF(-37.0 * zoom, -23.0 * zoom)  # scene (37, 23) at the top left
    canvas.set_brush_radius(1)
    canvas.brush.hardness = 1.0
    where = []
    canvas.cursor_moved.connect(lambda x, y: where.append((x, y)))
    pos = QPoint(round(5 * zoom + zoom / 3), round(2 * zoom + zoom / 3))  # inside scene pixel (42, 25)
    qtbot.mouseMove(canvas, pos)
    qtbot.mousePress(canvas, Qt.LeftButton, pos=pos)
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=pos)
    assert where[-1] == (42, 25), "the status bar names the pixel under the cursor"
    assert [tuple(p) for p in np.argwhere(doc.mask == 255)] == [(25, 42)], "and that pixel is painted"
    assert doc.mask.sum() < 255 * 2, "its neighbours at most faintly"


def test_a_photo_thinner_than_a_screen_pixel_still_shows(canvas):
    canvas.document.set_photo(np.ones((3, 20000, 3), np.float32))  # fitted: 0.006 screen pixels tall
    image = canvas.grab().toImage()
    row = round(canvas.to_widget(QPointF(0, 1.5)).y())
    assert image.pixelColor(200, row).lightness() > image.pixelColor(200, row + 10).lightness() + 40
