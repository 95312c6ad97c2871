"""Reading and writing photos without losing what the user cares about.

``load_image`` gives float32 RGB (H, W, 3) in [0, 1] plus everything needed to write the result
back the way the photo came: alpha (kept aside), bit depth (8 or 16), ICC profile, EXIF (the tags
that describe the photo, with the orientation already applied to the pixels and the tag reset to
1), and the file format.
``save_image`` writes PNG / JPEG / TIFF / WebP atomically (temporary file + ``os.replace``), so a
crash never leaves a half-written file over the user's photo; the result of a gray file is written
gray when it is still exactly gray (not colorized).

Decoders: Pillow for most files and for metadata; OpenCV for 16-bit PNGs (Pillow reduces 16-bit
RGB PNGs to 8 bits); tifffile (with imagecodecs for LZW, JPEG, ...) for TIFFs (8/16-bit, float), with
Pillow as fallback for the photometric kinds tifffile is not asked to convert (CMYK, YCbCr, palette).
A file is decoded from its path, never read into memory whole, and the only full-size arrays made
are the decoder's pixels (none for most TIFFs: their strips are converted as they are decoded) and
the float result; saving makes the 8/16-bit pixels and writes them straight into the file.

Guards, on the size in the header, before any pixel is decoded: images above ``DEFAULT_MAX_PIXELS``
(400 megapixels, e.g. 25000×16000; a decompression bomb) are refused with an :class:`InputError`
(pass ``max_pixels`` to change the limit), and so are images whose estimated memory need exceeds
what the computer has available (:mod:`engine.host_memory`; ``bytes_per_pixel``).
"""

from __future__ import annotations

import functools
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

import numpy as np

from engine.atomic_file import atomic_write
from engine.errors import InputError
from engine.host_memory import DECODE_BYTES_PER_PIXEL, check_fits
from engine.image_io.codecs import (
    Source,
    decode_pixels,
    decode_tiff,
    encode_png16,
    encode_tiff,
    find_png_exif,
    opened,
)
from engine.image_io.exif import descriptive_exif
from engine.image_io.pixels import FloatPhoto, apply_orientation, to_uint  # noqa: F401 - apply_orientation is API

try:  # Pillow is a hard dependency; imported here so errors name this module
    from PIL import Image, UnidentifiedImageError
except ImportError as exc:  # pragma: no cover
    raise ImportError("Pillow is required for image I/O") from exc

DEFAULT_MAX_PIXELS = 400_000_000
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}
#: Extensions the folder mode of the CLI picks up.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")

_PIL_LIMIT_LOCK = threading.Lock()
ImageInput = Union[str, Path, np.ndarray, bytes]
SizeCheck = Callable[[int, int], None]  # (width, height): raises InputError before decoding


@dataclass
class LoadedImage:
    """A decoded photo and what is needed to write a result back faithfully."""

    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1], orientation applied
    alpha: Optional[np.ndarray] = None  # (H, W) float32 in [0, 1], or None
    bit_depth: int = 8  # 8 or 16
    mode: str = "array"  # original Pillow mode ("RGB", "I;16", "LA", "P", ...), or "array"
    icc_profile: Optional[bytes] = None
    exif: Optional[bytes] = None  # descriptive tags only (engine.image_io.exif), orientation 1
    format: Optional[str] = None  # "PNG", "JPEG", "TIFF", ...
    path: Optional[Path] = None
    frames: int = 1  # frames or pages in the file (an animated GIF, a multi-page TIFF); the first is decoded

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


def frames_note(frames: int) -> str:
    """What to tell of an image file holding more than one frame ("" for one): only the first is used."""
    return f"the image holds {frames} frames (an animation or pages): only the first is restored" if frames > 1 else ""


