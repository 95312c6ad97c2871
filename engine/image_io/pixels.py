"""Pixel arrays between the decoders, the engine and the encoders: value scales, the EXIF
orientation, and the conversions to and from float32 in [0, 1], done without full-size temporaries.

Pixel layouts here are (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4) RGBA.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

#: Rows converted at a time: a band's temporaries stay small (a 10000-pixel-wide band of 64 rows
#: is 7.7 MB of float32 RGB) however large the photo.
BAND_ROWS = 64

Scale = tuple[float, int]  # (divisor that maps the values to [0, 1], bit depth 8 or 16)


def dtype_scale(dtype: np.dtype) -> Optional[Scale]:
    """The :data:`Scale` of pixels of this type, or None where it depends on the values (integers
    other than uint8 and uint16: see :func:`unit_scale`)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return 1.0, 8
    if dtype == np.uint8:
        return 255.0, 8
    if dtype == np.uint16:
        return 65535.0, 16
    if np.issubdtype(dtype, np.integer):
        return None
    return 1.0, 16


def unit_scale(a: np.ndarray) -> Scale:
    """The scale of bool, integer or float pixels: uint8 / 255, uint16 / 65535, other integers by
    their range, bool and float as they are."""
    scale = dtype_scale(a.dtype)
    if scale is not None:
        return scale
    return (255.0, 8) if a.max(initial=0) <= 255 else (65535.0, 16)


def to_unit_float(a: np.ndarray, divisor: float, out: np.ndarray) -> np.ndarray:
    """Write ``a / divisor`` into the float32 array ``out`` (``a`` broadcasts: (H, W, 1) fills all
    channels), clipped to [0, 1] (NaN -> 0) unless ``a`` is uint8/uint16/bool, which cannot leave
    it. One pass, no temporary."""
    np.divide(a, np.float32(divisor), out=out)
    if a.dtype not in (np.uint8, np.uint16, np.bool_):
        np.nan_to_num(out, copy=False)
        np.clip(out, 0.0, 1.0, out=out)
    return out


def to_uint(rgb: np.ndarray, depth: int, alpha: Optional[np.ndarray] = None) -> np.ndarray:
    """Float (H, W, 3) RGB in [0, 1], and (H, W) alpha if given -> uint8 (depth 8) or uint16 (depth
    16) (H, W, 3|4), rounded to nearest. Converted in bands of rows: the output is the only
    full-size array made."""
    top = np.float32(255.0 if depth == 8 else 65535.0)
    height, width = rgb.shape[:2]
    out = np.empty((height, width, 3 if alpha is None else 4), np.uint8 if depth == 8 else np.uint16)
    for start in range(0, height, BAND_ROWS):
        rows = slice(start, start + BAND_ROWS)
        parts = [(rgb[rows], out[rows, :, :3])]
        if alpha is not None:
            parts.append((alpha[rows], out[rows, :, 3]))
        for values, target in parts:
            scaled = np.clip(values, 0.0, 1.0)
            scaled *= top
            np.round(scaled, out=scaled)
            target[...] = scaled
    return out


def swap_red_blue(pixels: np.ndarray) -> np.ndarray:
    """RGB(A) <-> BGR(A) (what OpenCV reads and writes), in place, in bands of rows."""
    for start in range(0, pixels.shape[0], BAND_ROWS):
        band = pixels[start : start + BAND_ROWS]
        band[..., [0, 2]] = band[..., [2, 0]]
    return pixels


# ------------------------------------------------------------------------------ orientation
def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to (H, W[, C]) pixels, as ``PIL.ImageOps.exif_transpose``
    (a view: no pixel is copied)."""
    swap = (1, 0) + tuple(range(2, pixels.ndim))
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.transpose(swap)
    if orientation == 6:
        return np.rot90(pixels, k=-1)
    if orientation == 7:
        return pixels.transpose(swap)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(pixels, k=1)
    return pixels


def inverse_orientation(orientation: int) -> int:
    """The orientation that undoes ``orientation`` (6 and 8 turn opposite ways; the others are
    their own inverse)."""
    return {6: 8, 8: 6}.get(orientation, orientation)


class FloatPhoto:
    """A photo's float32 RGB (H, W, 3) and alpha (H, W) or None, in [0, 1] and upright, filled by
    :meth:`write` from blocks of decoded pixels placed as the file stores them (before the EXIF
    orientation): each block goes straight into its place in the float arrays, so decoding in
    strips or tiles needs the float arrays and a block at a time, nothing full-size besides.
    Gray blocks ((h, w) or (h, w, 2)) fill all three channels."""

    def __init__(self, height: int, width: int, *, gray: bool, alpha: bool, scale: Scale, orientation: int = 1):
        """``height`` × ``width`` as stored; ``scale`` of the blocks' values (:func:`dtype_scale`)."""
        self.gray = gray  # the decoded pixels had one colour channel
        shape = (width, height) if orientation >= 5 else (height, width)
        self.rgb = np.empty((*shape, 3), np.float32)
        self.alpha = np.empty(shape, np.float32) if alpha else None
        self.divisor, self.bit_depth = scale
        back = inverse_orientation(orientation)
        self._stored_rgb = apply_orientation(self.rgb, back)  # views in the file's orientation
        self._stored_alpha = None if self.alpha is None else apply_orientation(self.alpha, back)

    @classmethod
    def of(cls, pixels: np.ndarray, orientation: int = 1) -> "FloatPhoto":
        """The float photo of whole decoded pixels of any type (:func:`unit_scale`) and strides."""
        height, width = pixels.shape[:2]
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        photo = cls(height, width, gray=channels <= 2, alpha=channels in (2, 4), scale=unit_scale(pixels),
                    orientation=orientation)
        photo.write(0, 0, pixels)
        return photo

    def write(self, top: int, left: int, pixels: np.ndarray) -> None:
        """Convert a block of pixels stored at (``top``, ``left``) into place; the part of it past
        the photo's edges (the padding of edge tiles) is left out."""
        height, width = self._stored_rgb.shape[:2]
        pixels = pixels[: height - top, : width - left]
        rows, cols = slice(top, top + pixels.shape[0]), slice(left, left + pixels.shape[1])
        colour, alpha = (pixels[..., None] if pixels.ndim == 2 else pixels), None
        if self._stored_alpha is not None:
            colour, alpha = colour[..., :-1], colour[..., -1]
            to_unit_float(alpha, self.divisor, self._stored_alpha[rows, cols])
        to_unit_float(colour, self.divisor, self._stored_rgb[rows, cols])
