"""The canvas's window-plan overlay during a run: every window's box (pending, running, finished)
and the running windows' current estimates. Boxes are in scene (photo pixel) coordinates; drawing
takes the canvas's zoom and offset (widget = scene · zoom + offset). Estimates are transient: never
part of the document, so a cancelled run leaves only finished windows."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen

#: Pen and fill of a box in each state, drawn in this order (running on top).
_STYLES = (("pending", QPen(QColor(255, 255, 255, 90), 1, Qt.DashLine), Qt.NoBrush),
           ("finished", QPen(QColor(80, 220, 120, 200), 1.5), Qt.NoBrush),
           ("running", QPen(QColor(255, 200, 40), 2.5), QColor(255, 200, 40, 40)))


class PlanOverlay:
    def __init__(self):
        self.boxes: list[QRectF] = []
        self.edges = np.zeros((0, 4))  # left, top, right, bottom of each box (scene)
        self.states: dict[int, str] = {}  # index -> running | finished
        self.estimates: dict[int, QImage] = {}  # index -> a running window's current estimate

    def set_boxes(self, boxes: Sequence[QRectF]) -> None:
        self.boxes = list(boxes)
        self.edges = np.array([[b.left(), b.top(), b.right(), b.bottom()] for b in self.boxes]).reshape(-1, 4)
        self.states, self.estimates = {}, {}

    def set_state(self, index: int, state: str) -> Optional[QRectF]:
        """Record window ``index``'s state; its box (to repaint), or None when it is not in the plan."""
        self.states[index] = state
        if state != "running":
            self.estimates.pop(index, None)
        return self.boxes[index] if 0 <= index < len(self.boxes) else None

    def set_estimate(self, index: int, pixels: np.ndarray) -> Optional[QRectF]:
        """Keep running window ``index``'s estimate ((h, w, 3) float in [0, 1]); its box, or None."""
        if not 0 <= index < len(self.boxes):
            return None
        rgb = np.ascontiguousarray((np.clip(pixels[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8))
        h, w = rgb.shape[:2]
        self.estimates[index] = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
        return self.boxes[index]

    def indices_in(self, left: float, top: float, right: float, bottom: float) -> np.ndarray:
        """Indices of the boxes that intersect the scene rectangle."""
        l, t, r, b = self.edges.T
        return np.flatnonzero((l < right) & (r > left) & (t < bottom) & (b > top))

    def draw_estimates(self, painter: QPainter, zoom: float, offset: QPointF) -> None:
        for index, image in self.estimates.items():
            box = self.boxes[index]
            painter.drawImage(QRectF(box.topLeft() * zoom + offset, box.bottomRight() * zoom + offset), image)

    def draw_boxes(self, painter: QPainter, indices: np.ndarray, zoom: float, offset: QPointF) -> None:
        """The boxes ``indices`` (those in view: a large photo has thousands), one batch per state."""
        ox, oy = offset.x(), offset.y()
        edges = self.edges[indices] * zoom + (ox, oy, ox, oy)
        rects: dict[str, list[QRectF]] = {state: [] for state, _pen, _brush in _STYLES}
        for i, (left, top, right, bottom) in zip(indices.tolist(), edges.tolist()):
            group = rects.get(self.states.get(i, "pending"), rects["pending"])
            group.append(QRectF(left + 1, top + 1, right - left - 2, bottom - top - 2))
        painter.save()
        painter.setRenderHint(QPainter.Antialiasing, False)
        for state, pen, brush in _STYLES:
            if rects[state]:
                painter.setPen(pen)
                painter.setBrush(brush)
                painter.drawRects(rects[state])
        painter.restore()