# ----------------------------------------------------------------------------------- loading
def load_image(source: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               bytes_per_pixel: float = DECODE_BYTES_PER_PIXEL) -> LoadedImage:
    """Decode a file path, encoded bytes, or an array ((H, W), (H, W, 1|2|3|4); uint8, uint16,
    bool or float in [0, 1]) into a :class:`LoadedImage`. Raises :class:`InputError` for a missing,
    empty, corrupt, truncated or too large image — never a raw decoder traceback.

    Before any pixel is decoded, the image is refused when it has more than ``max_pixels`` pixels
    or when ``bytes_per_pixel`` (what decoding needs, or what the caller will need for the whole
    job) times its pixels exceeds the memory available (:mod:`engine.host_memory`)."""
    check = functools.partial(_check_size, max_pixels=max_pixels, bytes_per_pixel=bytes_per_pixel)
    if isinstance(source, np.ndarray):
        return _from_array(source, check)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return _decode(data, data[:_HEAD_BYTES], None, check)
    path = Path(source)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    if path.is_dir():
        raise InputError(f"expected an image file, got a folder: {path}")
    try:  # the decoders read the file themselves; its first bytes say which one
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return _decode(path, head, path, check)


def _from_array(array: np.ndarray, check: SizeCheck) -> LoadedImage:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise InputError(f"an image array must be (H, W) or (H, W, 1-4), got shape {a.shape}")
    check(a.shape[1], a.shape[0])
    bit_depth = 16 if a.dtype == np.uint16 else 8  # float arrays are written with 8 bits unless asked
    return _finish(FloatPhoto.of(a), "array", None, None, None, None, bit_depth)


def _finish(photo: FloatPhoto, mode: str, icc: Optional[bytes], exif: Optional[bytes], fmt: Optional[str],
            path: Optional[Path], bit_depth: Optional[int] = None) -> LoadedImage:
    """The LoadedImage of a decoded photo; ``bit_depth`` defaults to that of its pixels."""
    return LoadedImage(photo.rgb, photo.alpha, bit_depth or photo.bit_depth, mode, icc or None, exif, fmt, path)


def _check_size(width: int, height: int, *, max_pixels: int, bytes_per_pixel: float) -> None:
    """The guard run on the header's size, before the pixels are decoded."""
    if width <= 0 or height <= 0:
        raise InputError(f"the image is empty ({width}×{height} pixels)")
    if width * height > max_pixels:
        raise InputError(
            f"the image is too large: {width}×{height} = {width * height / 1e6:.0f} megapixels "
            f"(limit {max_pixels / 1e6:.0f} megapixels)"
        )
    check_fits(width, height, bytes_per_pixel)


#: Bytes read from the start of a file to choose its decoder (a PNG's bit depth is at byte 24).
_HEAD_BYTES = 32


def _decode(source: Source, head: bytes, path: Optional[Path], check: SizeCheck) -> LoadedImage:
    name = str(path) if path is not None else "the image data"
    if not head:
        raise InputError(f"{name} is empty (0 bytes)")
    try:
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our own guard below
            try:
                im = Image.open(opened(source))
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as exc:
        if head[:4] in (b"II*\x00", b"MM\x00*"):  # TIFFs Pillow cannot open (float, 16-bit planes)
            return _decode_tiff_without_pillow(source, name, path, check)
        reason = "unknown format" if isinstance(exc, UnidentifiedImageError) else _reason(exc)
        raise InputError(f"{name} is not an image or is damaged ({reason})") from exc
    with im:  # closing frees Pillow's copy of the pixels before the float RGB is made
        check(im.width, im.height)
        try:
            find_png_exif(im, source)
            exif = im.getexif()
        except Exception:  # malformed EXIF must not cost the user the photo
            exif = Image.Exif()
        icc, mode, fmt, exif_bytes = im.info.get("icc_profile"), im.mode, im.format, descriptive_exif(exif)
        try:
            decoded = decode_pixels(im, source, head)
        except InputError:
            raise
        except Exception as exc:  # truncated / corrupt streams surface here, from any decoder
            raise InputError(f"{name} is corrupt or truncated ({_reason(exc)})") from exc
        try:  # counted once the first frame is decoded (counting seeks through the file)
            frames = int(getattr(im, "n_frames", 1) or 1)
        except Exception:  # a damaged later frame: the first one is all that is used
            frames = 1
    loaded = _finish(decoded.float_photo(), decoded.mode or mode, icc, exif_bytes, fmt, path)
    loaded.frames = frames
    return loaded


