"""Scratches, cracks and dust specks: thin light or dark structures, each scored as a whole.

For each polarity (light damage: white top-hat; dark damage: black top-hat) at two scales (the
image and its half, so wider damage is seen too):

1. **Response.** The top-hat of the gray image with a disc of ``k`` pixels (``k`` follows the
   image size: about 1.2 % of its shorter side, at least 5) keeps what is thinner than ``k``.
   It is divided by the texture of its surroundings (the local spread of the image with the thin
   things of that polarity removed: its opening, or closing), so a faint scratch on a smooth sky
   counts as much as a strong one on a textured wall.
2. **Candidates.** Pixels that stand out (normalised response and contrast over thresholds) form
   connected components; for scratches, small gaps are closed first.
3. **Shape tests and score.** Long components are scratch candidates, small compact ones speck
   candidates. Each is described by a few measurements (contrast, normalised contrast, length or
   area, elongation, how densely candidates crowd around it, whether it is less saturated than
   its surroundings as damage that shows the paper or black is, the share that survives line
   openings in 8 directions) and gets a damage probability from a logistic model. The weights
   were fitted once on synthetic damage (:mod:`engine.detection.synthetic`) drawn on the old
   photos of the test data (``bench/fit_damage_detector.py``), never on the Kodak photos the
   quality table in docs/damage-detection.md is measured on.

Every pixel of a component gets the component's probability (so the mask at any sensitivity is
a plain threshold, see :func:`engine.detection.mask_from_scores`), widened by one pixel to cover
the damage's soft edge.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import cv2
import numpy as np

#: Feature names, in the order of the weights.
LINE_FEATURES = ("z", "log_extent", "density", "desaturation", "log_elongation", "contrast", "texture", "dark",
                 "lineness")
SPECK_FEATURES = ("z", "log_area", "density", "desaturation", "contrast", "texture", "dark")
#: Logistic weights and bias (bench/fit_damage_detector.py prints them).
LINE_WEIGHTS = (0.531, 0.69, -12, -24.7, 0.46, 3.41, -10.4, -1.22, -0.448)
LINE_BIAS = -1.88
SPECK_WEIGHTS = (0.386, 0.196, -13.2, -26.3, 1.55, 3.87, -0.325)
SPECK_BIAS = -2.65

LINE_MIN_EXTENT = 0.04  # of the shorter side: shorter components are not scratches
SPECK_MAX_RADIUS = 0.024  # of the shorter side: larger components are not specks
SPECK_MAX_EXTENT = 0.04
BORDER = 3  # pixels along the photo's border that are ignored (the edge of a print or a scan)
_TEXTURE_FLOOR = 0.02  # added to the texture measure (so a flat region does not divide by 0)


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """Luma (ITU-R 601) of (H, W, 3) or (H, W) pixels in [0, 1], float32."""
    if rgb.ndim == 2:
        return rgb.astype(np.float32, copy=False)
    gray = cv2.transform(rgb.astype(np.float32, copy=False), np.float32([[0.299, 0.587, 0.114]]))
    return gray.reshape(rgb.shape[:2])


def structure_size(short_side: int) -> int:
    """The top-hat's disc for an image whose shorter side is ``short_side`` (odd, ≥ 5)."""
    return max(5, int(round(0.012 * short_side))) | 1


@lru_cache(maxsize=8)
def _line_kernels(length: int, count: int = 8) -> tuple[np.ndarray, ...]:
    kernels = []
    c = length // 2
    for i in range(count):
        angle = np.pi * i / count
        kernel = np.zeros((length, length), np.uint8)
        dx, dy = np.cos(angle) * c, np.sin(angle) * c
        cv2.line(kernel, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1, 1)
        kernels.append(kernel)
    return tuple(kernels)


def _maps(rgb: np.ndarray, short: int) -> list[dict]:
    """Per polarity: the response maps of one scale (see the module doc)."""
    g = gray_of(rgb)
    k = structure_size(short)
    desaturation = None
    if rgb.ndim == 3:
        sat = rgb.max(axis=2) - rgb.min(axis=2)
        desaturation = sat - cv2.blur(sat, (2 * k + 1, 2 * k + 1))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    out = []
    for dark, op in ((0.0, cv2.MORPH_OPEN), (1.0, cv2.MORPH_CLOSE)):
        background = cv2.morphologyEx(g, op, disc, borderType=cv2.BORDER_REFLECT)  # the thin things removed
        contrast = background - g if dark else g - background  # the top-hat (black-hat)
        mean = cv2.blur(background, (3 * k, 3 * k))
        texture = np.sqrt(np.maximum(cv2.blur(background * background, (3 * k, 3 * k)) - mean * mean, 0))
        lines = np.zeros_like(contrast)
        for kernel in _line_kernels(2 * k + 1):
            np.maximum(lines, cv2.morphologyEx(contrast, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_REFLECT),
                       out=lines)
        out.append(dict(dark=dark, contrast=contrast, z=contrast / (texture + _TEXTURE_FLOOR), texture=texture,
                        lineness=(lines >= 0.5 * contrast).astype(np.float32), desaturation=desaturation))
    return out


