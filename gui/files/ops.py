"""Photo and mask files for the main window: open, paste, save (keeping EXIF / ICC / 16-bit), masks.

Everything goes through ``engine.image_io`` so the GUI and the CLI read and write the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
from PySide6.QtGui import QImage

from gui.document.document import Document, loaded_pixels, to_float_rgb
from gui.document.mask_tools import mask_from_image

OPEN_FILTER = "Images (*.png *.jpg *.jpeg *.tif *.tiff *.webp *.bmp);;All files (*)"
#: Save-as filters -> (extension, bit depth or None = as the input)
SAVE_FILTERS: dict[str, tuple[str, Optional[int]]] = {
    "PNG (*.png)": (".png", None),
    "JPEG (*.jpg *.jpeg)": (".jpg", 8),
    "TIFF 16-bit (*.tif *.tiff)": (".tif", 16),
    "TIFF 8-bit (*.tif *.tiff)": (".tif", 8),
    "WebP (*.webp)": (".webp", 8),
}


class SaveTarget(NamedTuple):
    """Where Save writes, with the options chosen in Save as (Ctrl+S reuses all of them)."""

    path: str
    quality: int = 95  # JPEG / WebP
    bit_depth: Optional[int] = None  # None: as the input


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """A QImage (any format) -> (H, W, 3) float32 [0, 1]. GUI thread only."""
    rgb = image.convertToFormat(QImage.Format_RGB888)
    h, w, bpl = rgb.height(), rgb.width(), rgb.bytesPerLine()
    data = np.frombuffer(rgb.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)
    return to_float_rgb(data[:, : w * 3].reshape(h, w, 3))


def load_photo(path: str) -> tuple[np.ndarray, Any]:
    """(pixels, engine.image_io.LoadedImage) of a photo file; the LoadedImage keeps EXIF, ICC and
    bit depth for saving. Raises engine.errors.InputError with a user-facing message. Any thread."""
    from engine import image_io

    loaded = image_io.load_image(path)
    return loaded_pixels(loaded), loaded


def result_pixels(document: Document) -> np.ndarray:
    """What Save writes is what the canvas shows: the result preview if there is one (finished,
    or the windows kept after Cancel, at the output size), else the current photo."""
    return document.preview if document.preview is not None else document.image


def save_photo(path: str, pixels: np.ndarray, like: Any = None, quality: int = 95,
               bit_depth: Optional[int] = None) -> list[str]:
    """Write ``pixels`` (what Save writes: :func:`result_pixels`) to ``path`` with the EXIF and ICC
    profile of ``like``, the photo's LoadedImage (and its bit depth unless ``bit_depth`` is given).
    Returns notes on anything that could not be kept. Any thread."""
    from engine import image_io

    return image_io.save_image(path, pixels, like=like, quality=quality, bit_depth=bit_depth)


def suggested_save_path(document: Document, extension: str = ".png", folder: str = "") -> str:
    """``photo_restored.png`` in ``folder`` (the last one saved to) if it still exists, else beside
    the photo: saving never overwrites the original by default."""
    name = f"{Path(document.path).stem}_restored{extension}" if document.path else f"restored{extension}"
    if folder and Path(folder).is_dir():
        return str(Path(folder) / name)
    return str(Path(document.path).with_name(name) if document.path else Path.home() / name)


class ImportedMask(NamedTuple):
    mask: np.ndarray  # (H, W) uint8 of the photo's size
    file_size: tuple[int, int]  # (height, width) of the file: scaled to the photo when it differs


def same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether (height, width) ``a`` scaled to the width of ``b`` has its height to within a pixel."""
    (ah, aw), (bh, bw) = a, b
    return abs(ah * bw - bh * aw) <= max(aw, bw)


def load_mask_file(path: str, shape: tuple[int, int]) -> ImportedMask:
    """A mask image (white = fill, a transparent stroke layer, or 0/1 labels: the engine's rule,
    ``image_io.mask_strength``) for a photo of ``shape`` (H, W).
    A mask of another size is scaled if it has the photo's aspect ratio; otherwise InputError
    names both sizes (stretching it would put the marks in the wrong places)."""
    from engine import image_io
    from engine.errors import InputError

    loaded = image_io.load_image(path)
    size = loaded.size
    if not same_aspect(size, shape):
        raise InputError(f"the mask is {size[1]}×{size[0]} pixels and the photo {shape[1]}×{shape[0]}: a mask "
                         "must have the photo's size, or its aspect ratio to be scaled")
    return ImportedMask(mask_from_image(image_io.mask_strength(loaded), shape), size)


def save_mask_file(mask: np.ndarray, path: str) -> None:
    """Write the mask (H, W) uint8 as an 8-bit grayscale PNG, white = fill, straight from its
    values: a scan's mask is tens of megabytes, and an RGB float copy of it was 16 times that."""
    from PIL import Image

    from engine.atomic_file import atomic_write

    with atomic_write(path) as handle:
        Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8)).save(handle, "PNG")