def _decode_tiff_without_pillow(source: Source, name: str, path: Optional[Path], check: SizeCheck) -> LoadedImage:
    decoded = decode_tiff(source, check_size=check)
    if decoded is None:
        raise InputError(f"{name} is a TIFF this program cannot decode (unsupported layout or compression)")
    photo = decoded.float_photo()
    return _finish(photo, "L" if photo.gray else "RGB", decoded.icc, None, "TIFF", path)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_mask(source: Union[ImageInput, LoadedImage], size: tuple[int, int]) -> np.ndarray:
    """The inpainting mask as bool (H, W); True = fill this pixel. ``size`` is (height, width).

    Fill where :func:`mask_strength` is above one half: white (or opaque strokes) on black, or
    nonzero in a 0/1 label mask. Arrays may be bool, float in [0, 1], or integer: 0/255 (uint8),
    0/65535 (uint16), or 0/1 (any integer type).
    """
    if isinstance(source, np.ndarray) and source.dtype == np.bool_ and source.ndim == 2:
        mask = source.copy()
    else:
        mask = mask_strength(source if isinstance(source, LoadedImage) else load_image(source)) > 0.5
    if tuple(mask.shape) != tuple(size):
        raise InputError(
            f"the mask is {mask.shape[1]}×{mask.shape[0]} pixels but the photo is "
            f"{size[1]}×{size[0]} (width×height); they must match"
        )
    return mask


def mask_strength(loaded: LoadedImage) -> np.ndarray:
    """How strongly a mask image marks each pixel for filling: (H, W) float32 in [0, 1].

    Rule: if the mask has an alpha channel with transparent pixels (a stroke layer exported from a
    painting app), the alpha; otherwise the brightest colour channel (white / nonzero on black).
    A 0/1 label mask (as many tools export: every stored value 0 or 1, so the largest is 1) is
    read as 0/1, not as a nearly black image; not in a JPEG, where values of 1 are compression
    noise around black.
    """
    unit = np.float32(1) / np.float32(255 if loaded.bit_depth == 8 else 65535)  # a stored value of 1
    labels = loaded.format != "JPEG"

    def scaled(values: np.ndarray, transparent: bool = False) -> Optional[np.ndarray]:
        top = unit if labels and float(values.max()) == unit else np.float32(1)
        if transparent and float(values.min()) >= top / 2:
            return None  # an opaque alpha says nothing
        return values if top == 1 else values / top  # 0/1 labels: 0 or exactly 1

    strength = None if loaded.alpha is None else scaled(loaded.alpha, transparent=True)
    return strength if strength is not None else scaled(loaded.rgb.max(axis=2))


# ------------------------------------------------------------------------------------ saving
#: Pillow modes of gray files (and I;16*): a result of such a photo that is still exactly gray is
#: written gray.
_GRAY_MODES = ("1", "L", "LA", "La", "I", "F")
#: Formats that can hold gray pixels (WebP is always RGB).
_GRAY_FORMATS = ("PNG", "JPEG", "TIFF")


def save_image(
    path: Union[str, Path],
    rgb: np.ndarray,
    *,
    like: Optional[LoadedImage] = None,
    quality: int = 95,
    bit_depth: Optional[int] = None,
    alpha: Optional[np.ndarray] = None,
) -> list[str]:
    """Write (H, W, 3) float RGB in [0, 1] to ``path``; the format comes from the extension.

    ``like`` supplies the ICC profile, EXIF, bit depth and alpha of the input (alpha is resized
    bilinearly when the output size differs, e.g. after upscaling). ``bit_depth`` (8 or 16)
    overrides; 16 bits are written for PNG and TIFF only. ``alpha`` (H', W') float in [0, 1]
    overrides ``like.alpha``. Returns notes about anything that could not be kept (e.g. alpha in
    a JPEG) so a caller can tell the user; nothing is printed.

    Gray stays gray: when ``like`` is a gray file (L, LA, I;16, ...) and the result is exactly gray
    once quantized (R = G = B at every pixel: a black-and-white photo that was not colorized), a
    PNG, JPEG or TIFF is written gray (gray+alpha with alpha), which loses nothing. The ICC profile
    is embedded only when it fits what is written: GRAY for gray pixels, RGB for colour.
    """
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(SAVE_FORMATS))
        raise InputError(f"cannot write {path.name!r}: unknown extension (use one of {known})")
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InputError(f"save_image needs (H, W, 3) pixels, got shape {rgb.shape}")
    notes: list[str] = []
    height, width = rgb.shape[:2]
    if alpha is None and like is not None:
        alpha = like.alpha
    if alpha is not None:
        alpha = _resize_alpha(np.asarray(alpha, dtype=np.float32), height, width)
    depth = bit_depth or (like.bit_depth if like is not None else 8)
    if depth not in (8, 16):
        raise InputError(f"bit depth must be 8 or 16, got {depth}")
    if depth == 16 and fmt not in ("PNG", "TIFF"):
        notes.append(f"{fmt} holds 8 bits per channel; saved with 8")
        depth = 8
    if alpha is not None and fmt == "JPEG":
        notes.append("JPEG has no transparency; the alpha channel was dropped")
        alpha = None
    pixels = to_uint(rgb, depth, alpha)
    gray = like is not None and _is_gray_mode(like.mode) and fmt in _GRAY_FORMATS and _is_gray(pixels)
    if gray:
        pixels = pixels[..., 0] if alpha is None else pixels[..., [0, 3]]
    icc = like.icc_profile if like is not None else None
    space = b"GRAY" if gray else b"RGB "
    if icc is not None and icc[16:20] != space:
        notes.append(f"the input's {icc[16:20].decode('ascii', 'replace').strip()} colour profile does "
                     f"not fit a{' gray' if gray else 'n RGB'} result and was not embedded")
        icc = None
    exif = like.exif if like is not None else None
    try:
        with atomic_write(path) as handle:
            _encode(handle, np.ascontiguousarray(pixels), fmt, icc, exif, quality)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return notes


