"""The open photo and everything painted on it, as a QObject without widgets.

Arrays (all numpy, GUI thread only):

- ``image``: (H, W, 3) float32 in [0, 1], the current photo (what a run restores);
- ``original``: the photo as loaded, for "hold to see the original" (the same array as ``image``
  until a result is applied: these arrays are replaced, never written in place);
- ``mask``: (H, W) uint8 0..255 (soft brush edges); the engine gets ``mask > 127``. It is
  written through ``set_mask_region`` and ``set_mask`` only, which keep count of the pixels to
  fill, so ``has_mask`` never scans it;
- ``preview``: (H·s, W·s, 3) float32 in [0, 1] or None, the result layer of a run, s = its upscale.
  A run that fills the mask remembers the marks it started with (one bit a pixel), and the
  preview the regions of the windows it finished: :meth:`filled_marks` is what Apply clears.

``undo_stack`` is the undo history (:mod:`gui.document.history`): it drops its oldest steps when they hold
more memory than its budget (an Apply keeps the photo it replaced).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PySide6.QtCore import QObject, Signal

from gui.document.history import UndoHistory

#: A region (top, left, height, width) in the coordinates of the array a signal is about.
Region = tuple[int, int, int, int]


class Document(QObject):
    image_changed = Signal()  # new photo or photo replaced (size may change)
    mask_changed = Signal(object)  # Region of the mask that changed, or None for all of it
    preview_changed = Signal(object)  # Region of the preview (its own pixels), or None for all / removed
    path_changed = Signal(str)
    modified_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.undo_stack = UndoHistory(self, kept_elsewhere=lambda: (self.image, self.original))
        self.image: Optional[np.ndarray] = None
        self.original: Optional[np.ndarray] = None
        self.mask: Optional[np.ndarray] = None
        self._filled = 0  # pixels of the mask above 127
        self.preview: Optional[np.ndarray] = None
        self.preview_scale: int = 1
        self.preview_finished = False  # True once the run that made the preview completed
        self.preview_report: dict[str, Any] = {}
        self._run_marks: Optional[np.ndarray] = None  # the mask != 0 when a filling run began, packed bits
        self._finished: list[Region] = []  # the preview's regions that finished windows wrote
        self.loaded: Any = None  # engine.image_io.LoadedImage of the file (EXIF, ICC, bit depth)
        self.path: str = ""
        self._modified = False
        self.undo_stack.cleanChanged.connect(self._on_clean_changed)

    # ---- photo ------------------------------------------------------------------------
    @property
    def has_image(self) -> bool:
        return self.image is not None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the current photo, (0, 0) when none is open."""
        return (0, 0) if self.image is None else self.image.shape[:2]

    def set_photo(self, pixels: np.ndarray, path: str = "", loaded: Any = None) -> None:
        """Open ``pixels`` (H, W, 3) float32 [0, 1] as a new document (clears mask, preview, undo)."""
        pixels = np.ascontiguousarray(pixels[..., :3], dtype=np.float32)
        self.undo_stack.clear()
        self.image = pixels
        self.original = pixels  # no copy: the photo is replaced, never changed in place
        self.mask = np.zeros(pixels.shape[:2], np.uint8)
        self._filled = 0
        self.preview = None
        self.preview_scale = 1
        self.preview_finished = False
        self._forget_run()
        self.loaded = loaded
        self.path = path
        self.image_changed.emit()
        self.mask_changed.emit(None)
        self.preview_changed.emit(None)
        self.path_changed.emit(path)
        self._set_modified(False)

    def replace_image(self, pixels: np.ndarray, keep_mask: bool = False) -> None:
        """Swap in another photo (used by undoable Apply). The mask stays as it is if ``keep_mask``
        and it has the photo's size; otherwise the photo gets an empty mask."""
        self.image = np.ascontiguousarray(pixels, dtype=np.float32)
        new_mask = not keep_mask or self.mask is None or self.mask.shape != self.image.shape[:2]
        if new_mask:
            self.mask = np.zeros(self.image.shape[:2], np.uint8)
            self._filled = 0
        self.image_changed.emit()
        if new_mask:
            self.mask_changed.emit(None)

    # ---- mask -------------------------------------------------------------------------
    def set_mask_region(self, top: int, left: int, values: np.ndarray) -> None:
        h, w = values.shape[:2]
        block = self.mask[top : top + h, left : left + w]
        self._filled += int(np.count_nonzero(values > 127)) - int(np.count_nonzero(block > 127))
        block[...] = values
        self.mask_changed.emit((top, left, h, w))

    def set_mask(self, mask: np.ndarray) -> None:
        if mask.shape != self.mask.shape:
            raise ValueError(f"mask is {mask.shape[1]}×{mask.shape[0]} but the photo is {self.mask.shape[1]}×{self.mask.shape[0]}")
        self.mask = np.ascontiguousarray(mask, dtype=np.uint8)
        self._count_filled()
        self.mask_changed.emit(None)

    def _count_filled(self) -> None:
        self._filled = int(np.count_nonzero(self.mask > 127))

    def has_mask(self) -> bool:
        """Whether the mask marks anything to fill (kept count of: no scan)."""
        return self.mask is not None and self._filled > 0

    def engine_mask(self) -> np.ndarray:
        """(H, W) uint8 with 255 where the engine must fill, 0 elsewhere."""
        return np.where(self.mask > 127, np.uint8(255), np.uint8(0))

    # ---- result preview ---------------------------------------------------------------
    def begin_preview(self, scale: int, fills_mask: bool = False) -> None:
        """Start an empty result layer for a run with upscale factor ``scale`` (the photo, upscaled)
        that fills the masked areas or not."""
        h, w = self.size
        self.preview_scale = int(scale)
        self.preview_finished = False
        self.preview_report = {}
        self._forget_run()
        if fills_mask:
            self._run_marks = np.packbits(self.mask != 0, axis=1)
        self.preview = None  # a last result is let go before the new one is made
        if scale == 1:
            self.preview = self.image.copy()
        else:
            import cv2

            upscaled = cv2.resize(self.image, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
            self.preview = np.clip(upscaled, 0.0, 1.0, out=upscaled)
        self.preview_changed.emit(None)

    def paint_preview(self, top: int, left: int, pixels: np.ndarray, scale_to_output: float = 1.0,
                      fills: bool = True) -> Optional[Region]:
        """Paste a finished window (box in stage coordinates × ``scale_to_output`` = preview pixels).
        ``fills``: the window fills the marks under it (a clean-up tile does not: stage 2 does)."""
        if self.preview is None:
            return None
        if scale_to_output != 1.0:
            import cv2

            h, w = pixels.shape[:2]
            top, left = round(top * scale_to_output), round(left * scale_to_output)
            size = (max(1, round(w * scale_to_output)), max(1, round(h * scale_to_output)))
            pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_CUBIC)
        ph, pw = self.preview.shape[:2]
        h, w = pixels.shape[:2]
        bottom, right = min(top + h, ph), min(left + w, pw)
        if bottom <= top or right <= left:
            return None
        self.preview[top:bottom, left:right] = np.clip(pixels[: bottom - top, : right - left, :3], 0, 1)
        region = (top, left, bottom - top, right - left)
        if fills:
            self._finished.append(region)
        self.preview_changed.emit(region)
        return region

    def finish_preview(self, result: np.ndarray, report: dict[str, Any] | None = None) -> None:
        self.preview = np.ascontiguousarray(result[..., :3], dtype=np.float32)
        self.preview_scale = max(1, round(self.preview.shape[0] / self.size[0]))
        self.preview_finished = True
        self.preview_report = dict(report or {})
        self.preview_changed.emit(None)

    def discard_preview(self) -> None:
        self.preview = None
        self.preview_finished = False
        self._forget_run()
        self.preview_changed.emit(None)

    def _forget_run(self) -> None:
        self._run_marks, self._finished = None, []

    def filled_marks(self, region: Region) -> Optional[np.ndarray]:
        """(h, w) bool over ``region`` of the photo: the pixels of the mask that the preview has
        filled, i.e. marked (any value, soft edges too) when its run began, inside a window that
        finished (anywhere once the run completed); on an upscaled preview (×s) a photo pixel is
        filled when its s×s block lies inside such a window. None when the run filled nothing
        (no Fill) or the preview is not the photo ×s."""
        s = self.preview_scale
        if self._run_marks is None or self.preview is None or self.preview.shape[:2] != (self.size[0] * s, self.size[1] * s):
            return None
        top, left, h, w = region
        rows = np.unpackbits(self._run_marks[top : top + h], axis=1, count=self.size[1])
        marks = rows[:, left : left + w].view(bool)
        if self.preview_finished:
            return marks
        done = np.zeros_like(marks)
        for t, l, bh, bw in self._finished:  # preview pixels -> the photo pixels they cover whole
            t0, l0, t1, l1 = -(-t // s) - top, -(-l // s) - left, (t + bh) // s - top, (l + bw) // s - left
            done[max(t0, 0) : max(t1, 0), max(l0, 0) : max(l1, 0)] = True
        return marks & done

    # ---- state ------------------------------------------------------------------------
    @property
    def modified(self) -> bool:
        return self._modified

    def _on_clean_changed(self, clean: bool) -> None:
        self._set_modified(not clean)

    def _set_modified(self, value: bool) -> None:
        if value != self._modified:
            self._modified = value
            self.modified_changed.emit(value)

    def mark_saved(self, path: str) -> None:
        self.path = path
        self.undo_stack.setClean()
        self._set_modified(False)
        self.path_changed.emit(path)


def loaded_pixels(loaded: Any) -> np.ndarray:
    """(H, W, 3) float32 [0, 1] from whatever ``engine.image_io.load_image`` returned: a
    LoadedImage's own pixels (already that; no copy), or an array converted."""
    if isinstance(loaded, np.ndarray):
        return to_float_rgb(loaded)
    return loaded.rgb


def to_float_rgb(pixels: np.ndarray) -> np.ndarray:
    """Any (H, W), (H, W, 1|3|4) uint8/uint16/float array -> (H, W, 3) float32 [0, 1]."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    pixels = pixels[..., :3]
    if pixels.dtype in (np.uint8, np.uint16):
        out = pixels.astype(np.float32)
        out /= 255.0 if pixels.dtype == np.uint8 else 65535.0
        return out
    return np.clip(pixels, 0.0, 1.0, dtype=np.float32)
