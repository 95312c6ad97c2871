"""Realistic synthetic damage with its ground truth: the yardstick of the damage detectors.

:func:`add_damage` draws, from a seed, what old prints suffer on a clean photo:

- **scratches**: thin curved strokes (smooth random curves) of varying width (about 0.1–0.8 % of
  the shorter side, at least one pixel), light (neutral or the cream of old paper) or dark, whose
  strength fades in and out along their length, with soft (anti-aliased) edges;
- **cracks**: a network of jagged, branching light lines, as where the emulsion of a print cracked
  and the paper shows;
- **dust specks**: small irregular blobs, light or dark;
- **a torn or missing corner**: a jagged region at one corner, filled with near-white paper (or
  near-black, as a scanner lid shows it), with a little grain.

The ground truth marks every pixel the damage changed visibly (its opacity above
:data:`VISIBLE_ALPHA`). Sizes follow the photo's size, so the same seed damages a small and a
large photo alike. Everything is numpy + OpenCV, deterministic for a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: A pixel counts as damaged where the damage's opacity is above this (about 4/255 of change at
#: full contrast is invisible; 0.1 of a light scratch on a dark photo is not).
VISIBLE_ALPHA = 0.1


@dataclass(frozen=True)
class DamageSpec:
    """How much damage :func:`add_damage` draws (counts are ranges, drawn per photo)."""

    scratches: tuple[int, int] = (3, 7)
    cracks: tuple[int, int] = (0, 2)  # crack networks
    specks: tuple[int, int] = (8, 25)
    torn_corner: bool = True
    dark_fraction: float = 0.4  # share of scratches and specks that are dark


@dataclass(frozen=True)
class Damaged:
    image: np.ndarray  # (H, W, C) float32 in [0, 1], the damaged photo
    mask: np.ndarray  # (H, W) bool, the ground truth: where the damage is visible
    kinds: dict  # {"scratches": (H, W) bool, "cracks": ..., "specks": ..., "tear": ...}: the truth per kind


def _smooth_curve(rng: np.random.Generator, height: int, width: int, length: float) -> np.ndarray:
    """Points (N, 2) as (x, y) of a gently curving path of about ``length`` pixels."""
    x, y = rng.uniform(0, width), rng.uniform(0, height)
    angle = rng.uniform(0, 2 * math.pi)
    bend = rng.uniform(-1.5, 1.5) / max(length, 1.0)  # radians per pixel, slowly changing
    step = 1.0
    points = []
    for _ in range(int(length / step)):
        points.append((x, y))
        bend += rng.normal(0, 0.4) / max(length, 1.0)
        angle += bend * step
        x += step * math.cos(angle)
        y += step * math.sin(angle)
    return np.asarray(points, np.float32)


def _fading(rng: np.random.Generator, n: int) -> np.ndarray:
    """A strength in [0.35, 1] along ``n`` points that rises and falls smoothly (scratches fade)."""
    knots = rng.uniform(0.35, 1.0, size=max(2, n // 40 + 2))
    return np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots).astype(np.float32)


def _draw_path(alpha: np.ndarray, points: np.ndarray, width: float, strength: np.ndarray, supersample: int = 4) -> None:
    """Max-composite a stroke of ``width`` px along ``points`` into ``alpha`` (anti-aliased by
    drawing at ``supersample``× and area-averaging)."""
    h, w = alpha.shape
    x0, y0 = np.floor(points.min(axis=0) - width - 2).astype(int)
    x1, y1 = np.ceil(points.max(axis=0) + width + 2).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    s = supersample
    layer = np.zeros(((y1 - y0) * s, (x1 - x0) * s), np.float32)
    thickness = max(1, int(round(width * s)))
    local = (points - np.array([x0, y0], np.float32)) * s
    for i in range(len(local) - 1):
        a = tuple(int(v) for v in np.round(local[i]))
        b = tuple(int(v) for v in np.round(local[i + 1]))
        cv2.line(layer, a, b, float(strength[i]), thickness, lineType=cv2.LINE_8)
    small = cv2.resize(layer, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    np.maximum(alpha[y0:y1, x0:x1], small, out=alpha[y0:y1, x0:x1])


def _crack_network(rng: np.random.Generator, alpha: np.ndarray, side: int) -> None:
    """A tree of jagged light lines: straight runs of a few pixels with sudden turns, branching."""
    h, w = alpha.shape
    budget = rng.uniform(0.5, 4.0) * side  # total length, px: from a few cracks to a craquelure
    tips = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, 2 * math.pi), 0.0)]
    step = max(2.0, 0.008 * side)
    width_px = max(1.0, rng.uniform(0.001, 0.003) * side)
    while tips and budget > 0:
        x, y, angle, run = tips.pop()
        points = [(x, y)]
        for _ in range(int(rng.integers(8, 30))):
            angle += rng.normal(0, 0.45)
            x, y = x + step * math.cos(angle), y + step * math.sin(angle)
            points.append((x, y))
            budget -= step
            if rng.random() < 0.08:
                tips.append((x, y, angle + rng.choice([-1, 1]) * rng.uniform(0.5, 1.3), 0.0))
        path = np.asarray(points, np.float32)
        _draw_path(alpha, path, width_px, np.full(len(path), rng.uniform(0.7, 1.0), np.float32))


def _speck(rng: np.random.Generator, alpha: np.ndarray, radius: float) -> None:
    h, w = alpha.shape
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    corners = int(rng.integers(5, 9))
    angles = np.sort(rng.uniform(0, 2 * math.pi, corners))
    radii = radius * rng.uniform(0.6, 1.3, corners)
    polygon = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    s = 4
    x0, y0 = int(max(cx - 2 * radius - 2, 0)), int(max(cy - 2 * radius - 2, 0))
    x1, y1 = int(min(cx + 2 * radius + 3, w)), int(min(cy + 2 * radius + 3, h))
    if x1 <= x0 or y1 <= y0:
        return
    layer = np.zeros(((y1 - y0) * s, (x1 - x0) * s), np.float32)
    pts = np.round((polygon - [x0, y0]) * s).astype(np.int32)
    cv2.fillPoly(layer, [pts], float(rng.uniform(0.7, 1.0)))
    small = cv2.resize(layer, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    np.maximum(alpha[y0:y1, x0:x1], small, out=alpha[y0:y1, x0:x1])


def _torn_corner(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W) float32 alpha of a jagged region at one corner (about 1–4 % of the photo)."""
    side = min(height, width)
    reach = rng.uniform(0.12, 0.25) * side
    n = 40
    t = np.linspace(0, 1, n)
    jag = np.cumsum(rng.normal(0, 0.02 * reach, n))
    jag -= np.linspace(jag[0], jag[-1], n)  # ends on the borders
    # a curve from (reach_x, 0) to (0, reach_y), bulging a little, with a jagged edge
    rx, ry = reach * rng.uniform(0.7, 1.4), reach * rng.uniform(0.7, 1.4)
    xs = rx * np.cos(t * math.pi / 2) + jag
    ys = ry * np.sin(t * math.pi / 2) + jag
    polygon = np.concatenate([[[0.0, 0.0]], np.stack([xs, ys], axis=1)])
    corner = int(rng.integers(0, 4))
    if corner in (1, 2):
        polygon[:, 0] = width - polygon[:, 0]
    if corner in (2, 3):
        polygon[:, 1] = height - polygon[:, 1]
    s = 4
    layer = np.zeros((height * s, width * s), np.uint8)
    cv2.fillPoly(layer, [np.round(polygon * s).astype(np.int32)], 255)
    return cv2.resize(layer, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _tone(rng: np.random.Generator, level: float, channels: int, dark: bool) -> np.ndarray:
    """The colour of damage at gray ``level``: neutral, or (light damage, half the time) the cream
    of old photographic paper."""
    tone = np.full(channels, level, np.float32)
    if channels == 3 and not dark and rng.random() < 0.5:
        tone *= np.float32([1.0, 0.97, 0.88]) * rng.uniform(0.97, 1.0)
    return tone


def add_damage(image: np.ndarray, seed: int, spec: DamageSpec = DamageSpec()) -> Damaged:
    """``image`` (H, W) or (H, W, C) float32 in [0, 1] with damage drawn on it from ``seed``."""
    rng = np.random.default_rng(seed)
    photo = np.asarray(image, np.float32)
    gray_input = photo.ndim == 2
    photo = photo[..., None] if gray_input else photo
    height, width, channels = photo.shape
    side = min(height, width)
    out = photo.copy()
    kinds = {}

    def composite(alpha: np.ndarray, value: np.ndarray) -> None:
        a = alpha[..., None]
        out[...] = out * (1 - a) + value * a

    for kind, (low, high) in (("scratches", spec.scratches), ("cracks", spec.cracks), ("specks", spec.specks)):
        visible = np.zeros((height, width), bool)
        for _ in range(int(rng.integers(low, high + 1))):
            alpha = np.zeros((height, width), np.float32)
            dark = kind != "cracks" and rng.random() < spec.dark_fraction
            if kind == "cracks":
                _crack_network(rng, alpha, side)
            elif kind == "scratches":
                points = _smooth_curve(rng, height, width, rng.uniform(0.15, 0.7) * side)
                width_px = max(1.0, rng.uniform(0.001, 0.008) * side)
                _draw_path(alpha, points, width_px, _fading(rng, len(points)))
            else:
                _speck(rng, alpha, max(1.0, rng.uniform(0.002, 0.008) * side))
            level = rng.uniform(0.0, 0.12) if dark else rng.uniform(0.85, 1.0)
            composite(alpha, _tone(rng, level, channels, dark))
            visible |= alpha > VISIBLE_ALPHA
        kinds[kind] = visible
    if spec.torn_corner:
        alpha = _torn_corner(rng, height, width)
        dark = rng.random() < 0.25
        paper = _tone(rng, rng.uniform(0.0, 0.08) if dark else rng.uniform(0.88, 0.98), channels, dark)
        grain = rng.normal(0, 0.01, (height, width, 1)).astype(np.float32)
        composite(alpha, np.clip(paper + grain, 0, 1))
        kinds["tear"] = alpha > VISIBLE_ALPHA
    else:
        kinds["tear"] = np.zeros((height, width), bool)
    mask = kinds["scratches"] | kinds["cracks"] | kinds["specks"] | kinds["tear"]
    out = np.clip(out, 0, 1)
    return Damaged(out[..., 0] if gray_input else out, mask, kinds)
