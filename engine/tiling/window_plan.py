"""Pure window geometry for Mask-Shift Restoration: boxes, border snapping, alignment, levels.

Conventions (all sizes in pixels of the canvas being restored):

* Windows are ``window_h × window_w`` boxes; neighbours are ``stride = window − overlap`` apart;
  the last row/column of windows is snapped to the bottom/right border (its overlap with the
  previous one is then larger than ``overlap``).
* Every origin and size is a multiple of ``align`` (the SR factor, the pooling block of HiR), so
  a window's crop of the observation ``y`` starts on a whole observed pixel.
* **Small images.** A canvas smaller than a window is padded: the plan's ``padded_height`` /
  ``padded_width`` are at least one window and a multiple of ``align``. The caller pads the
  observation (symmetric reflection at input resolution, see ``engine.tiling.problem``), restores
  the padded canvas and crops the result back to ``height × width``. Canvases that are not a
  multiple of ``align`` are padded up to one the same way.
* **Levels (wavefront).** A window writes only the pixels no raster-earlier window covers (the
  pixels it *owns*); everything else in its box is a known region, imposed from the canvas.
  level(w) = 1 + the highest level among the windows that own a pixel of w's box (0 if none).
  So every pixel a window reads is written by a lower level, and no pixel is written twice: one
  batch per level reproduces raster order exactly. On a grid with stride ≤ window the owned part
  of window (i, j) is a rectangle (its rows below row i−1 × its columns right of column j−1), so
  (i, j) depends on (i, j−1) and (i−1, j) but not on (i−1, j+1), whose overlap with it was
  written by (i−1, j): windows on one anti-diagonal run together, R + C − 1 levels for R × C
  windows (2(R−1) + C if every overlap were a dependency).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence, Union

import numpy as np

from engine.geometry import Box

#: The networks downsample 5 times: window sides must be multiples of this.
NETWORK_MULTIPLE = 32


class WindowPlan(NamedTuple):
    """All windows of one stage, in raster order, with their wavefront levels."""

    height: int  # the real canvas (the result is cropped to this)
    width: int
    padded_height: int  # the canvas the windows tile (≥ one window, multiple of ``align``)
    padded_width: int
    window_h: int
    window_w: int
    align: int
    boxes: tuple[Box, ...]
    levels: tuple[int, ...]

    @property
    def num_levels(self) -> int:
        return (max(self.levels) + 1) if self.levels else 0

    def level_groups(self) -> list[list[int]]:
        """Window indices per level, each list in raster order."""
        groups: list[list[int]] = [[] for _ in range(self.num_levels)]
        for index, level in enumerate(self.levels):
            groups[level].append(index)
        return groups

    @property
    def needs_padding(self) -> bool:
        return (self.padded_height, self.padded_width) != (self.height, self.width)


def ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def effective_window(window: int, align: int = 1, multiple: int = NETWORK_MULTIPLE) -> int:
    """The largest window ≤ ``window`` that is a multiple of both ``align`` and ``multiple``.

    e.g. 256 for ×2/×4 SR, 192 for ×3 (256 is not a multiple of 3). Raises ValueError when even
    one block of lcm(align, multiple) does not fit.
    """
    block = math.lcm(align, multiple)
    out = (window // block) * block
    if out <= 0:
        raise ValueError(f"window {window} is smaller than one block of {block} px (align {align}, network {multiple})")
    return out


def effective_overlap(window: int, overlap: int, align: int = 1) -> int:
    """``overlap`` rounded down to a multiple of ``align`` and kept below ``window``."""
    out = (min(overlap, window - align) // align) * align
    return max(out, 0)


def axis_origins(length: int, window: int, stride: int) -> list[int]:
    """Window origins along one axis of a (padded) ``length`` ≥ ``window``: 0, stride, … with the
    last snapped to ``length − window``."""
    if length < window:
        raise ValueError(f"length {length} is smaller than the window {window}: pad first")
    if stride <= 0:
        raise ValueError("stride must be positive")
    origins = list(range(0, length - window + 1, stride))
    if origins[-1] != length - window:
        origins.append(length - window)
    return origins


def padded_length(length: int, window: int, align: int = 1) -> int:
    """Length of the canvas a plan tiles: ≥ ``window`` and a multiple of ``align``."""
    return max(ceil_to(length, align), window)


def plan_windows(
    height: int,
    width: int,
    window: Union[int, tuple[int, int]] = 256,
    overlap: int = 128,
    align: int = 1,
) -> WindowPlan:
    """Windows covering a ``height × width`` canvas (padded per the module rules).

    ``window`` (int or (h, w)) and ``overlap`` must already be multiples of ``align``
    (see :func:`effective_window`); ``overlap < window``.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"empty canvas {height}×{width}")
    wh, ww = (window, window) if isinstance(window, int) else window
    for name, v in (("window height", wh), ("window width", ww), ("overlap", overlap)):
        if v % align:
            raise ValueError(f"{name} {v} is not a multiple of the alignment {align}")
    if not 0 <= overlap < min(wh, ww):
        raise ValueError(f"overlap {overlap} must be in [0, window)")
    ph, pw = padded_length(height, wh, align), padded_length(width, ww, align)
    rows = axis_origins(ph, wh, wh - overlap)
    cols = axis_origins(pw, ww, ww - overlap)
    boxes = tuple(Box(r, c, wh, ww) for r in rows for c in cols)
    levels = grid_levels(rows, cols, wh, ww)
    return WindowPlan(height, width, ph, pw, wh, ww, align, boxes, tuple(levels))


