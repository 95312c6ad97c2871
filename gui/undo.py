"""Undoable edits (QUndoCommand). Mask edits store deltas: blocks of the mask with their old and new pixels."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PySide6.QtGui import QUndoCommand

from gui.document import Document
from gui.mask_tools import Delta, Region, changed_region, nonzero_region


class MaskEditCommand(QUndoCommand):
    """Replace blocks of the mask: each delta (region (top, left, h, w), old, new) holds the old
    and new pixels there, (h, w) uint8. A brush stroke holds a delta per tile it changed.

    A brush stroke is painted live and committed at mouse release as one command, so ``redo``
    on the first push is a no-op when the mask already holds the new pixels.
    """

    def __init__(self, document: Document, deltas: Sequence[Delta], text: str = "Paint mask"):
        super().__init__(text)
        self.document = document
        self.deltas = [(tuple(int(v) for v in region), old, new) for region, old, new in deltas]

    @property
    def region(self) -> Region:
        """The bounding box of the blocks."""
        tops, lefts, bottoms, rights = zip(*((t, l, t + h, l + w) for (t, l, h, w), _, _ in self.deltas))
        return min(tops), min(lefts), max(bottoms) - min(tops), max(rights) - min(lefts)

    @property
    def nbytes(self) -> int:
        return sum(old.nbytes + new.nbytes for _, old, new in self.deltas)

    def _write(self, new: bool) -> None:
        for (top, left, h, w), old_values, new_values in self.deltas:
            values = new_values if new else old_values
            if not np.array_equal(self.document.mask[top : top + h, left : left + w], values):
                self.document.set_mask_region(top, left, values)

    def redo(self) -> None:
        self._write(True)

    def undo(self) -> None:
        self._write(False)


def mask_replace_command(document: Document, new_mask: np.ndarray, text: str) -> Optional[MaskEditCommand]:
    """A delta command turning the document's mask into ``new_mask`` (None if nothing changes)."""
    region = changed_region(document.mask, new_mask)
    if region is None:
        return None
    top, left, h, w = region
    old = document.mask[top : top + h, left : left + w].copy()
    new = np.ascontiguousarray(new_mask[top : top + h, left : left + w])
    return MaskEditCommand(document, [(region, old, new)], text)


class ApplyResultCommand(QUndoCommand):
    """Make the run's result the current photo (the preview is consumed); undo restores the photo
    and mask. The mask stays, untouched, when the run did not fill it and the size is unchanged;
    otherwise it is cleared (a mask used by Fill is done with, and a mask cannot follow an
    upscale), and the command keeps the block of it that marked anything, for undo."""

    def __init__(self, document: Document, result: np.ndarray, text: str = "Apply restoration"):
        super().__init__(text)
        self.document = document
        self.old_image = document.image
        self.new_image = result
        self.keep_mask = not document.preview_fills_mask and result.shape[:2] == document.size
        self.mask_block: Optional[tuple[Region, np.ndarray]] = None
        region = None if self.keep_mask else nonzero_region(document.mask)
        if region is not None:
            top, left, h, w = region
            self.mask_block = region, document.mask[top : top + h, left : left + w].copy()

    def redo(self) -> None:
        self.document.replace_image(self.new_image, self.keep_mask)
        self.document.discard_preview()

    def undo(self) -> None:
        self.document.replace_image(self.old_image, self.keep_mask)
        if self.mask_block is not None:
            (top, left, _, _), values = self.mask_block
            self.document.set_mask_region(top, left, values)
