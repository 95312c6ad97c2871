"""The photo canvas: a QWidget that paints only the exposed part of each layer.

Layers (bottom to top): the photo or the run's result preview, the running windows' current
estimates (transient: never part of the document, so a cancelled run leaves only finished windows),
the "before" side of a compare split, the mask overlay, the window-plan overlay, the pixel grid
(zoom ≥ 8×) and the brush outline. Scene coordinates are photo pixels; widget = scene · zoom + offset.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QCursor, QPainter, QPen
from PySide6.QtWidgets import QWidget

from gui.canvas.compare import CompareState, draw_holding_badge, draw_split_line
from gui.document.document import Document
from gui.canvas.layer_image import MaskLayer, RgbLayer
from gui.document.mask_tools import Brush, StrokeRecorder
from gui.canvas.plan_overlay import PlanOverlay
from gui.document.undo import stroke_command

MIN_ZOOM, MAX_ZOOM = 0.01, 64.0
GRID_ZOOM = 8.0  # pixel grid from this zoom on
WHEEL_STEP = 1.2


class Canvas(QWidget):
    zoom_changed = Signal(float)
    cursor_moved = Signal(int, int)  # photo pixel under the cursor, (-1, -1) outside
    brush_changed = Signal(float)  # radius

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.setFocusPolicy(Qt.StrongFocus)
        self.setMouseTracking(True)
        self.setAttribute(Qt.WA_OpaquePaintEvent, True)
        self.setMinimumSize(200, 150)
        self.zoom = 1.0
        self.offset = QPointF(0.0, 0.0)
        self.tool = "brush"  # brush | eraser | pan
        self.brush = Brush()
        self.mask_opacity = 0.5
        self.mask_visible = True
        self.compare = CompareState()
        self.busy = False  # a run is going: the plan overlay is shown
        self._base: Optional[RgbLayer] = None
        self._preview: Optional[RgbLayer] = None
        self._preview_pixels: Optional[np.ndarray] = None  # the array the preview layer shows
        self._original: Optional[RgbLayer] = None
        self._original_source = None
        self._mask: Optional[MaskLayer] = None
        self.plan = PlanOverlay()
        self._stroke: Optional[StrokeRecorder] = None
        self._painting = False  # the stroke is writing into the mask (its own mask_changed)
        self._pan_from: Optional[QPointF] = None
        self._space_held = False
        self._cursor: Optional[QPointF] = None
        self._fit_view = True  # the view follows the widget: fitted again on resize, until zoom or pan
        document.image_changed.connect(self._on_image_changed)
        document.mask_changed.connect(self._on_mask_changed)
        document.preview_changed.connect(self._on_preview_changed)

    # ---- coordinates ------------------------------------------------------------------
    def to_scene(self, p: QPointF) -> QPointF:
        return QPointF((p.x() - self.offset.x()) / self.zoom, (p.y() - self.offset.y()) / self.zoom)

    def to_widget(self, p: QPointF) -> QPointF:
        return QPointF(p.x() * self.zoom + self.offset.x(), p.y() * self.zoom + self.offset.y())

    def scene_rect_to_widget(self, r: QRectF) -> QRect:
        tl = self.to_widget(r.topLeft())
        return QRectF(tl.x(), tl.y(), r.width() * self.zoom, r.height() * self.zoom).toAlignedRect().adjusted(-2, -2, 2, 2)

    # ---- view -------------------------------------------------------------------------
    def set_zoom(self, zoom: float, anchor: Optional[QPointF] = None) -> None:
        """Zoom keeping the scene point under ``anchor`` (widget coordinates, default centre) fixed."""
        zoom = min(MAX_ZOOM, max(MIN_ZOOM, zoom))
        anchor = anchor if anchor is not None else QPointF(self.width() / 2, self.height() / 2)
        fixed = self.to_scene(anchor)
        self.zoom = zoom
        self.offset = QPointF(anchor.x() - fixed.x() * zoom, anchor.y() - fixed.y() * zoom)
        self._fit_view = False
        self.update()
        self.zoom_changed.emit(self.zoom)

    def zoom_by(self, factor: float, anchor: Optional[QPointF] = None) -> None:
        self.set_zoom(self.zoom * factor, anchor)

    def fit(self) -> None:
        h, w = self.document.size
        if not w or not h:
            return
        zoom = min(self.width() / w, self.height() / h) * 0.97
        self.zoom = min(MAX_ZOOM, max(MIN_ZOOM, zoom))
        self.offset = QPointF((self.width() - w * self.zoom) / 2, (self.height() - h * self.zoom) / 2)
        self._fit_view = True
        self.update()
        self.zoom_changed.emit(self.zoom)

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def set_brush_radius(self, radius: float) -> None:
        self.brush.radius = float(min(Brush.MAX_RADIUS, max(Brush.MIN_RADIUS, radius)))
        self.brush_changed.emit(self.brush.radius)
        self.update()

    def set_mask_opacity(self, opacity: float) -> None:
        self.mask_opacity = min(1.0, max(0.0, opacity))
        self.update()

    # ---- run overlay ------------------------------------------------------------------
    def set_plan(self, boxes: Sequence[QRectF]) -> None:
        """Window boxes of the coming stage, in scene (photo pixel) coordinates."""
        self.plan.set_boxes(boxes)
        self.update()

    def set_window_state(self, index: int, state: str) -> None:
        box = self.plan.set_state(index, state)
        if box is not None:
            self.update(self.scene_rect_to_widget(box))

    def show_estimate(self, index: int, pixels: np.ndarray) -> None:
        """Show running window ``index``'s current estimate ((h, w, 3) float in [0, 1]) over its plan
        box until it finishes or the run ends; the document is not touched."""
        box = self.plan.set_estimate(index, pixels)
        if box is not None:
            self.update(self.scene_rect_to_widget(box))

    def clear_estimates(self) -> None:
        if self.plan.estimates:
            self.plan.estimates = {}
            self.update()

    def clear_plan(self) -> None:
        self.set_plan([])

    def plan_indices_in(self, area: QRect) -> np.ndarray:
        """Indices of the plan boxes that intersect ``area`` (widget coordinates)."""
        tl, br = self.to_scene(QPointF(area.topLeft())), self.to_scene(QPointF(area.bottomRight() + QPoint(1, 1)))
        return self.plan.indices_in(tl.x(), tl.y(), br.x(), br.y())

    # ---- document signals -------------------------------------------------------------
    def _on_image_changed(self) -> None:
        doc = self.document
        old_size = (self._base.height, self._base.width) if self._base else None
        if self._preview is not None and doc.image is self._preview_pixels:  # an applied result
            self._base, self._preview.scale = self._preview, 1.0  # its layer is the photo's now
        else:
            self._base = RgbLayer(doc.image) if doc.image is not None else None
        if doc.original is not self._original_source:
            self._original_source = doc.original
            self._fit_view = True
        self._original = None  # rebuilt on demand, scaled to the current photo
        if self._base is not None and (self._fit_view or old_size != doc.size):
            self.fit()
        self.update()

    def _on_mask_changed(self, region) -> None:
        if self._stroke is not None and not self._painting:
            # changed under the stroke: a photo or mask read in the background arrived, an undo.
            # The stroke ends here; what it painted stays, part of the state before that change.
            self._stroke = None
        mask = self.document.mask
        if region is None or mask is None or self._mask is None or self._mask.source is not mask:
            self._mask = MaskLayer(mask) if mask is not None else None  # drawn from the document's mask
            self.update()
        else:
            self._mask.refresh_region(*region)
            top, left, h, w = region
            self.update(self.scene_rect_to_widget(QRectF(left, top, w, h)))

    def _on_preview_changed(self, region) -> None:
        doc = self.document
        same_size = self._preview is not None and doc.preview is not None and \
            (self._preview.height, self._preview.width) == doc.preview.shape[:2]
        if doc.preview is None:
            self._preview = None
        elif not same_size:
            self._preview = RgbLayer(doc.preview, scale=doc.preview.shape[0] / max(doc.size[0], 1))
        elif region is None:  # the finished result: written over the run's layer, no new one
            self._preview.update_region(0, 0, doc.preview)
        else:
            top, left, h, w = region
            self._preview.update_region(top, left, doc.preview[top : top + h, left : left + w])
            s = self._preview.scale
            self.update(self.scene_rect_to_widget(QRectF(left / s, top / s, w / s, h / s)))
            return
        self._preview_pixels = doc.preview
        self.update()

    def _before_after(self) -> tuple[Optional[RgbLayer], Optional[RgbLayer]]:
        if self._preview is not None:
            return self._base, self._preview
        wanted = self.compare.enabled or self.compare.holding_original
        doc = self.document
        if wanted and self._original is None and doc.original is not None and doc.image is not None:
            if doc.original is doc.image:  # nothing applied yet: the photo's layer shows it
                self._original = self._base
            else:  # after an applied upscale the original is smaller than the photo: drawn stretched
                self._original = RgbLayer(doc.original, scale=doc.original.shape[0] / doc.image.shape[0])
        return self._original, self._base

    @property
    def compare_labels(self) -> tuple[str, str]:
        return ("Before", "Result") if self._preview is not None else ("Original", "Current")

    # ---- painting ---------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        exposed = event.rect()
        painter.setClipRect(exposed)
        painter.fillRect(exposed, self.palette().color(self.backgroundRole()).darker(130))
        if self._base is None:
            painter.setPen(self.palette().color(self.foregroundRole()))
            painter.drawText(self.rect(), Qt.AlignCenter, "Open a photo (Ctrl+O), drop one here, or paste (Ctrl+V)")
            return
        zoom, off = self.zoom, (self.offset.x(), self.offset.y())
        before, after = self._before_after()
        after.draw(painter, zoom, off, exposed)
        self.plan.draw_estimates(painter, zoom, self.offset)
        before_area = self.compare.before_clip(self.rect()).intersected(exposed)
        if before is not None and not before_area.isEmpty():
            painter.save()
            painter.setClipRect(before_area)
            before.draw(painter, zoom, off, before_area)
            painter.restore()
        if self._mask is not None and self.mask_visible and not self.compare.holding_original:
            self._mask.draw_with_opacity(painter, zoom, off, exposed, self.mask_opacity)
        if self.busy and self.plan.boxes:  # pens reach past the boxes
            self.plan.draw_boxes(painter, self.plan_indices_in(exposed.adjusted(-3, -3, 3, 3)), zoom, self.offset)
        if zoom >= GRID_ZOOM:
            self._draw_grid(painter, exposed)
        painter.setClipping(False)
        if self.compare.holding_original:
            draw_holding_badge(painter, self.rect(), self.compare_labels[0])
        draw_split_line(painter, self.compare, self.rect(), self.compare_labels)
        self._draw_brush_outline(painter)

    def _draw_grid(self, painter: QPainter, exposed: QRect) -> None:
        h, w = self.document.size
        tl, br = self.to_scene(QPointF(exposed.topLeft())), self.to_scene(QPointF(exposed.bottomRight()))
        x0, x1 = max(0, math.floor(tl.x())), min(w, math.ceil(br.x()) + 1)
        y0, y1 = max(0, math.floor(tl.y())), min(h, math.ceil(br.y()) + 1)
        painter.save()
        painter.setPen(QPen(QColor(128, 128, 128, 110), 1))
        top, bottom = self.to_widget(QPointF(0, y0)).y(), self.to_widget(QPointF(0, y1)).y()
        left, right = self.to_widget(QPointF(x0, 0)).x(), self.to_widget(QPointF(x1, 0)).x()
        for x in range(x0, x1 + 1):
            wx = round(self.to_widget(QPointF(x, 0)).x())
            painter.drawLine(wx, round(top), wx, round(bottom))
        for y in range(y0, y1 + 1):
            wy = round(self.to_widget(QPointF(0, y)).y())
            painter.drawLine(round(left), wy, round(right), wy)
        painter.restore()

    def _brush_widget_rect(self, pos: QPointF) -> QRect:
        r = self.brush.radius * self.zoom
        return QRectF(pos.x() - r - 3, pos.y() - r - 3, 2 * r + 6, 2 * r + 6).toAlignedRect()

    def _draw_brush_outline(self, painter: QPainter) -> None:
        if self._cursor is None or self.tool == "pan" or self._space_held or self._pan_from is not None:
            return
        r = self.brush.radius * self.zoom
        painter.save()
        painter.setRenderHint(QPainter.Antialiasing, True)
        painter.setBrush(Qt.NoBrush)
        painter.setPen(QPen(QColor(0, 0, 0, 200), 2.5))
        painter.drawEllipse(self._cursor, r, r)
        painter.setPen(QPen(QColor(255, 255, 255) if self.tool == "brush" else QColor(120, 200, 255), 1.2))
        painter.drawEllipse(self._cursor, r, r)
        if self.brush.hardness < 1.0:
            painter.setPen(QPen(QColor(255, 255, 255, 110), 1, Qt.DotLine))
            painter.drawEllipse(self._cursor, r * self.brush.hardness, r * self.brush.hardness)
        painter.restore()

    # ---- input ------------------------------------------------------------------------
    def _move_cursor(self, pos: Optional[QPointF]) -> None:
        old = self._cursor
        self._cursor = pos
        for p in (old, pos):
            if p is not None:
                self.update(self._brush_widget_rect(p))
        if pos is None:
            self.cursor_moved.emit(-1, -1)
            return
        s = self.to_scene(pos)
        h, w = self.document.size
        x, y = math.floor(s.x()), math.floor(s.y())
        self.cursor_moved.emit(*((x, y) if 0 <= x < w and 0 <= y < h else (-1, -1)))

    @staticmethod
    def _pointer(event) -> QPointF:
        """Where the pointer is: the centre of the screen pixel under it (a mouse reports that
        pixel's top-left corner), so a small brush at 100 % paints the pixel under the cursor,
        not the four that meet at its corner."""
        return event.position() + QPointF(0.5, 0.5)

    def mousePressEvent(self, event) -> None:
        pos = self._pointer(event)
        self.setFocus()
        if event.button() == Qt.MiddleButton or (
            event.button() == Qt.LeftButton and (self._space_held or self.tool == "pan")
        ):
            self._pan_from = pos
            self.setCursor(Qt.ClosedHandCursor)
        elif event.button() == Qt.LeftButton and self.compare.hit(pos.x(), self.width()):
            self.compare.dragging = True
        elif event.button() == Qt.LeftButton and self.document.mask is not None:
            erase = self.tool == "eraser" or bool(event.modifiers() & Qt.AltModifier)
            brush = Brush(self.brush.radius, self.brush.hardness, erase)
            self._stroke = StrokeRecorder(self.document.mask, brush, self.document.set_mask_region)
            self._paint_at(pos)
        event.accept()

    def _paint_at(self, pos: QPointF) -> None:
        s = self.to_scene(pos)
        self._painting = True
        try:
            self._stroke.paint_to(s.x(), s.y())  # the document says what changed (mask_changed)
        finally:
            self._painting = False

    def mouseMoveEvent(self, event) -> None:
        pos = self._pointer(event)
        if self._pan_from is not None:
            self.offset += pos - self._pan_from
            self._pan_from = pos
            self._fit_view = False
            self.update()
        elif self.compare.dragging:
            self.compare.drag_to(pos.x(), self.width())
            self.update()
        elif self._stroke is not None:
            self._paint_at(pos)
        self._move_cursor(pos)
        if self.compare.enabled and self._stroke is None and self._pan_from is None:
            self.setCursor(Qt.SplitHCursor if self.compare.hit(pos.x(), self.width()) else self._tool_cursor())

    def mouseReleaseEvent(self, event) -> None:
        if self._pan_from is not None and event.button() in (Qt.MiddleButton, Qt.LeftButton):
            self._pan_from = None
            self.setCursor(self._tool_cursor())
        self.compare.dragging = False
        if self._stroke is not None and event.button() == Qt.LeftButton:
            self.commit_stroke()
        event.accept()

    def commit_stroke(self) -> None:
        """End the current stroke as one undo step (the blocks of the tiles it changed)."""
        stroke, self._stroke = self._stroke, None
        deltas = stroke.finish() if stroke is not None else None
        if deltas:
            text = "Erase mask" if stroke.brush.erase else "Paint mask"
            self.document.undo_stack.push(stroke_command(self.document, deltas, text))

    def abort_stroke(self) -> None:
        stroke, self._stroke = self._stroke, None
        if stroke is not None:
            stroke.abort()

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(WHEEL_STEP**steps, self._pointer(event))
        event.accept()

    def leaveEvent(self, event) -> None:
        self._move_cursor(None)

    def _tool_cursor(self) -> QCursor:
        if self._space_held or self.tool == "pan":
            return QCursor(Qt.OpenHandCursor)
        return QCursor(Qt.CrossCursor)

    def set_tool(self, tool: str) -> None:
        self.tool = tool
        self.setCursor(self._tool_cursor())
        self.update()

    def keyPressEvent(self, event) -> None:
        key = event.key()
        if key == Qt.Key_Space and not event.isAutoRepeat():
            self._space_held = True
            self.setCursor(self._tool_cursor())
            self.update()
        elif key == Qt.Key_Backslash and not event.isAutoRepeat():
            self.compare.holding_original = True
            self.update()
        elif key == Qt.Key_Escape and self._stroke is not None:
            self.abort_stroke()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.isAutoRepeat():
            return
        if event.key() == Qt.Key_Space:
            self._space_held = False
            self.setCursor(self._tool_cursor())
            self.update()
        elif event.key() == Qt.Key_Backslash:
            self.compare.holding_original = False
            self.update()
        else:
            super().keyReleaseEvent(event)

    def resizeEvent(self, event) -> None:
        if self._fit_view and self._base is not None:
            self.fit()
        super().resizeEvent(event)
