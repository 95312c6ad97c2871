"""Inpainting masks for evaluation: loaded from a file or generated (boxes, strokes) from a seed.

Every mask is a numpy (H, W) float32 array with 1 where pixels are missing (to be filled) and 0
where they are known — the same convention as ``RestoreRequest.mask`` (white = fill).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from engine.errors import InputError

GENERATED_MASKS = ("boxes", "strokes")


def box_mask(height: int, width: int, seed: int, *, count: int = 3, max_fraction: float = 0.35) -> np.ndarray:
    """``count`` random axis-aligned rectangles, each side at most ``max_fraction`` of the image side.

    Returns (height, width) float32 in {0, 1}; the same seed always gives the same mask.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), np.float32)
    for _ in range(count):
        h = int(rng.integers(max(1, height // 10), max(2, int(height * max_fraction)) + 1))
        w = int(rng.integers(max(1, width // 10), max(2, int(width * max_fraction)) + 1))
        top = int(rng.integers(0, height - h + 1))
        left = int(rng.integers(0, width - w + 1))
        mask[top : top + h, left : left + w] = 1.0
    return mask


def stroke_mask(height: int, width: int, seed: int, *, count: int = 4, max_vertices: int = 6) -> np.ndarray:
    """Free-form brush strokes (random polylines with round caps), like scratches painted by hand.

    Brush widths scale with the image (about 3–8 % of the shorter side). Returns (height, width)
    float32 in {0, 1}; deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    canvas = np.zeros((height, width), np.uint8)
    side = min(height, width)
    for _ in range(count):
        thickness = max(1, int(rng.uniform(0.03, 0.08) * side))
        y, x = float(rng.uniform(0, height)), float(rng.uniform(0, width))
        angle = float(rng.uniform(0, 2 * math.pi))
        for _ in range(int(rng.integers(2, max_vertices + 1))):
            angle += float(rng.uniform(-1.2, 1.2))
            length = float(rng.uniform(0.1, 0.3)) * side
            ny = float(np.clip(y + length * math.sin(angle), 0, height - 1))
            nx = float(np.clip(x + length * math.cos(angle), 0, width - 1))
            cv2.line(canvas, (int(x), int(y)), (int(nx), int(ny)), 255, thickness, lineType=cv2.LINE_8)
            y, x = ny, nx
    return (canvas > 0).astype(np.float32)


def load_mask(path: str | Path, height: int, width: int) -> np.ndarray:
    """A mask image (white/nonzero = fill), converted to gray and resized (nearest) to (height, width)."""
    try:
        with Image.open(path) as im:
            gray = np.asarray(im.convert("L"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the mask {path}: {exc}") from exc
    if gray.shape != (height, width):
        gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_NEAREST)
    return (gray > 127).astype(np.float32)


def make_mask(spec: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``spec`` is ``boxes``, ``strokes`` or a path to a mask image. Returns (H, W) float32 in {0, 1}."""
    if spec == "boxes":
        mask = box_mask(height, width, seed)
    elif spec == "strokes":
        mask = stroke_mask(height, width, seed)
    else:
        if not Path(spec).is_file():
            raise InputError(f"mask must be 'boxes', 'strokes' or an image file; {spec!r} is none of these")
        mask = load_mask(spec, height, width)
    if not mask.any():
        raise InputError(f"the mask {spec!r} marks no pixels to fill at {width}×{height}")
    return mask
