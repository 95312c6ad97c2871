"""Before/after comparison on the canvas: a draggable vertical split line and a hold-to-see key.

Left of the split shows "before", right of it "after". With a result preview, before is the
current photo and after is the preview; without one, before is the photo as loaded and after is
the current photo (so an applied restoration can still be compared).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen

#: How close (widget pixels) a press must be to grab the split line.
GRAB_DISTANCE = 8


class CompareState:
    """Where the split is (fraction of the widget width) and whether the original is held."""

    def __init__(self) -> None:
        self.enabled = False
        self.split = 0.5
        self.holding_original = False
        self.dragging = False

    def split_x(self, width: int) -> float:
        return self.split * width

    def hit(self, x: float, width: int) -> bool:
        return self.enabled and abs(x - self.split_x(width)) <= GRAB_DISTANCE

    def drag_to(self, x: float, width: int) -> None:
        self.split = min(1.0, max(0.0, x / max(width, 1)))

    def before_clip(self, rect: QRect) -> QRect:
        """The widget area where the "before" layer is shown (empty when comparing is off)."""
        if self.holding_original:
            return QRect(rect)
        if not self.enabled:
            return QRect()
        return QRect(rect.left(), rect.top(), round(self.split_x(rect.width())), rect.height())


def draw_split_line(painter: QPainter, state: CompareState, rect: QRect, labels: tuple[str, str]) -> None:
    """The split line with a round handle and "before"/"after" labels."""
    if not state.enabled or state.holding_original:
        return
    x = state.split_x(rect.width())
    painter.save()
    painter.setRenderHint(QPainter.Antialiasing, True)
    painter.setPen(QPen(QColor(0, 0, 0, 160), 3))
    painter.drawLine(QPointF(x, rect.top()), QPointF(x, rect.bottom()))
    painter.setPen(QPen(QColor(255, 255, 255), 1.5))
    painter.drawLine(QPointF(x, rect.top()), QPointF(x, rect.bottom()))
    cy = rect.center().y()
    painter.setBrush(QColor(255, 255, 255))
    painter.setPen(QPen(QColor(0, 0, 0, 180), 1))
    painter.drawEllipse(QPointF(x, cy), 11, 11)
    arrows = QPainterPath()
    for sign in (-1, 1):
        arrows.moveTo(x + sign * 3, cy - 5)
        arrows.lineTo(x + sign * 8, cy)
        arrows.lineTo(x + sign * 3, cy + 5)
    painter.setBrush(Qt.NoBrush)
    painter.setPen(QPen(QColor(40, 40, 40), 1.6))
    painter.drawPath(arrows)
    font = QFont(painter.font())
    font.setBold(True)
    painter.setFont(font)
    for text, left_side in ((labels[0], True), (labels[1], False)):
        tw = painter.fontMetrics().horizontalAdvance(text) + 12
        _badge(painter, x - tw - 10 if left_side else x + 10, rect.top() + 10, text, pad=6)
    painter.restore()


def _badge(painter: QPainter, left: float, top: float, text: str, pad: int) -> None:
    """White text on a rounded translucent black box whose top-left corner is (left, top)."""
    metrics = painter.fontMetrics()
    box = QRectF(left, top, metrics.horizontalAdvance(text) + 2 * pad, metrics.height() + pad)
    painter.setPen(Qt.NoPen)
    painter.setBrush(QColor(0, 0, 0, 160))
    painter.drawRoundedRect(box, 4, 4)
    painter.setPen(QColor(255, 255, 255))
    painter.drawText(box, Qt.AlignCenter, text)


def draw_holding_badge(painter: QPainter, rect: QRect, text: str) -> None:
    painter.save()
    tw = painter.fontMetrics().horizontalAdvance(text) + 16
    _badge(painter, rect.center().x() - tw / 2, rect.top() + 10, text, pad=8)
    painter.restore()
