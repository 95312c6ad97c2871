"""Undoable edits (QUndoCommand) that keep what undo and redo need once: a mask edit keeps the
blocks of the mask it changed as the mask does not show them now (old while done, new while
undone) and swaps them with the mask's; an Apply keeps the photo it replaced (a reference: never a
copy). The document's history (:mod:`gui.document.history`) weighs them by their arrays and drops the
oldest when they hold too much."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PySide6.QtGui import QUndoCommand

from gui.document.document import Document
from gui.document.mask_tools import Delta, Region, changed_region, nonzero_region

#: A block of the mask (top, left, height, width) and its (h, w) uint8 pixels that the mask does not show now
Block = tuple[Region, np.ndarray]


class Step(QUndoCommand):
    """An undoable edit that says which arrays it holds (for the history's budget) and can be
    carried into a rebuilt history. ``done``: the document shows the edit already (a stroke
    painted live, a step carried over), so the redo that pushing it runs is skipped."""

    def __init__(self, text: str, done: bool = False):
        super().__init__(text)
        self._skip_redo = done

    def redo(self) -> None:
        if self._skip_redo:
            self._skip_redo = False
        else:
            self.apply()

    def undo(self) -> None:
        self.revert()

    def apply(self) -> None:
        raise NotImplementedError

    def revert(self) -> None:
        raise NotImplementedError

    def arrays(self) -> list[np.ndarray]:
        """The arrays this step keeps alive."""
        raise NotImplementedError

    def carried(self) -> "Step":
        """The same edit as a new command, done (the history's QUndoStack deletes this one)."""
        twin = type(self).__new__(type(self))
        Step.__init__(twin, self.text(), done=True)
        twin.__dict__.update({key: value for key, value in vars(self).items() if key != "_skip_redo"})
        return twin


class MaskEditCommand(Step):
    """Swap blocks of the mask: each block holds the pixels of its region that the mask does not
    show now, (h, w) uint8; redo and undo both swap them with the mask's. A brush stroke holds a
    block per tile it changed; it is painted live and committed at mouse release, done."""

    def __init__(self, document: Document, blocks: Sequence[Block], text: str = "Paint mask", done: bool = True):
        super().__init__(text, done)
        self.document = document
        self.blocks = [(tuple(int(v) for v in region), values) for region, values in blocks]

    @property
    def region(self) -> Region:
        """The bounding box of the blocks."""
        tops, lefts, bottoms, rights = zip(*((t, l, t + h, l + w) for (t, l, h, w), _ in self.blocks))
        return min(tops), min(lefts), max(bottoms) - min(tops), max(rights) - min(lefts)

    @property
    def nbytes(self) -> int:
        return sum(values.nbytes for _, values in self.blocks)

    def apply(self) -> None:
        swapped = []
        for (top, left, h, w), values in self.blocks:
            shown = self.document.mask[top : top + h, left : left + w].copy()
            self.document.set_mask_region(top, left, values)
            swapped.append(((top, left, h, w), shown))
        self.blocks = swapped

    revert = apply

    def arrays(self) -> list[np.ndarray]:
        return [values for _, values in self.blocks]


def stroke_command(document: Document, deltas: Sequence[Delta], text: str) -> MaskEditCommand:
    """The undo step of a stroke already painted into the mask: its deltas' old pixels."""
    return MaskEditCommand(document, [(region, old) for region, old, _new in deltas], text, done=True)


def mask_replace_command(document: Document, new_mask: np.ndarray, text: str) -> Optional[MaskEditCommand]:
    """A command turning the document's mask into ``new_mask`` (None if nothing changes); it keeps
    the changed block of ``new_mask`` (no copy when that is all of it) until pushed, then the old."""
    region = changed_region(document.mask, new_mask)
    if region is None:
        return None
    top, left, h, w = region
    new = np.ascontiguousarray(new_mask[top : top + h, left : left + w])
    return MaskEditCommand(document, [(region, new)], text, done=False)


class ApplyResultCommand(Step):
    """Make the run's result the current photo (the preview is consumed); undo restores the photo
    and mask. The mask stays, less the marks the run filled (``Document.filled_marks``: a mask
    used by Fill is done with, but marks in windows a cancelled run never reached, and strokes
    painted since it began, are still to do); on an upscaled result (×s) the marks that stay are
    scaled ×s (nearest neighbour). A result of another size gets an empty mask. The command keeps
    the block of the mask that marked anything, for undo, and that block after Apply when it changes."""

    def __init__(self, document: Document, result: np.ndarray, text: str = "Apply restoration"):
        super().__init__(text)
        self.document = document
        self.old_image = document.image
        self.new_image = result
        h, w = document.size
        scale = result.shape[0] // h if h else 0
        self.scale = scale if result.shape[:2] == (h * scale, w * scale) else 0  # 0: the mask cannot follow
        self.keep_mask = self.scale == 1
        self.mask_block: Optional[tuple[Region, np.ndarray]] = None
        self.mask_after: Optional[np.ndarray] = None  # the block after Apply, ×scale (None: cleared or unchanged)
        region = nonzero_region(document.mask)
        filled = document.filled_marks(region) if self.scale and region is not None else None
        if region is not None and (filled is not None or not self.keep_mask):
            top, left, bh, bw = region
            self.mask_block = region, document.mask[top : top + bh, left : left + bw].copy()
            after = self.mask_block[1] if filled is None else np.where(filled, np.uint8(0), self.mask_block[1])
            if self.scale > 1 and after.any():
                import cv2

                after = cv2.resize(after, (bw * self.scale, bh * self.scale), interpolation=cv2.INTER_NEAREST)
            self.mask_after = after if self.scale and after.any() else None

    def apply(self) -> None:
        self.document.replace_image(self.new_image, self.keep_mask)
        if self.mask_block is not None:
            (top, left, h, w), _old = self.mask_block
            if self.mask_after is not None:
                self.document.set_mask_region(top * self.scale, left * self.scale, self.mask_after)
            elif self.keep_mask:
                self.document.set_mask_region(top, left, np.zeros((h, w), np.uint8))
        self.document.discard_preview()

    def revert(self) -> None:
        self.document.replace_image(self.old_image, self.keep_mask)
        if self.mask_block is not None:
            (top, left, _, _), values = self.mask_block
            self.document.set_mask_region(top, left, values)

    def arrays(self) -> list[np.ndarray]:
        blocks = [block for block in (self.mask_block and self.mask_block[1], self.mask_after) if block is not None]
        return [self.old_image, self.new_image] + blocks