def _is_gray_mode(mode: str) -> bool:
    return mode in _GRAY_MODES or mode.startswith("I;16")


def _is_gray(pixels: np.ndarray) -> bool:
    """Whether (H, W, 3|4) pixels have R = G = B everywhere (in row bands: no full-size temporary)."""
    for top in range(0, pixels.shape[0], 256):
        band = pixels[top : top + 256]
        if not (np.array_equal(band[..., 0], band[..., 1]) and np.array_equal(band[..., 0], band[..., 2])):
            return False
    return True


def _resize_alpha(alpha: np.ndarray, height: int, width: int) -> np.ndarray:
    if alpha.shape == (height, width):
        return alpha
    import cv2

    return np.clip(cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def _encode(handle: BinaryIO, pixels: np.ndarray, fmt: str, icc: Optional[bytes], exif: Optional[bytes],
            quality: int) -> None:
    """Write uint8/uint16 (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4) RGBA to
    ``handle`` as ``fmt``; 16 bits only for PNG and TIFF. ``pixels`` may be changed (they are
    save_image's own)."""
    if fmt == "TIFF":
        return encode_tiff(handle, pixels, icc, exif)
    if pixels.dtype == np.uint16:
        return encode_png16(handle, pixels, icc, exif)
    im = Image.fromarray(pixels)  # L, LA, RGB or RGBA from the shape
    options: dict = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if fmt == "JPEG":
        # no optimize=True: Pillow fails with "broken data stream" on noisy images at high quality
        options.update(quality=int(quality), subsampling=0 if quality >= 90 else 2)
    elif fmt == "WEBP":
        options.update(quality=int(quality), lossless=quality >= 100)
    im.save(handle, fmt, **options)


# ------------------------------------------------------------------------- model tensors
def to_model_tensor(rgb: np.ndarray, device=None, dtype=None):
    """(H, W, 3) float in [0, 1] -> torch tensor (1, 3, H, W) in [-1, 1] (float32 by default)."""
    import torch

    a = np.asarray(rgb, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"expected (H, W, 3) pixels, got shape {a.shape}")
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None] * 2.0 - 1.0
    return x.to(device=device, dtype=dtype or torch.float32)


def from_model_tensor(x) -> np.ndarray:
    """Tensor (1, 3, H, W) or (3, H, W) in [-1, 1] -> numpy (H, W, 3) float32 in [0, 1]
    (clipped); a batch (B > 1, 3, H, W) gives (B, H, W, 3)."""
    t = x.detach().float().cpu()
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[1] != 3:
        raise InputError(f"expected a (B, 3, H, W) tensor, got shape {tuple(t.shape)}")
    out = ((t.clamp(-1.0, 1.0) + 1.0) * 0.5).permute(0, 2, 3, 1).contiguous().numpy()
    return out[0] if out.shape[0] == 1 else out
