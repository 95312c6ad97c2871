"""Will the photo fit in memory? An up-front estimate, so that a photo too large for this computer is
refused with a clear message before its pixels are decoded, instead of the system killing the
process when memory runs out.

The figures are peak resident bytes per pixel above what the process held before, measured with
the real pipeline and a trivial denoiser on generated photos (the slope between two sizes from 4 to
36 megapixels, so fixed costs do not count):

- decoding (``load_image``, from a path): about 14 bytes per pixel for gray, 19 for RGB (PNG or
  JPEG), 24 for RGBA (Pillow's pixels, the array taken from them, the float32 RGB and alpha); 18
  for a 16-bit RGB PNG (OpenCV's array and the float); 12 for a 16-bit TIFF, whose strips are
  converted into the float as they are decoded.
- restoring (``engine.pipeline.restore``, then saving): 45 bytes per pixel to colorize, 67 to fill
  a mask, 44 per output pixel for ×2 super-resolution. The peak is at the end, during the
  consistency check: the photo, the float result, its [-1, 1] copy, the observation y and A x.

PyTorch itself and the model's weights come on top (the model is loaded after the photo).

What is available is the least of the computer's available memory and the room left under the
memory limits of the process's control group (a container, a systemd slice, a Flatpak sandbox):
there the kernel kills the process at the group's limit, however much memory the computer has.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from engine.errors import InputError

if TYPE_CHECKING:
    from engine.request import Tasks

#: Decoding one pixel (see above: the most, RGBA), with a margin.
DECODE_BYTES_PER_PIXEL = 28
#: Restoring, per output pixel: the float result, its [-1, 1] copy, the canvas (freed before the
#: check but alive until the result exists) and the transients of A† at output resolution.
RESTORE_BYTES_PER_OUTPUT_PIXEL = 38
#: Restoring, per input pixel: the photo in [-1, 1]; per channel of the observation, y and A x.
RESTORE_BYTES_PER_PHOTO_PIXEL = 12
RESTORE_BYTES_PER_OBSERVED_VALUE = 8
#: Restoring, per input pixel when filling a mask: the mask as float32.
RESTORE_BYTES_PER_MASK_PIXEL = 4
#: Stage 1 (engine/cleanup), per pixel the clean-up network puts out: its float32 RGB blended
#: canvas and the cleaned photo (not measured; float32 RGB twice).
CLEANUP_BYTES_PER_NETWORK_PIXEL = 24


def restore_bytes_per_input_pixel(tasks: "Tasks", cleanup_scale: int = 0) -> float:
    """Host bytes a restoration of ``tasks`` needs per input pixel: 58 to colorize, 78 to fill a
    mask, 188 for ×2 super-resolution (measured: 45, 67 and 174); with a clean-up network of
    ``cleanup_scale`` (engine/cleanup), its blended canvas and the cleaned photo on top."""
    channels = 1 if tasks.colorize else 3
    return (tasks.sr ** 2 * RESTORE_BYTES_PER_OUTPUT_PIXEL + RESTORE_BYTES_PER_PHOTO_PIXEL
            + channels * RESTORE_BYTES_PER_OBSERVED_VALUE + (RESTORE_BYTES_PER_MASK_PIXEL if tasks.inpaint else 0)
            + cleanup_scale ** 2 * CLEANUP_BYTES_PER_NETWORK_PIXEL)


#: The fast upscale (a pre-stage resized to the output, engine.cleanup.stage), per input pixel: the
#: photo as float32; per network pixel, the blended canvas (float32 RGB) that becomes the result.
FAST_UPSCALE_BYTES_PER_INPUT_PIXEL = 12
FAST_UPSCALE_BYTES_PER_NETWORK_PIXEL = 12
#: ... and per output pixel: the copy made to save the result, and a resized result (×2, ×8: not ×4).
FAST_UPSCALE_SAVE_BYTES_PER_OUTPUT_PIXEL = 12
FAST_UPSCALE_RESIZE_BYTES_PER_OUTPUT_PIXEL = 12


def fast_upscale_bytes_per_input_pixel(sr: int, network_scale: int = 4) -> float:
    """Host bytes a fast ×``sr`` upscale by a ×``network_scale`` network needs per input pixel (396
    at ×4, 300 at ×2, 1740 at ×8 with a ×4 network)."""
    per_output = FAST_UPSCALE_SAVE_BYTES_PER_OUTPUT_PIXEL
    if sr != network_scale:
        per_output += FAST_UPSCALE_RESIZE_BYTES_PER_OUTPUT_PIXEL
    return (FAST_UPSCALE_BYTES_PER_INPUT_PIXEL + network_scale ** 2 * FAST_UPSCALE_BYTES_PER_NETWORK_PIXEL
            + sr ** 2 * per_output)


def available_bytes(root: Path = Path("/")) -> Optional[int]:
    """Memory this process can get now: the least of psutil's "available" and :func:`cgroup_room`
    (files read under ``root``), or None if neither is known."""
    known = [n for n in (_system_available(), cgroup_room(root)) if n is not None]
    return min(known) if known else None


def _system_available() -> Optional[int]:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no estimate is better than a crash on an odd platform
        return None


#: A limit at or above this is no limit (cgroup v1 writes the largest page count; v2 writes "max").
_UNLIMITED = 1 << 60


def cgroup_room(root: Path = Path("/")) -> Optional[int]:
    """Bytes left under the tightest memory limit of this process's control group and its ancestors
    (Linux; cgroup v2 memory.max / memory.current, or v1 memory.limit_in_bytes / usage_in_bytes),
    or None where there is no limit or no cgroup (Windows, macOS). The group is named in
    ``root``/proc/self/cgroup and its files are under ``root``/sys/fs/cgroup. Inactive file cache,
    which the kernel reclaims before it kills anything, does not count as used."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
        rooms = []
        for line in lines:  # "hierarchy:controllers:path"
            hierarchy, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            if hierarchy == "0" and not controllers:  # v2, the unified hierarchy
                rooms += _rooms(root / "sys/fs/cgroup", path, "memory.max", "memory.current", "inactive_file")
            elif "memory" in controllers.split(","):  # v1, the memory controller's own hierarchy
                rooms += _rooms(root / "sys/fs/cgroup/memory", path, "memory.limit_in_bytes",
                                "memory.usage_in_bytes", "total_inactive_file")
    except Exception:  # noqa: BLE001 - no estimate is better than a crash on an odd platform
        return None
    return min(rooms) if rooms else None


def _rooms(mount: Path, path: str, limit_file: str, usage_file: str, inactive_key: str) -> list[int]:
    """Room under the limit of the group at ``path`` and of each of its ancestors that has one."""
    rooms = []
    group = mount / path.strip().lstrip("/")
    while True:
        limit = _read_bytes(group / limit_file)
        usage = _read_bytes(group / usage_file)
        if limit is not None and limit < _UNLIMITED and usage is not None:
            rooms.append(max(0, limit - max(0, usage - _stat(group / "memory.stat", inactive_key))))
        if group == mount or mount not in group.parents:
            return rooms
        group = group.parent


def _read_bytes(path: Path) -> Optional[int]:
    """A cgroup file's number, or None when it is missing, "max" or not a number."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _stat(path: Path, key: str) -> int:
    """One value of a memory.stat file ("key value" lines), 0 when absent."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


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
