"""Tears and missing corners: flat near-white (paper) or near-black (scanner lid) regions at the border.

Found on a small view of the whole photo (long side :data:`VIEW_SIDE`), where a region is judged
as a whole:

- near-white (gray ≥ 0.75 and little colour) or near-black (gray ≤ 0.12), and flat (local spread
  of the gray ≤ 0.035), opened by 3 × 3 so that thin things do not count;
- touching the border, between 0.15 % and 10 % of the photo, and along no side more than 60 %
  of it (a white margin or a border all round is the print's, not damage; a sky is large);
- flat inside (spread ≤ 0.025) and clearly apart from what surrounds it;
- a region that holds no corner must be flatter (≤ 0.015) and stand out more (≥ 0.2), as skies and
  white walls at an edge often do not.

Its score grows with how much it stands out. At the analysis resolution each region takes the
pixels near it whose gray is within 0.1 of the region's, so its outline follows the tear.
"""

from __future__ import annotations

import cv2
import numpy as np

from engine.detection.thin_damage import gray_of

VIEW_SIDE = 512
_FLAT = 0.035


def _regions(view: np.ndarray) -> list[tuple[np.ndarray, float, float]]:
    """(region mask on the view, its gray level, its score) of each tear found on ``view``."""
    g = gray_of(view)
    h, w = g.shape
    sat = np.zeros_like(g) if view.ndim == 2 else view.max(axis=2) - view.min(axis=2)
    mean = cv2.blur(g, (5, 5))
    flat = np.sqrt(np.maximum(cv2.blur(g * g, (5, 5)) - mean * mean, 0)) <= _FLAT
    found = []
    for level in ((g >= 0.75) & (sat <= 0.2), g <= 0.12):
        candidates = cv2.morphologyEx((level & flat).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(candidates, connectivity=8)
        for i in range(1, n):
            if not 0.0015 * h * w <= stats[i, 4] <= 0.10 * h * w:
                continue
            region = labels == i
            sides = (region[0].mean(), region[-1].mean(), region[:, 0].mean(), region[:, -1].mean())
            if max(sides) == 0 or max(sides) > 0.6:
                continue
            corner = bool(region[0, 0] or region[0, -1] or region[-1, 0] or region[-1, -1])
            grown = region.astype(np.uint8)
            near = cv2.dilate(grown, np.ones((3, 3), np.uint8)) > 0
            ring = (cv2.dilate(grown, np.ones((9, 9), np.uint8)) > 0) & ~near
            inside = float(g[region].mean())
            contrast = abs(inside - float(g[ring].mean())) if ring.any() else 0.0
            spread = float(g[region].std())
            if spread > 0.025 or (not corner and (spread > 0.015 or contrast < 0.2)):
                continue
            found.append((region, inside, float(1 / (1 + np.exp(-(contrast - 0.12) / 0.03)))))
    return found


def tear_scores(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 damage scores of tears and missing corners in ``rgb`` (H, W, 3) or (H, W)."""
    height, width = rgb.shape[:2]
    f = min(1.0, VIEW_SIDE / max(height, width))
    view = rgb if f == 1 else cv2.resize(rgb, (max(1, round(width * f)), max(1, round(height * f))),
                                         interpolation=cv2.INTER_AREA)
    scores = np.zeros((height, width), np.float32)
    regions = _regions(view)
    if not regions:
        return scores
    g = gray_of(rgb)
    for region, level, score in regions:
        near = cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8))
        if f != 1:
            near = cv2.resize(near, (width, height), interpolation=cv2.INTER_NEAREST)
        pixels = (near > 0) & (np.abs(g - level) <= 0.1)
        pixels = cv2.morphologyEx(pixels.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > 0
        scores[pixels] = np.maximum(scores[pixels], score)
    return scores
