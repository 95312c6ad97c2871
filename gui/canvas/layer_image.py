"""Display layers for the canvas: pixel buffers wrapped by QImage, with a mip pyramid.

A layer holds the pixels the canvas shows, never the data the engine works on, and costs as
little memory as it can: the photo is shown from one 8-bit BGRA copy (4 bytes a pixel, made in
row bands, so no full-size temporary), and the mask from the document's own mask array (no
copy; a colour table tints it) with smaller tinted levels. Updating a region rewrites only that
region of the buffer and of each pyramid level, so a finished window of a 10000×8000 photo
costs a window's worth of work, not a whole-image conversion. Drawing reads only the visible part of the level
that fits the zoom. QImages are created and drawn in the GUI thread only.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PySide6.QtCore import QRect, QRectF
from PySide6.QtGui import QImage, QPainter, qRgba

#: Pyramid levels are only built down to this size (the canvas never needs smaller).
_MIN_LEVEL_SIZE = 256
#: Rows converted at a time: the temporaries of a conversion stay a few megabytes.
_BAND_ROWS = 128


def _band_to_uint8(band: np.ndarray) -> np.ndarray:
    """(h, w, 3) float in [0, 1] (clipped) or uint8/uint16 -> (h, w, 3) uint8, rounded."""
    if band.dtype == np.uint8:
        return band
    if band.dtype == np.uint16:
        return cv2.convertScaleAbs(band, alpha=255.0 / 65535.0)
    return cv2.convertScaleAbs(np.clip(band, 0.0, 1.0, dtype=np.float32), alpha=255.0)


def write_bgra(pixels: np.ndarray, out: np.ndarray) -> None:
    """Write (h, w, 3+) pixels (float [0, 1], uint8 or uint16; extra channels ignored) into the
    (h, w, 4) uint8 BGRA array ``out`` (opaque), a band of rows at a time."""
    for top in range(0, pixels.shape[0], _BAND_ROWS):
        rgb8 = _band_to_uint8(pixels[top : top + _BAND_ROWS, :, :3])
        dst = out[top : top + _BAND_ROWS]
        if dst.flags.c_contiguous:
            cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGRA, dst=dst)
        else:  # a region of a wider buffer
            dst[...] = cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGRA)


class _PyramidLayer:
    """A buffer plus half-size levels, drawn from the level that fits the zoom."""

    def __init__(self, base: np.ndarray, scale: float = 1.0):
        self.scale = float(scale)
        self.levels = [base]
        while min(self.levels[-1].shape[:2]) >= 2 * _MIN_LEVEL_SIZE:
            prev = self.levels[-1]
            h2, w2 = prev.shape[0] // 2, prev.shape[1] // 2
            self.levels.append(np.ascontiguousarray(self._half(prev[: h2 * 2, : w2 * 2], (w2, h2))))
        self._images = [self._qimage(level) for level in self.levels]

    def _half(self, above: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """A block of the next level, (width, height) ``size``, from the block above it."""
        return cv2.resize(above, size, interpolation=cv2.INTER_AREA)

    def _qimage(self, buffer: np.ndarray) -> QImage:
        """A QImage over ``buffer``'s memory (no copy): what the canvas draws."""
        raise NotImplementedError

    @property
    def height(self) -> int:
        return self.levels[0].shape[0]

    @property
    def width(self) -> int:
        return self.levels[0].shape[1]

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
            lvl = self.levels[k]
            lt, ll = t0 // f, l0 // f
            lb, lr = min(-(-bottom // f), lvl.shape[0]), min(-(-right // f), lvl.shape[1])
            if lb <= lt or lr <= ll:
                return
            above = self.levels[k - 1][lt * 2 : lb * 2, ll * 2 : lr * 2]
            lvl[lt:lb, ll:lr] = self._half(above, (lr - ll, lb - lt))

    def draw(self, painter: QPainter, zoom: float, offset: tuple[float, float], exposed: QRect) -> None:
        """Draw the part of the layer inside the widget rectangle ``exposed``.

        ``zoom`` is widget pixels per scene pixel; scene (x, y) maps to widget
        ``(x * zoom + offset[0], y * zoom + offset[1])``; one scene pixel holds ``scale`` layer pixels.
        """
        px_zoom = zoom / self.scale  # widget pixels per layer pixel
        k = 0
        if px_zoom < 1.0:
            k = min(len(self.levels) - 1, int(math.floor(math.log2(1.0 / px_zoom) + 1e-9)))
        lh, lw = self.levels[k].shape[:2]
        lzoom = px_zoom * 2**k  # widget pixels per level pixel
        ox, oy = offset
        x0 = max(0, int(math.floor((exposed.left() - ox) / lzoom)))
        y0 = max(0, int(math.floor((exposed.top() - oy) / lzoom)))
        x1 = min(lw, int(math.ceil((exposed.right() + 1 - ox) / lzoom)))
        y1 = min(lh, int(math.ceil((exposed.bottom() + 1 - oy) / lzoom)))
        if x1 <= x0 or y1 <= y0:
            return
        source = QRectF(x0, y0, x1 - x0, y1 - y0)
        # a photo thinner than a screen pixel (a 7×100000 strip, fitted) still shows, as a line
        tw, th = (x1 - x0) * lzoom if lw * lzoom >= 1 else 1.0, (y1 - y0) * lzoom if lh * lzoom >= 1 else 1.0
        target = QRectF(x0 * lzoom + ox, y0 * lzoom + oy, tw, th)
        painter.setRenderHint(QPainter.SmoothPixmapTransform, lzoom < 2.0)
        painter.drawImage(target, self._images[k], source)


class RgbLayer(_PyramidLayer):
    """An RGB image shown by the canvas, as opaque BGRA (= QImage.Format_RGB32 on little endian).

    ``scale`` is how many layer pixels cover one canvas (scene) pixel, e.g. 4 for an ×4
    upscaled result drawn over the input photo.
    """

    def __init__(self, pixels: np.ndarray, scale: float = 1.0):
        base = np.empty(pixels.shape[:2] + (4,), np.uint8)
        write_bgra(pixels, base)
        super().__init__(base, scale)

    def _qimage(self, buffer: np.ndarray) -> QImage:
        h, w = buffer.shape[:2]
        return QImage(buffer.data, w, h, w * 4, QImage.Format_RGB32)

    def update_region(self, top: int, left: int, pixels: np.ndarray) -> None:
        """Write (h, w, 3) pixels (float [0, 1] or uint8) at (top, left) in layer coordinates."""
        clipped = self._clip(top, left, *pixels.shape[:2])
        if clipped is None:
            return
        t0, l0, bottom, right = clipped
        write_bgra(pixels[t0 - top : bottom - top, l0 - left : right - left], self.levels[0][t0:bottom, l0:right])
        self._refresh_levels(t0, l0, bottom, right)

    def pixel_rgb(self, row: int, col: int) -> tuple[int, int, int]:
        b, g, r, _ = self.levels[0][row, col]
        return int(r), int(g), int(b)


class MaskLayer(_PyramidLayer):
    """The mask as a tinted overlay, drawn at 100 % and closer straight from the mask array
    (H, W) uint8 it is given, with a colour table mapping each value to the tint with that alpha:
    no copy of it is made, so after the mask changes in place, :meth:`refresh_region` only brings
    the smaller levels up to date. Those are tinted premultiplied ARGB (a third of the mask's
    size in all, at 4 bytes a pixel), which Qt draws scaled down several times faster than
    a colour-table image. Opacity is applied when drawing, so changing it costs nothing.
    """

    def __init__(self, mask: np.ndarray, color: tuple[int, int, int] = (255, 48, 48)):
        if mask.dtype != np.uint8 or mask.ndim != 2 or not mask.flags.c_contiguous:
            raise ValueError("a mask layer shows a C-contiguous (H, W) uint8 mask")
        self._colors = [qRgba(*color, a) for a in range(256)]
        a = np.arange(256, dtype=np.uint32)
        r, g, b = ((c * a + 127) // 255 for c in color)
        self._premultiplied = (a << 24) | (r << 16) | (g << 8) | b  # 0xAARRGGBB per mask value
        super().__init__(mask, 1.0)

    @property
    def source(self) -> np.ndarray:
        """The mask this layer shows."""
        return self.levels[0]

    def _half(self, above: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        half = super()._half(above, size)
        if half.ndim == 3:
            return half
        return self._premultiplied[half].view(np.uint8).reshape(half.shape + (4,))  # from the mask: tinted

    def _qimage(self, buffer: np.ndarray) -> QImage:
        h, w = buffer.shape[:2]
        if buffer.ndim == 3:
            return QImage(buffer.data, w, h, w * 4, QImage.Format_ARGB32_Premultiplied)
        image = QImage(buffer.data, w, h, w, QImage.Format_Indexed8)
        image.setColorTable(self._colors)
        return image

    def refresh_region(self, top: int, left: int, h: int, w: int) -> None:
        """The mask changed inside (top, left, h, w): update the pyramid there."""
        clipped = self._clip(top, left, h, w)
        if clipped is not None:
            self._refresh_levels(*clipped)

    def draw_with_opacity(self, painter: QPainter, zoom: float, offset, exposed: QRect, opacity: float) -> None:
        if opacity <= 0:
            return
        painter.save()
        painter.setOpacity(opacity)
        self.draw(painter, zoom, offset, exposed)
        painter.restore()
