"""The document's undo history, capped by memory.

Every Apply keeps the photo it replaced, and a 10000×8000 scan is about 1 GB of float32: a history
without a limit grows with each Apply until the computer runs out of memory. :class:`UndoHistory`
is a QUndoStack that, after each push, drops its oldest steps until what it holds fits in its
budget (:func:`default_budget`). The newest step is always kept, however large. A dropped step is
gone: it cannot be undone, and Undo is disabled once the oldest kept step has been undone.

What the history holds is the arrays its steps hold (``arrays()``, see :class:`gui.document.undo.Step`),
each counted once however many steps share it (an Apply keeps the photo before it, which the next
Apply keeps as the photo it replaced) and not at all while the document holds it anyway (the photo
shown, the original).

A QUndoStack cannot remove its oldest commands (its count limit can only be set while it is
empty), so dropping rebuilds the stack from the kept steps, each carried over already done, with
its signals blocked: Undo's text, what can be undone and redone, and whether the document is
saved read the same afterwards (a saved state that was dropped can no longer be reached).
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtGui import QUndoStack

#: The most the history holds, on a computer with plenty of memory.
MAX_BUDGET_BYTES = 4 << 30
#: The budget where the computer's memory is unknown.
FALLBACK_BUDGET_BYTES = 2 << 30


def default_budget() -> int:
    """An eighth of the computer's memory, at most :data:`MAX_BUDGET_BYTES` (2 GiB on a 16 GB
    computer): room is left for the photo, the result layer and the next restoration."""
    try:
        import psutil

        return min(MAX_BUDGET_BYTES, int(psutil.virtual_memory().total) // 8)
    except Exception:  # noqa: BLE001 - an odd platform gets the fixed budget
        return FALLBACK_BUDGET_BYTES


def _owner(array: np.ndarray) -> np.ndarray:
    """The array that owns ``array``'s memory (a view keeps all of it alive)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


class UndoHistory(QUndoStack):
    """A QUndoStack of :class:`gui.document.undo.Step` that holds at most ``budget`` bytes beyond the arrays
    ``kept_elsewhere()`` returns (the document's own), dropping its oldest steps first."""

    def __init__(self, parent: Optional[QObject] = None,
                 kept_elsewhere: Callable[[], Iterable[Optional[np.ndarray]]] = tuple,
                 budget: Optional[int] = None):
        super().__init__(parent)
        self.budget = default_budget() if budget is None else int(budget)
        self._kept_elsewhere = kept_elsewhere
        #: goes up with every push, undo and redo: the same number means nothing was done or
        #: undone since (the index cannot tell: dropping steps shifts it, and an undo and a new
        #: step give it back with another state)
        self.changes = 0
        self.indexChanged.connect(self._count_change)

    def _count_change(self, _index: int) -> None:
        self.changes += 1

    def push(self, step) -> None:
        super().push(step)
        self._drop_oldest()

    def held_bytes(self) -> int:
        """Bytes the history holds that nothing else does."""
        held = self._held_from_each()
        return held[0] if held else 0

    def _held_from_each(self) -> list[int]:
        """Per step (oldest first), the bytes held by it and the newer steps and by nothing else:
        one pass from the newest, each array counted where it is first met."""
        seen = {id(_owner(a)) for a in self._kept_elsewhere() if a is not None}
        total, held = 0, []
        for index in reversed(range(self.count())):
            for array in self.command(index).arrays():
                owner = _owner(array)
                if id(owner) not in seen:
                    seen.add(id(owner))
                    total += owner.nbytes
            held.append(total)
        return held[::-1]

    def _drop_oldest(self) -> None:
        held = self._held_from_each()
        drop = next((index for index, total in enumerate(held) if total <= self.budget), len(held) - 1)
        if drop > 0:
            self._rebuild(drop)

    def _rebuild(self, drop: int) -> None:
        """The stack without its ``drop`` oldest steps; called right after a push, when every step
        is done."""
        kept = [self.command(index).carried() for index in range(drop, self.count())]
        clean = self.cleanIndex() - drop  # where the saved state is among the kept steps
        blocked = self.blockSignals(True)
        try:
            self.clear()
            for index, step in enumerate(kept):
                if index == clean:
                    self.setClean()
                super().push(step)  # already done: its redo is skipped
            if clean < 0:
                self.resetClean()  # the saved state was dropped: no undo reaches it
        finally:
            self.blockSignals(blocked)
