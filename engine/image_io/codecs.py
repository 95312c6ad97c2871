"""Pixel decoding/encoding behind :mod:`engine.image_io`: the choice of decoder per format, 16-bit
PNG through OpenCV (with the ICC and EXIF chunks added by hand), TIFF through tifffile.

A photo is decoded from its path when there is one (no copy of the file in memory); TIFF strips and
tiles are converted to float as they are decoded (:class:`~engine.image_io.pixels.FloatPhoto`).
Encoders write into an open binary file. Pixel layouts are those of :mod:`engine.image_io.pixels`.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

import numpy as np
from PIL import Image

from engine.errors import InputError
from engine.image_io.pixels import FloatPhoto, dtype_scale, swap_red_blue

#: What a photo is decoded from: its path, or its encoded bytes.
Source = Union[Path, bytes]
ORIENTATION_TAG = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_HEADER = b"Exif\x00\x00"
#: Plain-text TIFF tags copied from the input's EXIF into written TIFFs (the EXIF sub-IFD is not).
_TIFF_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 33432)  # description, make, model, software, datetime,
# artist, copyright
#: Compressed TIFF data read from the file at a time (tifffile's default is 256 MB).
TIFF_READ_BYTES = 4 << 20
#: Written TIFFs: deflate (readable everywhere) at libdeflate's fastest level, after horizontal
#: differencing (TIFF predictor 2). On 16-bit scans this is about a third faster than level 6 without
#: the predictor, and the files are smaller.
TIFF_WRITE_OPTIONS = {"compression": "zlib", "compressionargs": {"level": 1}, "predictor": True}


# ------------------------------------------------------------------------------- decoding
@dataclass
class Decoded:
    """Pixels as one decoder gave them, and the EXIF orientation that is still to be applied.

    The pixels stay in the decoder's type (uint8, uint16, float, ...; see
    :func:`~engine.image_io.pixels.unit_scale`) and layout, so that orienting and expanding them to
    RGB float happens once, in one allocation; or the decoder converted them as it went, into
    ``photo``. Some decoders turn the image upright themselves (Pillow does so for TIFFs and removes
    the tag), others do not (tifffile, OpenCV with IMREAD_UNCHANGED, Pillow for JPEG/PNG/WebP). Each
    decoder reports what is left, so the orientation is applied exactly once whichever decoder ran."""

    pixels: Optional[np.ndarray]  # (H, W) gray, (H, W, 2), (H, W, 3) or (H, W, 4); None with ``photo``
    orientation: int = 1  # EXIF orientation (1-8) still to apply to ``pixels``
    icc: Optional[bytes] = None  # from decoders that read it themselves (tifffile)
    mode: Optional[str] = None  # the file's mode where Pillow reports another (16-bit gray+alpha PNG)
    photo: Optional[FloatPhoto] = None  # the pixels already converted (and oriented)

    def float_photo(self) -> FloatPhoto:
        return self.photo if self.photo is not None else FloatPhoto.of(self.pixels, self.orientation)


def opened(source: Source) -> Union[Path, io.BytesIO]:
    """What Pillow and tifffile open: the path itself, or the bytes as a file."""
    return source if isinstance(source, Path) else io.BytesIO(source)


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


def find_png_exif(im: Image.Image, source: Source) -> None:
    """Put a PNG's eXIf chunk where Pillow keeps it (``im.info["exif"]``; b"" for none) without
    decoding the pixels. Pillow's ``getexif`` looks for the chunk past the pixel data by decoding
    the whole image, which for a 16-bit PNG (decoded by OpenCV) would be done twice, once in 8 bits;
    here the chunk headers are walked instead."""
    if im.format != "PNG" or "exif" in im.info or "Raw profile type exif" in im.info:
        return
    found = b""
    with open(source, "rb") if isinstance(source, Path) else io.BytesIO(source) as handle:
        handle.seek(len(_PNG_SIGNATURE))
        while len(header := handle.read(8)) == 8:
            length, kind = struct.unpack(">I4s", header)
            if kind == b"eXIf":
                found = _EXIF_HEADER + handle.read(length)
            if kind in (b"eXIf", b"IEND"):
                break
            handle.seek(length + 4, io.SEEK_CUR)  # the chunk's data and CRC
    im.info["exif"] = found


def decode_pixels(im: Image.Image, source: Source, head: bytes) -> Decoded:
    """Decode the pixels of an opened (not yet loaded) Pillow image of ``source``, whose first
    bytes are ``head``."""
    if im.format == "TIFF":
        decoded = decode_tiff(source)
        if decoded is not None:
            return decoded
    if im.format == "PNG" and _png_bit_depth(head) == 16:
        return _decode_png16(source, head, _pillow_orientation(im))
    return _decode_with_pillow(im)


def _png_bit_depth(head: bytes) -> int:
    if head[:8] != _PNG_SIGNATURE or len(head) < 26 or head[12:16] != b"IHDR":
        return 8
    return head[24]


def _decode_png16(source: Source, head: bytes, orientation: int) -> Decoded:
    """OpenCV keeps the 16 bits; with IMREAD_UNCHANGED it leaves the orientation to us. It reads a
    path itself (except a non-ASCII one on Windows, which it cannot open)."""
    import cv2

    if isinstance(source, Path) and (os.name != "nt" or str(source).isascii()):
        array = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    else:
        data = source if isinstance(source, bytes) else source.read_bytes()
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        del data
    if array is None:
        raise InputError("the 16-bit PNG is corrupt or truncated")
    if head[25] == 4:  # gray + alpha, which OpenCV expands to BGRA and Pillow opens as RGBA
        return Decoded(array[..., [0, 3]], orientation, mode="LA")
    if array.ndim == 3 and array.shape[2] >= 3:  # OpenCV gives BGR(A)
        swap_red_blue(array)
    return Decoded(array, orientation)


def decode_tiff(source: Source, check_size: Optional[Callable[[int, int], None]] = None) -> Optional[Decoded]:
    """tifffile for the plain photometric kinds (gray, RGB), or None to let Pillow try. tifffile
    gives the pixels as stored, so the TIFF orientation tag is left to apply. ``check_size(width,
    height)`` runs before the pixels are decoded (the decompression-bomb guard).

    Interleaved 8/16-bit and float TIFFs are decoded strip by strip (or tile by tile) straight into
    the float photo; other layouts (separate planes, other integer types) as a whole array."""
    import tifffile

    try:
        with tifffile.TiffFile(opened(source)) as tif:
            page = tif.pages[0]
            photometric = int(page.photometric)
            if photometric not in (0, 1, 2):  # MINISWHITE, MINISBLACK, RGB
                return None
            if check_size is not None:
                check_size(int(page.imagewidth), int(page.imagelength))
            icc = page.iccprofile or None
            orientation = _orientation(page.tags.valueof(ORIENTATION_TAG))
            extras = len(page.extrasamples or ())
            colour = int(page.samplesperpixel) - extras
            if colour not in (1, 3):
                return None
            keep = colour + min(extras, 1)  # colour channels, then alpha if any
            invert = photometric == 0  # MINISWHITE: 0 = white
            if int(page.planarconfig) == 1 and page.imagedepth == 1 and page.dtype is not None \
                    and dtype_scale(page.dtype) is not None:
                photo = _decode_tiff_segments(page, keep, invert, orientation)
                return Decoded(None, orientation, icc, photo=photo)
            array = page.asarray(buffersize=TIFF_READ_BYTES)
            axes = page.axes
    except InputError:
        raise
    except Exception:
        return None  # compressions tifffile cannot decode without extra codecs, odd layouts, ...
    if axes not in ("YX", "YXS", "SYX"):  # several planes, a volume, ...
        return None
    if axes == "SYX":
        array = np.moveaxis(array, 0, -1)
    return Decoded(_tiff_channels(array[..., :keep] if array.ndim == 3 else array, keep, invert), orientation, icc)


def _decode_tiff_segments(page, keep: int, invert: bool, orientation: int) -> FloatPhoto:
    """Decode an interleaved TIFF page strip by strip (tile by tile), each converted into place."""
    photo = FloatPhoto(int(page.imagelength), int(page.imagewidth), gray=keep <= 2, alpha=keep in (2, 4),
                       scale=dtype_scale(page.dtype), orientation=orientation)

    def put(result) -> None:  # runs in tifffile's decoding threads: blocks do not overlap
        segment, (_, _, top, left, _), shape = result
        if segment is None:  # a strip the file leaves out
            segment = np.full(shape, page.nodata, page.dtype)
        photo.write(top, left, _tiff_channels(segment[0, ..., :keep], keep, invert))

    page.init_decode()
    for _ in page.segments(func=put, buffersize=TIFF_READ_BYTES):
        pass
    return photo


def _tiff_channels(pixels: np.ndarray, keep: int, invert: bool) -> np.ndarray:
    """(H, W[, keep]) TIFF samples -> the pixel layout (gray is (H, W)), MINISWHITE turned around."""
    if pixels.ndim == 3 and keep == 1:
        pixels = pixels[..., 0]
    if invert:
        pixels = _invert_colour(pixels, has_alpha=keep in (2, 4))
    return pixels


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
        array = array.astype(np.uint16, copy=False)
    return Decoded(array, orientation)


# ------------------------------------------------------------------------------- encoding
def _exif_payload(exif: Optional[bytes]) -> Optional[bytes]:
    if not exif:
        return None
    return exif[len(_EXIF_HEADER):] if exif.startswith(_EXIF_HEADER) else exif


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def encode_png16(handle: BinaryIO, pixels: np.ndarray, icc: Optional[bytes], exif: Optional[bytes]) -> None:
    """Write uint16 (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3|4) RGB(A) as a PNG to ``handle``, with
    iCCP and eXIf chunks right after IHDR. RGB(A) ``pixels`` are turned into BGR(A), OpenCV's
    order, in place: callers pass pixels of their own that they no longer need."""
    if pixels.ndim == 3 and pixels.shape[2] == 2:  # OpenCV writes 1, 3 or 4 channels only
        import imagecodecs

        data = memoryview(imagecodecs.png_encode(np.ascontiguousarray(pixels)))
    else:
        import cv2

        ok, encoded = cv2.imencode(".png", swap_red_blue(pixels) if pixels.ndim == 3 else pixels)
        if not ok:
            raise InputError("OpenCV could not encode the 16-bit PNG")
        data = memoryview(encoded).cast("B")
    ihdr_end = 8 + 4 + 4 + 13 + 4
    handle.write(data[:ihdr_end])
    if icc:
        handle.write(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    payload = _exif_payload(exif)
    if payload:
        handle.write(_png_chunk(b"eXIf", payload))
    handle.write(data[ihdr_end:])


def encode_tiff(handle: BinaryIO, pixels: np.ndarray, icc: Optional[bytes], exif: Optional[bytes]) -> None:
    """Write uint8/uint16 (H, W) gray, (H, W, 2) gray+alpha or (H, W, 3|4) RGB(A) as a TIFF
    (:data:`TIFF_WRITE_OPTIONS`) to ``handle``, with the ICC profile and the plain-text tags (make,
    model, date, artist, copyright, ...) of the input's EXIF."""
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
    tifffile.imwrite(
        tifffile.FileHandle(handle, name="image.tif"),  # named: tifffile asks an open file for its name
        pixels,
        photometric="rgb" if channels >= 3 else "minisblack",
        extrasamples=("unassalpha",) if channels in (2, 4) else None,
        iccprofile=icc or None,
        metadata=None,
        software=software,
        extratags=extratags,
        **TIFF_WRITE_OPTIONS,
    )
