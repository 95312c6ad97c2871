"""Painting into the numpy mask: soft round brush / eraser strokes and whole-mask operations.

The mask is (H, W) uint8, 0 = keep, 255 = fill; soft edges hold values in between. Painting
takes the maximum with the brush footprint (eraser: the minimum with its complement), so
overlapping dabs of one stroke never build up and a stroke is exactly undoable from a delta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

#: (top, left, height, width) of a changed block of the mask
Region = tuple[int, int, int, int]
#: A changed block of the mask with its old and new pixels: an undo step holds a few of them
Delta = tuple[Region, np.ndarray, np.ndarray]


@dataclass
class Brush:
    radius: float = 24.0  # pixels of the photo
    hardness: float = 0.7  # 1 = hard edge; 0 = fades from the centre to the rim
    erase: bool = False

    MIN_RADIUS = 1.0
    MAX_RADIUS = 1000.0

    def resized(self, factor: float) -> float:
        return float(np.clip(self.radius * factor, self.MIN_RADIUS, self.MAX_RADIUS))


def segment_footprint(
    shape: tuple[int, int], p0: tuple[float, float], p1: tuple[float, float], brush: Brush
) -> tuple[Region, np.ndarray] | None:
    """The brush swept from ``p0`` to ``p1`` (x, y in pixel coordinates, pixel centres at +0.5).

    Returns (region, alpha) with alpha (h, w) uint8 0..255 covering ``region`` of a mask of
    ``shape``, or None when the segment misses the mask.
    """
    r = max(brush.radius, 0.5)
    (x0, y0), (x1, y1) = p0, p1
    h, w = shape
    left = max(0, int(np.floor(min(x0, x1) - r)))
    right = min(w, int(np.ceil(max(x0, x1) + r)) + 1)
    top = max(0, int(np.floor(min(y0, y1) - r)))
    bottom = min(h, int(np.ceil(max(y0, y1) + r)) + 1)
    if right <= left or bottom <= top:
        return None
    # A 1000-pixel brush covers millions of pixels at every mouse move: the distances are worked
    # out in place, in float32, with two region-sized arrays at most.
    u = np.arange(left, right, dtype=np.float32)[None, :] + np.float32(0.5 - x0)  # pixel centre - p0
    v = np.arange(top, bottom, dtype=np.float32)[:, None] + np.float32(0.5 - y0)
    dx, dy = np.float32(x1 - x0), np.float32(y1 - y0)
    length2 = dx * dx + dy * dy
    if length2 > 1e-12:  # distance to the segment (a capsule)
        t = u * (dx / length2) + v * (dy / length2)  # where along the segment the closest point is
        np.clip(t, 0.0, 1.0, out=t)
        dist = t * -dx
        dist += u
        dist *= dist
        t *= -dy
        t += v
        t *= t
        dist += t
        del t
    else:
        dist = u * u + v * v
    np.sqrt(dist, out=dist)
    inner = r * float(np.clip(brush.hardness, 0.0, 1.0))
    ramp = max(r - inner, 0.5)
    dist *= np.float32(-255.0 / ramp)  # alpha = 255 · clip((r - dist) / ramp, 0, 1), rounded
    dist += np.float32(255.0 * r / ramp + 0.5)
    alpha = np.clip(dist, 0.0, 255.5, out=dist).astype(np.uint8)
    if not alpha.any():
        return None
    return (top, left, bottom - top, right - left), alpha


def apply_footprint(mask_block: np.ndarray, alpha: np.ndarray, erase: bool) -> np.ndarray:
    """New values of a mask block under a brush footprint (does not modify the input)."""
    if erase:
        return np.minimum(mask_block, 255 - alpha)
    return np.maximum(mask_block, alpha)


#: Side of the square tiles a stroke saves before it first paints over them (see StrokeRecorder).
STROKE_TILE = 64


class StrokeRecorder:
    """Paints one stroke into a mask and remembers what it changed, tile by tile.

    Before a dab first changes a tile (``STROKE_TILE`` pixels square) of the mask, the tile is
    saved, so a stroke holds the pixels it painted over and nothing else, however large the mask
    and however long and slanted the stroke. ``finish`` returns the undo deltas: per changed
    tile, the block of it that changed with its old and new pixels. Pixels are written by
    ``write(top, left, values)`` (default: straight into ``mask``), so the owner of the mask sees
    every change.
    """

    def __init__(self, mask: np.ndarray, brush: Brush,
                 write: Callable[[int, int, np.ndarray], None] | None = None):
        self.mask = mask
        self.brush = Brush(brush.radius, brush.hardness, brush.erase)
        self._write = write or self._write_mask
        self._saved: dict[tuple[int, int], np.ndarray] = {}  # (row, column) of a tile -> its pixels before
        self._last: tuple[float, float] | None = None

    def _write_mask(self, top: int, left: int, values: np.ndarray) -> None:
        self.mask[top : top + values.shape[0], left : left + values.shape[1]] = values

    @property
    def saved_bytes(self) -> int:
        """Memory held for undo while the stroke goes on."""
        return sum(tile.nbytes for tile in self._saved.values())

    def _save_tiles(self, top: int, left: int, h: int, w: int) -> None:
        t = STROKE_TILE
        for row in range(top // t, (top + h - 1) // t + 1):
            for col in range(left // t, (left + w - 1) // t + 1):
                if (row, col) not in self._saved:
                    self._saved[row, col] = self.mask[row * t : (row + 1) * t, col * t : (col + 1) * t].copy()

    def paint_to(self, x: float, y: float) -> Region | None:
        """Extend the stroke to (x, y); returns the region of the mask that changed (or None)."""
        p0 = self._last if self._last is not None else (x, y)
        self._last = (x, y)
        fp = segment_footprint(self.mask.shape[:2], p0, (x, y), self.brush)
        if fp is None:
            return None
        (top, left, h, w), alpha = fp
        block = self.mask[top : top + h, left : left + w]
        new = apply_footprint(block, alpha, self.brush.erase)
        if np.array_equal(new, block):
            return None
        self._save_tiles(top, left, h, w)
        self._write(top, left, new)
        return (top, left, h, w)

    def finish(self) -> list[Delta]:
        """The stroke's undo deltas (empty if nothing changed): per tile, the block that changed."""
        deltas = []
        for (row, col), before in self._saved.items():
            top, left = row * STROKE_TILE, col * STROKE_TILE
            now = self.mask[top : top + before.shape[0], left : left + before.shape[1]]
            changed = changed_region(before, now)
            if changed is not None:
                t, l, h, w = changed
                old, new = before[t : t + h, l : l + w].copy(), now[t : t + h, l : l + w].copy()
                deltas.append(((top + t, left + l, h, w), old, new))
        self._saved = {}
        return deltas

    def abort(self) -> None:
        """Undo the stroke in place (e.g. Escape while painting)."""
        for (row, col), before in self._saved.items():
            self._write(row * STROKE_TILE, col * STROKE_TILE, before)
        self._saved = {}


