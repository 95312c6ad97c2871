"""The main window's unsaved work (a mixin): what is safe on disk, and the questions that keep a
result or a painted mask from being lost."""

from __future__ import annotations

import hashlib
import weakref
from typing import Any, Callable, NamedTuple, Optional

import numpy as np
from PySide6.QtWidgets import QMessageBox

from gui.app import icon
from gui.files import ops as file_ops


def painted_digest(mask: Optional[np.ndarray]) -> Optional[bytes]:
    """A digest of a mask that marks anything (None for no mask or an empty one). Any thread."""
    if mask is None or not mask.any():
        return None
    digest = hashlib.blake2b(repr(mask.shape).encode(), digest_size=20)
    digest.update(np.ascontiguousarray(mask).data)
    return digest.digest()


class SaveQuestion(NamedTuple):
    """The question asked before unsaved work would be lost, with its button texts ("" = no such button)."""

    text: str
    save: str
    discard: str
    cancel: str


class UnsavedWork:
    """Needs ``document``, ``runs``, ``panel``, ``files``, ``save``, ``export_mask`` and
    ``_update_title`` (shows :meth:`has_unsaved_work`) from the window it is mixed into, which calls
    :meth:`_mark_saved` once it has a document and its runs."""

    def _mark_saved(self, written: Optional[np.ndarray] = None, mask: Optional[bytes] = None) -> None:
        """Remember what is safe on disk: the photo as opened (``written`` None: a photo was just
        opened, its mask empty) or the pixels just written. Weak references: nothing is kept alive
        for this. The mask they were saved with (its ``painted_digest``) counts as kept too: saving
        the result it was painted for ends its work."""
        image = self.document.image
        if written is None:
            self._opened_pixels = weakref.ref(image) if image is not None else None
        self._saved_pixels = weakref.ref(written) if written is not None else None
        self._mark_mask_kept(mask)

    def _mark_mask_kept(self, digest: Optional[bytes]) -> None:
        """The mask with this ``painted_digest`` is in a file (imported, exported) or done with (a
        result saved). Remembered by its digest: a scan's mask is tens of megabytes."""
        self._kept_mask = digest
        self._update_title()

    def _on_disk(self, pixels: Optional[np.ndarray]) -> bool:
        return any(ref is not None and ref() is pixels for ref in (self._opened_pixels, self._saved_pixels))

    def result_unsaved(self) -> bool:
        """Whether what Save writes (the result preview, else the photo) is neither the photo as
        opened nor the last file saved. During a run: whether stopping it leaves such a result."""
        d = self.document
        if not d.has_image:
            return False
        if self.runs.running and not self.runs.windows_finished:
            return not self._on_disk(d.image)  # stopping now drops the empty preview
        return not self._on_disk(file_ops.result_pixels(d))

    def mask_unsaved(self) -> bool:
        """A painted mask that closing or replacing the photo would lose: not empty, and changed
        since it was imported, exported, or a result was saved (Save writes the photo only)."""
        painted = painted_digest(self.document.mask)
        return painted is not None and painted != self._kept_mask

    def has_unsaved_work(self) -> bool:
        """A restoration running, a result (finished, kept after Cancel, or applied) not saved, or
        a painted mask that would be lost."""
        return self.runs.running or self.result_unsaved() or self.mask_unsaved()

    def save_question(self, action: str) -> SaveQuestion:
        """What to ask before ``action`` would lose the unsaved work. Its Save keeps the result if
        there is one to keep, else the mask (Export mask)."""
        mask_too = "\nThe mask you painted would be lost too." if self.mask_unsaved() else ""
        if self.runs.running:
            done = self.runs.windows_finished
            if not self.result_unsaved():
                return SaveQuestion(f"A restoration is running; no window has finished yet.{mask_too}\n"
                                    f"Stop it before {action}?", "", "Stop", "Keep running")
            so_far = f"{done} window{'s' * (done != 1)} finished so far" if done else "no window has finished yet"
            return SaveQuestion(f"A restoration is running ({so_far}).{mask_too}\nStop it and save the result "
                                f"so far before {action}?", "Stop and save", "Stop and discard", "Keep running")
        if self.result_unsaved():
            return SaveQuestion(f"The restored photo has not been saved.{mask_too}\nSave it before {action}?",
                                "Save", "Discard", "Cancel")
        return SaveQuestion(f"The mask you painted would be lost (Save writes the photo, not the mask).\n"
                            f"Export the mask before {action}?", "Export mask…", "Discard", "Cancel")

    def ask_save_changes(self, action: str) -> str:
        """"save" | "discard" | "cancel" (tests replace this)."""
        question = self.save_question(action)
        box = QMessageBox(QMessageBox.Warning, "Unsaved work", question.text, QMessageBox.NoButton, self)
        for button, text in ((QMessageBox.Save, question.save), (QMessageBox.Discard, question.discard),
                             (QMessageBox.Cancel, question.cancel)):
            if text:
                box.addButton(button).setText(text)
        box.setDefaultButton(QMessageBox.Save if question.save else QMessageBox.Cancel)
        return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(box.exec(), "cancel")

    def pending_question(self) -> SaveQuestion:
        """What to ask before a new run replaces an unsaved result (``save``: apply it). A run that
        stopped early is continued by discarding its windows: the new run shows them again; unless
        the mask or settings have changed since, and the new run would replace them."""
        if not self.document.preview_finished and not self.runs.would_continue():
            return SaveQuestion("The last restoration stopped before the end, and the mask or settings have "
                                "changed since: a new restoration starts over and replaces its finished windows."
                                "\nApply them, so the new restoration starts from them, or discard them?",
                                "Apply and restore", "Discard and start over", "Cancel")
        if not self.document.preview_finished:
            return SaveQuestion("The last restoration stopped before the end.\nContinue it from its finished "
                                "windows (same photo, mask and settings), or apply them, so a new restoration "
                                "starts from them?", "Apply and restore", "Continue", "Cancel")
        return SaveQuestion("The last result has not been applied or saved.\nApply it, so the new restoration "
                            "starts from it, or discard it?", "Apply and restore", "Discard and restore", "Cancel")

    def pending_result_box(self) -> tuple[QMessageBox, dict[Any, str]]:
        """The question before a new run replaces an unsaved result, and the answer of each button.
        Continue is not a Discard button (the platform would give it a trash can): it goes on."""
        question = self.pending_question()
        box = QMessageBox(QMessageBox.Question, "Unsaved result", question.text, QMessageBox.NoButton, self)
        apply = box.addButton(QMessageBox.Apply)
        apply.setText(question.save)
        if question.discard == "Continue":
            other = box.addButton(question.discard, QMessageBox.AcceptRole)
            other.setIcon(icon("restore"))
        else:
            other = box.addButton(QMessageBox.Discard)
            other.setText(question.discard)
        box.addButton(QMessageBox.Cancel)
        box.setDefaultButton(other if question.discard == "Continue" else apply)
        return box, {apply: "apply", other: "discard"}

    def ask_pending_result(self) -> str:
        """"apply" | "discard" | "cancel" before a new run replaces an unsaved result (tests replace this)."""
        box, answers = self.pending_result_box()
        box.exec()
        return answers.get(box.clickedButton(), "cancel")

    def restore(self) -> bool:
        """Start a restoration (Restore button, Run ▸ Restore). An unsaved result on the canvas
        is applied or discarded first, as the user chooses: a new run never drops it silently.
        A run that cannot start now (panel.problems, e.g. a file being saved) is refused without asking."""
        if (self.document.preview is not None and not self.runs.running and not self.panel.problems
                and self.result_unsaved()):
            answer = self.ask_pending_result()
            if answer == "cancel":
                return False
            (self.runs.apply if answer == "apply" else self.runs.discard)()
        return self.runs.start()

    def confirm_discard(self, action: str, then: Callable[[], Any]) -> bool:
        """True when it is fine to go on now: nothing unsaved, or the user chose to discard it.
        False when the user cancelled, or chose to save: the file is written in the background and
        ``then`` (the action again) runs once it is, so nothing is lost if saving fails.
        Going on, or saving, stops a running restoration; its finished windows stay as the result."""
        if not self.has_unsaved_work():
            return True
        answer = self.ask_save_changes(action)
        if answer == "cancel":
            return False
        self.runs.cancel()
        if answer != "save":
            return True
        if self.result_unsaved():
            started = self.save()
        elif self.mask_unsaved():
            started = self.export_mask()
        else:  # stopping the run left nothing to save
            return True
        if started:
            self.files.after(then)
        return False
