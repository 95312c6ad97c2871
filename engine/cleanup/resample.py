"""Resampling the pre-stage's result (engine.cleanup.stage) on the host: area averaging down,
bicubic up, reflection padding, and making a photo exactly gray. (H, W, C) float32 in [0, 1]."""

from __future__ import annotations

import numpy as np

#: Rows handled at once where a full-size temporary would double the memory.
BAND = 256


def area_downsample(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) float32 -> (height, width, C) by area averaging (block means for whole factors)."""
    h, w, c = image.shape
    if (h, w) == (height, width):
        return image
    if h % height == 0 and w % width == 0:
        fy, fx = h // height, w // width
        out = np.empty((height, width, c), np.float32)
        for top in range(0, height, 64):  # in bands: no full-size temporary
            band = image[top * fy : (top + 64) * fy]
            out[top : top + 64] = band.reshape(-1, fy, width, fx, c).mean(axis=(1, 3))
        return out
    import cv2

    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` at (height, width): itself, area-averaged when smaller, bicubic (clipped to [0, 1])
    when larger (area "averaging" upwards would only repeat pixels)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    if height <= h and width <= w:
        return area_downsample(image, height, width)
    import cv2

    return np.clip(cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC), 0.0, 1.0).astype(np.float32)


def resize_note(made: int, wanted: int) -> str | None:
    """How a ×``made`` result became ×``wanted`` (None when it did not change)."""
    if made == wanted:
        return None
    return f"{'area' if wanted < made else 'bicubic'} ×{wanted}/{made}"


def reflect_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` padded at the bottom and right to (height, width) by symmetric reflection."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    return np.pad(image, ((0, height - h), (0, width - w)) + ((0, 0),) * (image.ndim - 2), mode="symmetric")


def make_gray(image: np.ndarray) -> np.ndarray:
    """Every pixel of ``image`` (H, W, 3) set to the mean of its channels, in place, in row bands."""
    for top in range(0, image.shape[0], BAND):
        band = image[top : top + BAND]
        band[...] = band.mean(axis=2, keepdims=True)
    return image