# ---- whole-mask operations (each returns the new mask; the caller makes them undoable) -------
def invert_mask(mask: np.ndarray) -> np.ndarray:
    return 255 - mask


def clear_mask(mask: np.ndarray) -> np.ndarray:
    return np.zeros_like(mask)


def grow_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate (pixels > 0) or erode (pixels < 0) with a round kernel of that radius."""
    if pixels == 0:
        return mask.copy()
    n = abs(int(pixels))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * n + 1, 2 * n + 1))
    return cv2.dilate(mask, kernel) if pixels > 0 else cv2.erode(mask, kernel)


def mask_from_image(strength: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask (H, W) uint8 from an imported mask's (H', W') float strength in [0, 1]
    (``engine.image_io.mask_strength``), resized to ``shape`` if needed. Converted with a
    single float temporary (a scan's mask has tens of megapixels)."""
    pixels = cv2.convertScaleAbs(np.clip(strength, 0.0, 1.0, dtype=np.float32), alpha=255.0)
    if pixels.shape != tuple(shape):
        pixels = cv2.resize(pixels, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(pixels)


def changed_region(old: np.ndarray, new: np.ndarray) -> Region | None:
    """Bounding box of the pixels that differ between two masks of one shape."""
    return nonzero_region(old != new)


def nonzero_region(mask: np.ndarray) -> Region | None:
    """Bounding box of the nonzero pixels of a mask, or None when it is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