def _owned(origins: Sequence[int], size: int) -> list[tuple[int, int]]:
    """For each (ascending) origin along one axis, the interval [start, end) no earlier one covers."""
    out, covered = [], 0
    for o in origins:
        out.append((max(o, covered), o + size))
        covered = max(covered, o + size)
    return out


def _owner_hits(origins: Sequence[int], size: int) -> list[list[int]]:
    """For each origin index i, the indices k whose owned interval meets [origins[i], origins[i] + size)."""
    owned = _owned(origins, size)
    return [[k for k, (start, end) in enumerate(owned) if start < a + size and a < end] for a in origins]


def grid_levels(rows: Sequence[int], cols: Sequence[int], window_h: int, window_w: int) -> list[int]:
    """Wavefront levels of a grid of equal boxes (raster order), from the actual intervals.

    On a grid with stride ≤ window the earlier windows cover whole rows above row i and the
    left part of row i, so the pixels window (k, l) owns are owned-rows(k) × owned-columns(l);
    it owns a pixel of (i, j) iff both intervals meet. Only those neighbours are checked:
    O(windows · neighbours) instead of O(windows²).
    """
    row_hits = _owner_hits(rows, window_h)
    col_hits = _owner_hits(cols, window_w)
    n_cols = len(cols)
    levels = [0] * (len(rows) * n_cols)
    for i in range(len(rows)):
        for j in range(n_cols):
            best = -1
            for i2 in row_hits[i]:
                if i2 > i:
                    continue
                for j2 in col_hits[j]:
                    if i2 == i and j2 >= j:
                        continue
                    best = max(best, levels[i2 * n_cols + j2])
            levels[i * n_cols + j] = best + 1
    return levels


def levels_from_boxes(boxes: Sequence[Box]) -> list[int]:
    """Wavefront levels for ANY list of boxes in raster order, from a pixel owner map (the
    reference definition; O(total box area))."""
    if not boxes:
        return []
    owner = np.full((max(b.bottom for b in boxes), max(b.right for b in boxes)), -1, np.int64)
    levels: list[int] = []
    for k, box in enumerate(boxes):
        region = owner[box.slices()]
        owners = np.unique(region[region >= 0])
        levels.append(1 + max(levels[m] for m in owners) if owners.size else 0)
        region[region < 0] = k
    return levels
