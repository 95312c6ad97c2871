"""Mask painting and undo: one step per stroke, stored as the blocks it changed (their old pixels, once), exact undo/redo."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt

from gui.document import mask_tools
from gui.canvas.view import Canvas
from gui.document.document import Document
from gui.document.mask_tools import Brush, StrokeRecorder, segment_footprint
from gui.document.undo import MaskEditCommand, mask_replace_command


@pytest.fixture
def canvas(qtbot, make_photo):
    doc = Document()
    view = Canvas(doc)
    qtbot.addWidget(view)
    view.resize(400, 400)
    view.show()
    doc.set_photo(make_photo(100, 120))
    view.zoom, view.offset = 2.0, QPointF(0, 0)
    return view


def drag(qtbot, widget, points):
    qtbot.mousePress(widget, Qt.LeftButton, pos=QPoint(*points[0]))
    for p in points[1:]:
        qtbot.mouseMove(widget, QPoint(*p))
    qtbot.mouseRelease(widget, Qt.LeftButton, pos=QPoint(*points[-1]))


def test_one_undo_step_per_stroke_with_exact_undo_and_redo(canvas, qtbot):
    doc = canvas.document
    canvas.set_brush_radius(5)
    canvas.brush.hardness = 0.5  # soft edge: values between 0 and 255
    drag(qtbot, canvas, [(20, 20), (60, 30), (100, 60), (140, 60)])
    first = doc.mask.copy()
    drag(qtbot, canvas, [(40, 120), (40, 160)])
    second = doc.mask.copy()
    assert doc.undo_stack.count() == 2
    assert ((first > 0) & (first < 255)).any(), "a soft brush leaves graded edge values"
    assert not np.array_equal(first, second)
    doc.undo_stack.undo()
    assert np.array_equal(doc.mask, first)
    doc.undo_stack.undo()
    assert not doc.mask.any()
    doc.undo_stack.redo()
    doc.undo_stack.redo()
    assert np.array_equal(doc.mask, second)


def test_stroke_command_stores_only_the_changed_pixels_blocks(canvas, qtbot):
    doc = canvas.document
    canvas.set_brush_radius(4)
    canvas.brush.hardness = 1.0
    drag(qtbot, canvas, [(40, 40), (80, 40)])  # scene x 20..40, y 20, radius 4
    command = doc.undo_stack.command(0)
    assert isinstance(command, MaskEditCommand)
    top, left, h, w = command.region
    assert top <= 16 and top + h >= 24 and left <= 16 and left + w >= 44
    assert h <= 12 and w <= 34, f"region {command.region} should hug the stroke"
    assert all(old.shape == region[2:] for region, old in command.blocks)
    assert command.nbytes <= h * w, "the old pixels of the blocks, once (the new ones are in the mask)"
    changed = np.argwhere(doc.mask > 0)
    assert changed[:, 0].min() >= top and changed[:, 0].max() < top + h
    assert changed[:, 1].min() >= left and changed[:, 1].max() < left + w


def test_eraser_stroke_undo_restores_painted_pixels(canvas, qtbot):
    doc = canvas.document
    doc.set_mask(np.full(doc.size, 180, np.uint8))
    canvas.set_tool("eraser")
    canvas.set_brush_radius(6)
    drag(qtbot, canvas, [(50, 50), (90, 90)])
    assert doc.mask[35, 35] == 0
    doc.undo_stack.undo()
    assert (doc.mask == 180).all()


def test_escape_aborts_the_stroke_without_an_undo_step(canvas, qtbot):
    doc = canvas.document
    qtbot.mousePress(canvas, Qt.LeftButton, pos=QPoint(50, 50))
    qtbot.mouseMove(canvas, QPoint(70, 50))
    assert doc.mask.any()
    canvas.abort_stroke()
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=QPoint(70, 50))
    assert not doc.mask.any() and doc.undo_stack.count() == 0


def test_footprint_hardness_and_capsule_shape():
    hard = segment_footprint((40, 40), (10, 20), (30, 20), Brush(5, 1.0))
    (top, left, h, w), alpha = hard
    full = np.zeros((40, 40), np.uint8)
    full[top : top + h, left : left + w] = alpha
    assert full[20, 10] == full[20, 30] == full[20, 20] == 255 and full[20, 36] == 0 and full[27, 20] == 0
    soft = segment_footprint((40, 40), (20, 20), (20, 20), Brush(8, 0.0))[1]
    assert 0 < np.median(soft[soft > 0]) < 255


def put(mask, deltas, which):
    """``mask`` with the old (which=1) or new (which=2) pixels of ``deltas`` written in."""
    out = mask.copy()
    for delta in deltas:
        top, left, h, w = delta[0]
        out[top : top + h, left : left + w] = delta[which]
    return out


@pytest.mark.parametrize("p0, p1, brush", [((2000.3, 1500.7), (2090.1, 1530.9), Brush(300, 0.7)),
                                            ((10.5, 20.5), (10.5, 20.5), Brush(3, 1.0)),
                                            ((5.2, 5.9), (40.0, 1.0), Brush(12, 0.0))])
def test_footprint_is_the_capsule_profile_worked_out_in_place(p0, p1, brush):
    import tracemalloc

    tracemalloc.start()
    (top, left, h, w), alpha = segment_footprint((3000, 4000), p0, p1, brush)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if h * w > 100_000:
        assert peak < 2.5 * 4 * h * w, "two float32 arrays of the region at most (a big brush, every mouse move)"
    ys, xs = np.mgrid[top : top + h, left : left + w] + 0.5
    (x0, y0), (x1, y1) = p0, p1
    d = np.array([x1 - x0, y1 - y0])
    t = np.clip(((xs - x0) * d[0] + (ys - y0) * d[1]) / max(d @ d, 1e-300), 0, 1)
    dist = np.hypot(xs - x0 - t * d[0], ys - y0 - t * d[1])
    ramp = max(brush.radius * (1 - brush.hardness), 0.5)
    expected = np.rint(np.clip((brush.radius - dist) / ramp, 0, 1) * 255)
    assert np.abs(alpha - expected).max() <= 1


def test_recorder_delta_is_exact():
    mask = np.zeros((30, 30), np.uint8)
    mask[0, 0] = 77
    before = mask.copy()
    rec = StrokeRecorder(mask, Brush(3, 0.3))
    rec.paint_to(10, 10)
    rec.paint_to(20, 12)
    deltas = rec.finish()
    assert all(not old.any() and new.max() == 255 for _, old, new in deltas)
    assert np.array_equal(put(before, deltas, 2), mask) and np.array_equal(put(mask, deltas, 1), before)
    assert mask[0, 0] == 77


def test_a_long_slanted_stroke_keeps_the_tiles_it_paints_over_not_its_bounding_box():
    rng = np.random.default_rng(1)
    mask = (rng.random((2000, 2000)) < 0.5).astype(np.uint8) * 90
    before = mask.copy()
    rec = StrokeRecorder(mask, Brush(10, 0.5))
    for i in range(0, 1801, 30):  # corner to corner: the bounding box is nearly the whole mask
        rec.paint_to(100 + i, 100 + i)
    assert rec.saved_bytes < mask.nbytes / 10, "the tiles along the stroke, not a copy of the mask"
    deltas = rec.finish()
    assert sum(old.nbytes + new.nbytes for _, old, new in deltas) < mask.nbytes / 10, "undo keeps as little"
    assert np.array_equal(put(before, deltas, 2), mask) and np.array_equal(put(mask, deltas, 1), before)
    painted = mask.copy()
    rec = StrokeRecorder(mask, Brush(10, 0.5, erase=True))
    rec.paint_to(500, 1500)
    rec.paint_to(1500, 500)
    rec.abort()
    assert np.array_equal(mask, painted), "abort puts back what was there"


@pytest.mark.parametrize("op, check", [
    (mask_tools.invert_mask, lambda old, new: np.array_equal(new, 255 - old)),
    (mask_tools.clear_mask, lambda old, new: not new.any()),
    (lambda m: mask_tools.grow_mask(m, 2), lambda old, new: (new >= old).all() and new.sum() > old.sum()),
    (lambda m: mask_tools.grow_mask(m, -2), lambda old, new: (new <= old).all() and new.sum() < old.sum()),
])
def test_whole_mask_operations_are_undoable(op, check):
    doc = Document()
    doc.set_photo(np.zeros((40, 50, 3), np.float32))
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:30] = 255
    doc.set_mask(mask)
    before = doc.mask.copy()
    doc.undo_stack.push(mask_replace_command(doc, op(doc.mask), "op"))
    assert check(before, doc.mask)
    doc.undo_stack.undo()
    assert np.array_equal(doc.mask, before)


@pytest.mark.parametrize("op", [mask_tools.invert_mask, lambda m: mask_tools.grow_mask(m, 3),
                                lambda m: mask_tools.mask_from_image(np.eye(60, 80, dtype=np.float32), m.shape)])
def test_a_whole_mask_edit_keeps_the_changed_block_once(make_photo, op):
    """Invert, grow and import kept the changed block twice (its old and its new pixels)."""
    doc = Document()
    doc.set_photo(make_photo(60, 80))
    doc.set_mask(np.where(np.arange(80) < 30, 255, 0).astype(np.uint8)[None, :].repeat(60, axis=0))
    before = doc.mask.copy()
    command = mask_replace_command(doc, op(doc.mask), "op")
    doc.undo_stack.push(command)
    after = doc.mask.copy()
    (_, _, h, w), = (region for region, _ in command.blocks)
    assert command.nbytes == h * w and doc.undo_stack.held_bytes() == h * w
    for expected in (before, after, before):
        doc.undo_stack.undo() if expected is before else doc.undo_stack.redo()
        assert np.array_equal(doc.mask, expected)


def test_mask_file_round_trip(tmp_path):
    import tracemalloc

    from PIL import Image

    from gui.files import ops as file_ops

    mask = np.zeros((600, 800), np.uint8)
    mask[5:10, 3:20] = 255
    mask[100:300, 200:260] = 140  # soft edges keep their values
    path = tmp_path / "mask.png"
    tracemalloc.start()
    file_ops.save_mask_file(mask, str(path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * mask.nbytes, "no RGB float copy (16 times the mask)"
    with Image.open(path) as im:
        assert im.mode == "L" and np.array_equal(np.asarray(im), mask)
    assert np.array_equal(file_ops.load_mask_file(str(path), (600, 800)).mask, mask)


def test_engine_mask_is_thresholded_at_127():
    doc = Document()
    doc.set_photo(np.zeros((4, 4, 3), np.float32))
    doc.set_mask(np.array([[0, 127, 128, 255]] * 4, np.uint8))
    assert doc.engine_mask()[0].tolist() == [0, 0, 255, 255]
    assert doc.has_mask()


def test_an_imported_mask_is_made_8_bit_with_one_float_temporary():
    import tracemalloc

    strength = np.random.default_rng(2).random((600, 800), dtype=np.float32) * 1.2 - 0.1
    tracemalloc.start()
    mask = mask_tools.mask_from_image(strength, (600, 800))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 6 * strength.size, "the clipped float strength and the 8-bit mask, nothing more"
    assert np.abs(mask - np.rint(np.clip(strength, 0, 1) * 255)).max() <= 1
