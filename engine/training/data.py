"""Training images from a folder: random square crops with horizontal flips, drawn reproducibly.

Every random choice (which image, where to crop, whether to flip) comes from the
``torch.Generator`` passed to :meth:`ImageFolder.sample_batch`, so saving that generator's state
is enough to resume the exact same data stream.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def find_images(folder: str | Path, what: str = "training data folder") -> list[Path]:
    """Image files under ``folder`` (recursively), sorted, skipping hidden files and folders.
    ``what`` names the folder in the error when it is missing."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{what} {root} does not exist or is not a folder")
    files = [
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(files)


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """Any PIL image -> (H, W, 3) uint8. Gray becomes RGB, alpha is dropped, 16-bit is scaled down."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return np.asarray(im.convert("RGB"))


def decode_image(path: Path, min_side: int) -> np.ndarray:
    """Decode ``path`` to (H, W, 3) uint8, upscaled (bicubic) so the shorter side is ≥ ``min_side``."""
    try:
        with Image.open(path) as im:
            im.load()
            rgb = _to_rgb8(im)
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read training image {path}: {exc}") from exc
    h, w = rgb.shape[:2]
    if min(h, w) < min_side:
        factor = min_side / min(h, w)
        new_w, new_h = max(min_side, math.ceil(w * factor)), max(min_side, math.ceil(h * factor))
        rgb = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BICUBIC))
    return rgb


class ImageFolder:
    """Random ``size``×``size`` crops from the images of a folder.

    Files are checked when the folder is opened (header read); a corrupt file is an
    :class:`InputError` naming it, unless ``skip_bad`` is set, in which case it is left out.
    Decoded images are kept in an LRU cache of about ``cache_mib`` MiB.
    """

    def __init__(self, folder: str | Path, size: int, *, skip_bad: bool = False, cache_mib: int = 2048, workers: int = 4):
        if size < 8:
            raise InputError(f"crop size must be at least 8 pixels, got {size}")
        self.folder = Path(folder)
        self.size = int(size)
        candidates = find_images(self.folder)
        if not candidates:
            raise InputError(
                f"no training images in {self.folder} (looked for {', '.join(IMAGE_SUFFIXES)}, in subfolders too)"
            )
        self.files: list[Path] = []
        self.skipped: list[Path] = []
        for path in candidates:
            problem = self._check(path)
            if problem is None:
                self.files.append(path)
            elif skip_bad:
                self.skipped.append(path)
            else:
                raise InputError(f"training image {path} is corrupt or unreadable ({problem}); remove it or pass --skip-bad-files")
        if not self.files:
            raise InputError(f"none of the {len(candidates)} image files in {self.folder} could be read")
        self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_mib * 2**20
        self._pool: Optional[ThreadPoolExecutor] = ThreadPoolExecutor(workers) if workers > 1 else None

    @staticmethod
    def _check(path: Path) -> Optional[str]:
        try:
            with Image.open(path) as im:
                im.verify()
        except Exception as exc:  # PIL raises many types for broken files
            return str(exc) or type(exc).__name__
        return None

    def __len__(self) -> int:
        return len(self.files)

    def describe(self) -> dict:
        """A JSON-ready summary for the model's metadata."""
        return {"folder": str(self.folder.resolve()), "images": len(self.files), "skipped": len(self.skipped), "crop": self.size}

    def image(self, index: int) -> np.ndarray:
        """The decoded image ``index`` as (H, W, 3) uint8 with both sides ≥ size (cached)."""
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        rgb = decode_image(self.files[index], self.size)
        self._cache[index] = rgb
        self._cache_bytes += rgb.nbytes
        while self._cache_bytes > self._cache_limit and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return rgb

    def sample_batch(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """``batch`` random crops, (batch, 3, size, size) float32 in [-1, 1] on the CPU.

        Draws exactly 4·batch numbers from ``generator`` (image, top, left, flip per crop), so the
        stream does not depend on the images' dimensions or on what is cached.
        """
        indices = torch.randint(len(self.files), (batch,), generator=generator).tolist()
        offsets = torch.rand((batch, 2), generator=generator, dtype=torch.float64).tolist()
        flips = (torch.rand((batch,), generator=generator) < 0.5).tolist()
        unique = sorted(set(indices))
        if self._pool is not None and len(unique) > 1:
            list(self._pool.map(self._decode_uncached, [i for i in unique if i not in self._cache]))
        crops = []
        for index, (u_top, u_left), flip in zip(indices, offsets, flips):
            rgb = self.image(index)
            h, w = rgb.shape[:2]
            top = min(int(u_top * (h - self.size + 1)), h - self.size)
            left = min(int(u_left * (w - self.size + 1)), w - self.size)
            crop = rgb[top : top + self.size, left : left + self.size]
            crops.append(crop[:, ::-1] if flip else crop)
        stacked = torch.from_numpy(np.ascontiguousarray(np.stack(crops))).permute(0, 3, 1, 2)
        return stacked.float().div_(127.5).sub_(1.0)

    def _decode_uncached(self, index: int) -> None:
        rgb = decode_image(self.files[index], self.size)
        # Inserting from worker threads is safe enough: OrderedDict ops are atomic under the GIL,
        # and image() re-checks the cache; a rare duplicate decode costs time only.
        if index not in self._cache:
            self._cache[index] = rgb
            self._cache_bytes += rgb.nbytes

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
