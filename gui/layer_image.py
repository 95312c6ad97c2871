"""Display layers for the canvas: numpy-owned pixel buffers wrapped by QImage, with a mip pyramid.

A layer holds the pixels the canvas shows (never the data the engine works on). Updating a
region rewrites only that region of the buffer and of each pyramid level, so a finished window
of a 6000×4000 photo costs a window's worth of work, not a whole-image conversion. QImages are
created and drawn in the GUI thread only.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PySide6.QtCore import QRect, QRectF
from PySide6.QtGui import QImage, QPainter

#: Pyramid levels are only built down to this size (the canvas never needs smaller).
_MIN_LEVEL_SIZE = 256


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] or uint8/uint16 -> (H, W, 3) uint8."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return (pixels >> 8).astype(np.uint8)
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _rgb_to_bgra(rgb8: np.ndarray, out: np.ndarray) -> None:
    out[..., 0] = rgb8[..., 2]
    out[..., 1] = rgb8[..., 1]
    out[..., 2] = rgb8[..., 0]
    out[..., 3] = 255


class _Level:
    """One buffer (H, W, 4) uint8 BGRA (= QImage.Format_RGB32 / ARGB32 on little endian)."""

    def __init__(self, buffer: np.ndarray, fmt: QImage.Format):
        self.buffer = buffer
        h, w = buffer.shape[:2]
        self.qimage = QImage(buffer.data, w, h, w * 4, fmt)


class _PyramidLayer:
    """A BGRA buffer plus half-size levels, drawn from the level that fits the zoom."""

    FORMAT = QImage.Format_RGB32

    def __init__(self, base: np.ndarray, scale: float = 1.0):
        self.scale = float(scale)
        self.levels = [_Level(base, self.FORMAT)]
        while min(self.levels[-1].buffer.shape[:2]) >= 2 * _MIN_LEVEL_SIZE:
            prev = self.levels[-1].buffer
            h2, w2 = prev.shape[0] // 2, prev.shape[1] // 2
            half = cv2.resize(prev[: h2 * 2, : w2 * 2], (w2, h2), interpolation=cv2.INTER_AREA)
            self.levels.append(_Level(np.ascontiguousarray(half), self.FORMAT))

    @property
    def height(self) -> int:
        return self.levels[0].buffer.shape[0]

    @property
    def width(self) -> int:
        return self.levels[0].buffer.shape[1]

    def _clip(self, top: int, left: int, h: int, w: int) -> tuple[int, int, int, int] | None:
        t0, l0 = max(top, 0), max(left, 0)
        bottom, right = min(top + h, self.height), min(left + w, self.width)
        if bottom <= t0 or right <= l0:
            return None
        return t0, l0, bottom, right

    def _refresh_levels(self, t0: int, l0: int, bottom: int, right: int) -> None:
        """Recompute the pyramid over the base-level block [t0, bottom) x [l0, right)."""
        for k in range(1, len(self.levels)):
            f = 2**k
            lvl = self.levels[k].buffer
            lt, ll = t0 // f, l0 // f
            lb, lr = min(-(-bottom // f), lvl.shape[0]), min(-(-right // f), lvl.shape[1])
            if lb <= lt or lr <= ll:
                return
            above = self.levels[k - 1].buffer[lt * 2 : lb * 2, ll * 2 : lr * 2]
            lvl[lt:lb, ll:lr] = cv2.resize(above, (lr - ll, lb - lt), interpolation=cv2.INTER_AREA)

    def draw(self, painter: QPainter, zoom: float, offset: tuple[float, float], exposed: QRect) -> None:
        """Draw the part of the layer inside the widget rectangle ``exposed``.

        ``zoom`` is widget pixels per scene pixel; scene (x, y) maps to widget
        ``(x * zoom + offset[0], y * zoom + offset[1])``; one scene pixel holds ``scale`` layer pixels.
        """
        px_zoom = zoom / self.scale  # widget pixels per layer pixel
        k = 0
        if px_zoom < 1.0:
            k = min(len(self.levels) - 1, int(math.floor(math.log2(1.0 / px_zoom) + 1e-9)))
        level = self.levels[k]
        lh, lw = level.buffer.shape[:2]
        lzoom = px_zoom * 2**k  # widget pixels per level pixel
        ox, oy = offset
        x0 = max(0, int(math.floor((exposed.left() - ox) / lzoom)))
        y0 = max(0, int(math.floor((exposed.top() - oy) / lzoom)))
        x1 = min(lw, int(math.ceil((exposed.right() + 1 - ox) / lzoom)))
        y1 = min(lh, int(math.ceil((exposed.bottom() + 1 - oy) / lzoom)))
        if x1 <= x0 or y1 <= y0:
            return
        source = QRectF(x0, y0, x1 - x0, y1 - y0)
        target = QRectF(x0 * lzoom + ox, y0 * lzoom + oy, (x1 - x0) * lzoom, (y1 - y0) * lzoom)
        painter.setRenderHint(QPainter.SmoothPixmapTransform, lzoom < 2.0)
        painter.drawImage(target, level.qimage, source)


class RgbLayer(_PyramidLayer):
    """An RGB image shown by the canvas.

    ``scale`` is how many layer pixels cover one canvas (scene) pixel, e.g. 4 for an ×4
    upscaled result drawn over the input photo.
    """

    def __init__(self, pixels: np.ndarray, scale: float = 1.0):
        rgb8 = to_uint8(pixels[..., :3])
        base = np.empty(rgb8.shape[:2] + (4,), np.uint8)
        _rgb_to_bgra(rgb8, base)
        super().__init__(base, scale)

    def update_region(self, top: int, left: int, pixels: np.ndarray) -> None:
        """Write (h, w, 3) pixels (float [0, 1] or uint8) at (top, left) in layer coordinates."""
        clipped = self._clip(top, left, *pixels.shape[:2])
        if clipped is None:
            return
        t0, l0, bottom, right = clipped
        src = to_uint8(pixels[t0 - top : bottom - top, l0 - left : right - left, :3])
        _rgb_to_bgra(src, self.levels[0].buffer[t0:bottom, l0:right])
        self._refresh_levels(t0, l0, bottom, right)

    def pixel_rgb(self, row: int, col: int) -> tuple[int, int, int]:
        b, g, r, _ = self.levels[0].buffer[row, col]
        return int(r), int(g), int(b)


class MaskLayer(_PyramidLayer):
    """The mask as a tinted overlay: premultiplied ARGB whose alpha is the mask value (0..255).

    Opacity is applied when drawing, so changing it costs nothing.
    """

    FORMAT = QImage.Format_ARGB32_Premultiplied

    def __init__(self, mask: np.ndarray, color: tuple[int, int, int] = (255, 48, 48)):
        a = np.arange(256, dtype=np.uint32)
        r, g, b = ((c * a + 127) // 255 for c in color)
        self._lut = (a << 24) | (r << 16) | (g << 8) | b  # premultiplied 0xAARRGGBB per mask value
        base = np.empty(mask.shape[:2] + (4,), np.uint8)
        self._fill(base, mask)
        super().__init__(base, 1.0)

    def _fill(self, region: np.ndarray, values: np.ndarray) -> None:
        region.view(np.uint32)[..., 0] = self._lut[values]

    def update_region(self, top: int, left: int, values: np.ndarray) -> None:
        """Rewrite the overlay at (top, left) from mask values (h, w) uint8."""
        clipped = self._clip(top, left, *values.shape[:2])
        if clipped is None:
            return
        t0, l0, bottom, right = clipped
        self._fill(self.levels[0].buffer[t0:bottom, l0:right], values[t0 - top : bottom - top, l0 - left : right - left])
        self._refresh_levels(t0, l0, bottom, right)

    def draw_with_opacity(self, painter: QPainter, zoom: float, offset, exposed: QRect, opacity: float) -> None:
        if opacity <= 0:
            return
        painter.save()
        painter.setOpacity(opacity)
        self.draw(painter, zoom, offset, exposed)
        painter.restore()
