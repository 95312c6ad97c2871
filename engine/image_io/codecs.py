"""Pixel decoding/encoding behind :mod:`engine.image_io`: the choice of decoder per format, 16-bit
PNG through OpenCV (with the ICC and EXIF chunks added by hand), TIFF through tifffile.

Arrays here are (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4) RGBA.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from PIL import Image

from engine.errors import InputError

ORIENTATION_TAG = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_HEADER = b"Exif\x00\x00"
#: Plain-text TIFF tags copied from the input's EXIF into written TIFFs (the EXIF sub-IFD is not).
_TIFF_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 33432)  # description, make, model, software, datetime,
# artist, copyright


def to_uint(pixels: np.ndarray, depth: int) -> np.ndarray:
    """Float in [0, 1] -> uint8 (depth 8) or uint16 (depth 16), rounded to nearest (one float
    temporary, not three)."""
    top = 255.0 if depth == 8 else 65535.0
    scaled = np.clip(pixels, 0.0, 1.0)
    scaled *= top
    np.round(scaled, out=scaled)
    return scaled.astype(np.uint8 if depth == 8 else np.uint16)


def unit_scale(a: np.ndarray) -> tuple[float, int]:
    """(divisor that maps ``a``'s values to [0, 1], bit depth 8 or 16) for bool, integer or float
    pixels: uint8 / 255, uint16 / 65535, other integers by their range, bool and float as they are."""
    if a.dtype == np.bool_:
        return 1.0, 8
    if a.dtype == np.uint8:
        return 255.0, 8
    if a.dtype == np.uint16:
        return 65535.0, 16
    if np.issubdtype(a.dtype, np.integer):
        return (255.0, 8) if a.max(initial=0) <= 255 else (65535.0, 16)
    return 1.0, 16


def to_unit_float(a: np.ndarray, divisor: float, out: np.ndarray) -> np.ndarray:
    """Write ``a / divisor`` into the float32 array ``out`` (``a`` broadcasts: (H, W, 1) fills all
    channels), clipped to [0, 1] (NaN -> 0) unless ``a`` is uint8/uint16/bool, which cannot leave
    it. One pass, no temporary: the only full-size float copy of a photo is ``out``."""
    np.divide(a, np.float32(divisor), out=out)
    if a.dtype not in (np.uint8, np.uint16, np.bool_):
        np.nan_to_num(out, copy=False)
        np.clip(out, 0.0, 1.0, out=out)
    return out


# ------------------------------------------------------------------------------- decoding
@dataclass
class Decoded:
    """Pixels as one decoder gave them, and the EXIF orientation that is still to be applied.

    The pixels stay in the decoder's type (uint8, uint16, float, ...; see :func:`unit_scale`) and
    layout, so that orienting and expanding them to RGB float happens once, in one allocation.
    Some decoders turn the image upright themselves (Pillow does so for TIFFs and removes the tag),
    others do not (tifffile, OpenCV with IMREAD_UNCHANGED, Pillow for JPEG/PNG/WebP). Each decoder
    reports what is left, so the orientation is applied exactly once whichever decoder ran."""

    pixels: np.ndarray  # (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4) RGBA
    orientation: int = 1  # EXIF orientation (1-8) still to apply to ``pixels``
    icc: Optional[bytes] = None  # from decoders that read it themselves (tifffile)
    mode: Optional[str] = None  # the file's mode where Pillow reports another (16-bit gray+alpha PNG)


def _orientation(value) -> int:
    """An orientation tag's value as 1-8; 1 when absent or invalid."""
    try:
        orientation = int(value or 1)
    except (TypeError, ValueError):
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _pillow_orientation(im: Image.Image) -> int:
    """The orientation Pillow still reports for ``im`` (after ``load()``: what Pillow left to do)."""
    try:
        return _orientation(im.getexif().get(ORIENTATION_TAG))
    except Exception:  # malformed EXIF must not cost the user the photo
        return 1


def decode_pixels(im: Image.Image, data: bytes) -> Decoded:
    """Decode the pixels of an opened (not yet loaded) Pillow image whose encoded bytes are
    ``data``."""
    if im.format == "TIFF":
        decoded = decode_tiff(data)
        if decoded is not None:
            return decoded
    if im.format == "PNG" and _png_bit_depth(data) == 16:
        return _decode_png16(data, _pillow_orientation(im))
    return _decode_with_pillow(im)


def _png_bit_depth(data: bytes) -> int:
    if data[:8] != _PNG_SIGNATURE or len(data) < 26 or data[12:16] != b"IHDR":
        return 8
    return data[24]


def _decode_png16(data: bytes, orientation: int) -> Decoded:
    """OpenCV keeps the 16 bits; with IMREAD_UNCHANGED it leaves the orientation to us."""
    import cv2

    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise InputError("the 16-bit PNG is corrupt or truncated")
    if data[25] == 4:  # gray + alpha, which OpenCV expands to BGRA and Pillow opens as RGBA
        return Decoded(array[..., [0, 3]], orientation, mode="LA")
    if array.ndim == 3 and array.shape[2] >= 3:  # OpenCV gives BGR(A)
        array = array[..., [2, 1, 0, 3][: array.shape[2]]]
    return Decoded(array, orientation)


def decode_tiff(data: bytes, check_size: Optional[Callable[[int, int], None]] = None) -> Optional[Decoded]:
    """tifffile for the plain photometric kinds (gray, RGB), or None to let Pillow try. tifffile
    gives the pixels as stored, so the TIFF orientation tag is left to apply. ``check_size(width,
    height)`` runs before the pixels are decoded (the decompression-bomb guard)."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            photometric = int(page.photometric)
            if photometric not in (0, 1, 2):  # MINISWHITE, MINISBLACK, RGB
                return None
            if check_size is not None:
                check_size(int(page.imagewidth), int(page.imagelength))
            array = page.asarray()
            axes = page.axes
            extras = len(page.extrasamples or ())
            icc = page.iccprofile or None
            orientation = _orientation(page.tags.valueof(ORIENTATION_TAG))
    except InputError:
        raise
    except Exception:
        return None  # compressions tifffile cannot decode without extra codecs, odd layouts, ...
    if axes.startswith("S") and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    if array.ndim != 2 and array.ndim != 3:
        return None
    pixels = array
    if pixels.ndim == 3:
        colour = pixels.shape[2] - extras
        if colour not in (1, 3):
            return None
        pixels = pixels[..., : colour + min(extras, 1)]  # colour channels, then alpha if any
        if pixels.shape[2] == 1:
            pixels = pixels[..., 0]
    if photometric == 0:  # MINISWHITE: 0 = white
        pixels = _invert_colour(pixels, has_alpha=pixels.ndim == 3 and extras > 0)
    return Decoded(pixels, orientation, icc)


def _invert_colour(pixels: np.ndarray, has_alpha: bool) -> np.ndarray:
    """White-is-zero -> black-is-zero, in the pixels' own type (alpha untouched)."""
    out = pixels.copy()
    colour = out[..., :-1] if has_alpha else out
    if out.dtype == np.bool_:
        np.logical_not(colour, out=colour)
    else:
        top = np.iinfo(out.dtype).max if np.issubdtype(out.dtype, np.unsignedinteger) else 1
        np.subtract(top, colour, out=colour, casting="unsafe")
    return out


_PIL_CONVERSIONS = {"1": "L", "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "CMYK": "RGB", "YCbCr": "RGB",
                    "LAB": "RGB", "HSV": "RGB", "RGBX": "RGB"}


def _decode_with_pillow(im: Image.Image) -> Decoded:
    """Pillow's pixels; the orientation is read after loading, as Pillow may have applied it."""
    im.load()
    orientation = _pillow_orientation(im)
    mode = im.mode
    if mode == "P":
        target = "RGBA" if "transparency" in im.info else "RGB"
    else:
        target = _PIL_CONVERSIONS.get(mode)
    if target is not None:
        im = im.convert(target)
    elif mode not in ("L", "LA", "RGB", "RGBA", "I", "F") and not mode.startswith("I;16"):
        im = im.convert("RGBA" if "A" in mode else "RGB")
    array = np.asarray(im)
    if im.mode.startswith("I;16"):
        array = array.astype(np.uint16)
    return Decoded(array, orientation)


# ------------------------------------------------------------------------------- encoding
def _exif_payload(exif: Optional[bytes]) -> Optional[bytes]:
    if not exif:
        return None
    return exif[len(_EXIF_HEADER):] if exif.startswith(_EXIF_HEADER) else exif


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def encode_png16(pixels: np.ndarray, icc: Optional[bytes], exif: Optional[bytes]) -> bytes:
    """uint16 (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3|4) RGB(A) -> PNG bytes, with iCCP and eXIf
    chunks right after IHDR."""
    if pixels.ndim == 3 and pixels.shape[2] == 2:  # OpenCV writes 1, 3 or 4 channels only
        import imagecodecs

        data = bytes(imagecodecs.png_encode(np.ascontiguousarray(pixels)))
    else:
        import cv2

        bgr = pixels[..., [2, 1, 0, 3][: pixels.shape[2]]] if pixels.ndim == 3 else pixels
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(bgr))
        if not ok:
            raise InputError("OpenCV could not encode the 16-bit PNG")
        data = encoded.tobytes()
    ihdr_end = 8 + 4 + 4 + 13 + 4
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    payload = _exif_payload(exif)
    if payload:
        extra += _png_chunk(b"eXIf", payload)
    return data[:ihdr_end] + extra + data[ihdr_end:]


def encode_tiff(pixels: np.ndarray, icc: Optional[bytes], exif: Optional[bytes]) -> bytes:
    """uint8/uint16 (H, W) gray, (H, W, 2) gray+alpha or (H, W, 3|4) RGB(A) -> deflate-compressed TIFF
    bytes with the ICC profile and the plain-text tags (make, model, date, artist, copyright, ...) of
    the input's EXIF."""
    import tifffile

    extratags = []
    software = None
    if exif:
        parsed = Image.Exif()
        try:
            parsed.load(exif)
        except Exception:
            parsed = Image.Exif()
        for code in _TIFF_TEXT_TAGS:
            value = parsed.get(code)
            if isinstance(value, str) and value and value.isascii():
                if code == 305:
                    software = value
                else:
                    extratags.append((code, "s", 0, value, True))
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        pixels,
        photometric="rgb" if channels >= 3 else "minisblack",
        extrasamples=("unassalpha",) if channels in (2, 4) else None,
        compression="zlib",
        iccprofile=icc or None,
        metadata=None,
        software=software,
        extratags=extratags,
    )
    return buffer.getvalue()