def _candidates(maps: dict, kind: str, border: tuple[int, int, int, int]) -> np.ndarray:
    if kind == "line":
        mask = (maps["z"] > 2.5) & (maps["contrast"] > 0.04)
    else:
        mask = (maps["z"] > 3.0) & (maps["contrast"] > 0.06)
    top, bottom, left, right = border
    mask[:top] = False
    mask[mask.shape[0] - bottom:] = False
    mask[:, :left] = False
    mask[:, mask.shape[1] - right:] = False
    if kind == "line":  # close one-pixel gaps: a scratch is one thing, not dashes
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > 0
    return mask


def _component_features(maps: dict, mask: np.ndarray, kind: str, short: int):
    """(labels, stats, features (n, F), usable (n,)) of the candidate components."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    flat = labels.ravel()
    area = np.maximum(stats[:, 4], 1).astype(np.float64)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(flat, weights=values.ravel(), minlength=n) / area

    window = int(0.12 * short) | 1
    density = cv2.blur(mask.astype(np.float32), (window, window))
    extent = np.maximum(stats[:, 2], stats[:, 3]).astype(np.float64)
    desat = np.zeros(n) if maps["desaturation"] is None else mean(maps["desaturation"])
    values = {
        "z": mean(maps["z"]), "log_extent": np.log(np.maximum(extent / short, 1e-6)), "density": mean(density),
        "desaturation": desat, "log_elongation": np.log(np.maximum(extent ** 2 / area, 1.0)),
        "contrast": mean(maps["contrast"]), "texture": mean(maps["texture"]), "dark": np.full(n, maps["dark"]),
        "lineness": mean(maps["lineness"]), "log_area": np.log(np.maximum(area / short ** 2, 1e-9)),
    }
    names = LINE_FEATURES if kind == "line" else SPECK_FEATURES
    features = np.stack([values[name] for name in names], axis=1)
    usable = stats[:, 4] >= 3
    usable[0] = False
    if kind == "line":
        usable &= extent >= LINE_MIN_EXTENT * short
    else:
        usable &= (area <= np.pi * (SPECK_MAX_RADIUS * short) ** 2) & (extent <= SPECK_MAX_EXTENT * short)
    return labels, features, usable


def _probability(features: np.ndarray, kind: str) -> np.ndarray:
    weights, bias = (LINE_WEIGHTS, LINE_BIAS) if kind == "line" else (SPECK_WEIGHTS, SPECK_BIAS)
    return 1.0 / (1.0 + np.exp(-(features @ np.asarray(weights) + bias)))


def thin_damage_scores(rgb: np.ndarray, short: int, border: tuple[int, int, int, int] = (BORDER,) * 4,
                       truth: Optional[np.ndarray] = None, levels: int = 2):
    """Damage probability (H, W) float32 of scratches, cracks and specks in ``rgb`` (H, W, 3) or
    (H, W) float32 [0, 1]. ``short``: the shorter side of the whole photo at this resolution (the
    scales follow it, not the tile's); ``border``: pixels ignored at the (top, bottom, left, right)
    edges (the photo's own border only; a tile's inner edges are 0).

    With ``truth`` ((H, W) bool, the damage drawn), returns ``(scores, rows)`` instead, ``rows``
    being ``{kind: [(features, truth fraction, area)]}`` of every usable candidate: what the weights
    are fitted on (bench/fit_damage_detector.py)."""
    height, width = rgb.shape[:2]
    scores = np.zeros((height, width), np.float32)
    rows: dict[str, list] = {"line": [], "speck": []}
    image, level_truth = rgb, truth
    for level in range(levels):
        if level:
            if min(image.shape[:2]) < 32:
                break
            size = (image.shape[1] // 2, image.shape[0] // 2)
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            if truth is not None:
                level_truth = cv2.resize(truth.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
        level_short = max(short >> level, 1)
        level_border = tuple(-(-b // (1 << level)) for b in border)
        for maps in _maps(image, level_short):
            for kind in ("line", "speck"):
                labels, features, usable = _component_features(
                    maps, _candidates(maps, kind, level_border), kind, level_short)
                if truth is not None:
                    area = np.maximum(np.bincount(labels.ravel(), minlength=len(usable)), 1)
                    hit = np.bincount(labels.ravel(), weights=level_truth.ravel(), minlength=len(usable)) / area
                    rows[kind].append((features[usable], hit[usable], area[usable] * 4.0 ** level))
                probability = np.where(usable, _probability(features, kind), 0.0).astype(np.float32)
                painted = probability[labels]
                if level:
                    painted = cv2.resize(painted, (width, height), interpolation=cv2.INTER_NEAREST)
                np.maximum(scores, painted, out=scores)
    scores = cv2.dilate(scores, np.ones((3, 3), np.uint8))
    return (scores, rows) if truth is not None else scores
