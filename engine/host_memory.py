"""Will the photo fit in memory? An up-front estimate, so that a photo too large for this computer is
refused with a clear message before its pixels are decoded, instead of the system killing the
process when memory runs out.

The figures are peak resident bytes per pixel above what the process held before, measured with
the real pipeline and a trivial denoiser on generated photos (the slope between two sizes from 4 to
36 megapixels, so fixed costs do not count):

- decoding (``load_image``): about 14 bytes per pixel for gray, 20 for RGB, 24 for a 16-bit RGB
  PNG, 25 for RGBA: the decoder's pixels, the array taken from them, the float32 RGB (and alpha).
- restoring (``engine.pipeline.restore``, then saving): 45 bytes per pixel to colorize, 67 to fill
  a mask, 44 per output pixel for ×2 super-resolution. The peak is at the end, during the
  consistency check: the photo, the float result, its [-1, 1] copy, the observation y and A x.

PyTorch itself and the model's weights come on top (the model is loaded after the photo).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from engine.errors import InputError

if TYPE_CHECKING:
    from engine.request import Tasks

#: Decoding one pixel (see above), with a margin.
DECODE_BYTES_PER_PIXEL = 32
#: Restoring, per output pixel: the float result, its [-1, 1] copy, the canvas (freed before the
#: check but alive until the result exists) and the transients of A† at output resolution.
RESTORE_BYTES_PER_OUTPUT_PIXEL = 38
#: Restoring, per input pixel: the photo in [-1, 1]; per channel of the observation, y and A x.
RESTORE_BYTES_PER_PHOTO_PIXEL = 12
RESTORE_BYTES_PER_OBSERVED_VALUE = 8
#: Restoring, per input pixel when filling a mask: the mask as float32.
RESTORE_BYTES_PER_MASK_PIXEL = 4


def restore_bytes_per_input_pixel(tasks: "Tasks") -> float:
    """Host bytes a restoration of ``tasks`` needs per input pixel: 58 to colorize, 78 to fill a
    mask, 188 for ×2 super-resolution (measured: 45, 67 and 174)."""
    channels = 1 if tasks.colorize else 3
    return (tasks.sr ** 2 * RESTORE_BYTES_PER_OUTPUT_PIXEL + RESTORE_BYTES_PER_PHOTO_PIXEL
            + channels * RESTORE_BYTES_PER_OBSERVED_VALUE + (RESTORE_BYTES_PER_MASK_PIXEL if tasks.inpaint else 0))


def available_bytes() -> Optional[int]:
    """Memory the system can give this process now (psutil's "available"), or None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no estimate is better than a crash on an odd platform
        return None


def check_fits(width: int, height: int, bytes_per_pixel: float, available: Optional[int] = None) -> None:
    """Raise InputError when a ``width × height`` image needing ``bytes_per_pixel`` will not fit in
    the memory available (``available`` bytes; default: measured now)."""
    have = available_bytes() if available is None else available
    need = width * height * bytes_per_pixel
    if have is not None and need > have:
        raise InputError(
            f"the image is too large for this computer's memory: {width}×{height} = "
            f"{width * height / 1e6:.0f} megapixels needs about {_gb(need)} GB, but only {_gb(have)} GB is available"
        )


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g}"
