"""The undo history is capped by memory: each Apply keeps the photo it replaced (about 1 GB for a
10000×8000 scan), so the oldest steps are dropped to stay within the budget, the newest is always
kept, a dropped step cannot be undone, and what is kept undoes and redoes exactly."""

from __future__ import annotations

import numpy as np
import pytest

from gui.document import history
from gui.document import mask_tools
from gui.document.document import Document
from gui.document.undo import ApplyResultCommand, mask_replace_command


@pytest.fixture
def doc(qapp, make_photo):  # qapp: the Undo and Redo actions are QActions
    document = Document()
    document.set_photo(make_photo(60, 80))
    document.set_mask(np.where(np.arange(80) < 30, 255, 0).astype(np.uint8)[None, :].repeat(60, axis=0))
    return document


def apply(doc: Document, value: float) -> np.ndarray:
    """Apply a result (a new array, as a run makes) and return it."""
    result = np.full(doc.image.shape, value, np.float32)
    doc.undo_stack.push(ApplyResultCommand(doc, result))
    return result


def test_applies_are_capped_by_the_history_budget_oldest_first(doc):
    stack, photo = doc.undo_stack, doc.image
    stack.budget = 3 * photo.nbytes
    results = [photo]
    for i in range(8):
        results.append(apply(doc, i / 10))
        assert stack.held_bytes() <= stack.budget
    assert stack.count() == 3, "the photos before the last three Applies are let go"
    undo_action = stack.createUndoAction(doc)
    redo_action = stack.createRedoAction(doc)
    assert undo_action.isEnabled() and undo_action.text() == "Undo Apply restoration"
    for back in range(1, 4):
        stack.undo()
        assert doc.image is results[-1 - back], "undo gives back the very photo it replaced"
    assert not stack.canUndo() and not undo_action.isEnabled(), "the dropped Applies cannot be undone"
    assert redo_action.isEnabled()
    for forward in (2, 1, 0):
        stack.redo()
        assert doc.image is results[-1 - forward]
    assert doc.modified


def test_the_newest_step_is_kept_however_large(doc):
    photo = doc.image
    doc.undo_stack.budget = 1
    first = apply(doc, 0.2)
    second = apply(doc, 0.7)
    assert doc.undo_stack.count() == 1 and doc.image is second
    doc.undo_stack.undo()
    assert doc.image is first and not doc.undo_stack.canUndo()
    assert photo is doc.original, "the opened photo stays the original"


def test_a_kept_mask_edit_is_carried_over_and_still_undoes_exactly(doc):
    stack, mask = doc.undo_stack, doc.mask.copy()
    stack.budget = doc.image.nbytes + mask.nbytes
    apply(doc, 0.1)
    before_invert = apply(doc, 0.2)
    stack.push(mask_replace_command(doc, mask_tools.invert_mask(doc.mask), "Invert mask"))
    apply(doc, 0.3)
    assert [stack.command(i).text() for i in range(stack.count())] == ["Invert mask", "Apply restoration"]
    stack.undo()
    assert doc.image is before_invert and np.array_equal(doc.mask, 255 - mask)
    stack.undo()
    assert np.array_equal(doc.mask, mask) and not stack.canUndo()
    stack.redo()
    assert np.array_equal(doc.mask, 255 - mask)


def test_a_dropped_mask_edit_stays_done(doc):
    stack, mask = doc.undo_stack, doc.mask.copy()
    stack.push(mask_replace_command(doc, mask_tools.invert_mask(doc.mask), "Invert mask"))
    stack.budget = 2 * doc.image.nbytes
    for i in range(4):
        apply(doc, i / 10)
    assert all(stack.command(i).text() == "Apply restoration" for i in range(stack.count()))
    while stack.canUndo():
        stack.undo()
    assert np.array_equal(doc.mask, 255 - mask), "the invert was dropped: it cannot be undone"


def test_the_saved_state_is_found_again_only_if_it_was_kept(doc):
    stack = doc.undo_stack
    stack.budget = 2 * doc.image.nbytes
    apply(doc, 0.1)
    apply(doc, 0.2)
    doc.mark_saved("/tmp/saved.png")
    apply(doc, 0.3)
    assert doc.modified
    stack.undo()
    assert not doc.modified, "the saved state is still in the history"
    stack.redo()
    apply(doc, 0.4)
    apply(doc, 0.5)  # the step that led to the saved state is dropped
    while stack.canUndo():
        stack.undo()
        assert doc.modified, "no undo reaches a saved state that was dropped"


def test_the_default_budget_is_an_eighth_of_memory_up_to_4_gib(monkeypatch):
    import psutil

    class Memory:
        total = 16 * 10**9

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Memory)
    assert history.default_budget() == 2 * 10**9
    Memory.total = 256 * 10**9
    assert history.default_budget() == 4 << 30
    assert Document().undo_stack.budget == 4 << 30


def test_the_windows_undo_action_is_disabled_at_the_oldest_kept_step(make_window, make_photo):
    window = make_window()
    doc = window.document
    doc.set_photo(make_photo(40, 50))
    doc.undo_stack.budget = 2 * doc.image.nbytes  # the photos before the last two Applies
    for i in range(4):
        apply(doc, i / 10)
    assert window.act_undo.isEnabled() and doc.undo_stack.count() == 2
    doc.undo_stack.undo()
    assert doc.undo_stack.canUndo() and window.act_undo.isEnabled()
    doc.undo_stack.undo()
    assert not window.act_undo.isEnabled() and window.act_redo.isEnabled()
