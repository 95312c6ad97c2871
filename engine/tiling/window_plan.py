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
* **Levels (wavefront).** level(w) = 1 + the highest level among raster-earlier windows whose box
  intersects w's box (0 if none). Windows of one level never overlap, and every window a window
  depends on has a lower level, so one batch per level reproduces raster order exactly.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence, Union

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


def _intersecting(origins: Sequence[int], size: int) -> list[list[int]]:
    """For each origin index, the indices of origins whose interval [o, o+size) meets it."""
    out = []
    for i, a in enumerate(origins):
        out.append([j for j, b in enumerate(origins) if a < b + size and b < a + size])
    return out


def grid_levels(rows: Sequence[int], cols: Sequence[int], window_h: int, window_w: int) -> list[int]:
    """Wavefront levels of a grid of equal boxes (raster order), from the actual intervals.

    Two boxes intersect iff their row intervals and their column intervals both intersect, so only
    those neighbours are checked: O(windows · neighbours) instead of O(windows²).
    """
    row_hits = _intersecting(rows, window_h)
    col_hits = _intersecting(cols, window_w)
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
    """Wavefront levels for ANY list of boxes in raster order (O(n²); the reference definition)."""
    levels: list[int] = []
    for k, box in enumerate(boxes):
        earlier = [levels[m] for m in range(k) if boxes[m].intersects(box)]
        levels.append(1 + max(earlier) if earlier else 0)
    return levels
