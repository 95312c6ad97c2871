"""File commands of the main window (a mixin): open, paste, drag and drop, save, masks, recent
files, and the questions that keep unsaved work (a result, a painted mask) from being lost."""

from __future__ import annotations

import hashlib
import os
import weakref
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from gui import file_ops
from gui.dialogs import busy_cursor


def _painted_digest(mask: Optional[np.ndarray]) -> Optional[bytes]:
    """A digest of a mask that marks anything (None for no mask or an empty one)."""
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


class FileCommands:
    """Needs ``document``, ``settings``, ``runs``, ``log_panel``, ``recent_menu``, ``save_target`` and
    ``_error`` from the window it is mixed into, which calls :meth:`_mark_saved` once it has a document."""

    # ---- unsaved work -------------------------------------------------------------------
    def _mark_saved(self, written: Optional[np.ndarray] = None) -> None:
        """Remember what is safe on disk: the photo as opened (``written`` None: a photo was just
        opened) or the pixels just written. Weak references: nothing is kept alive for this.
        The mask as it is counts as kept too: saving the result it was painted for ends its work."""
        image = self.document.image
        if written is None:
            self._opened_pixels = weakref.ref(image) if image is not None else None
        self._saved_pixels = weakref.ref(written) if written is not None else None
        self._mark_mask_kept()

    def _mark_mask_kept(self) -> None:
        """The mask as it is now is in a file (imported, exported) or done with (a result saved).
        Remembered by its digest: a scan's mask is tens of megabytes."""
        self._kept_mask = _painted_digest(self.document.mask)

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
        painted = _painted_digest(self.document.mask)
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
        stopped early is continued by discarding its windows: the new run shows them again."""
        if not self.document.preview_finished:
            return SaveQuestion("The last restoration stopped before the end.\nContinue it from its finished "
                                "windows (same photo, mask and settings), or apply them, so a new restoration "
                                "starts from them?", "Apply and restore", "Continue", "Cancel")
        return SaveQuestion("The last result has not been applied or saved.\nApply it, so the new restoration "
                            "starts from it, or discard it?", "Apply and restore", "Discard and restore", "Cancel")

    def ask_pending_result(self) -> str:
        """"apply" | "discard" | "cancel" before a new run replaces an unsaved result (tests replace this)."""
        question = self.pending_question()
        box = QMessageBox(QMessageBox.Question, "Unsaved result", question.text, QMessageBox.NoButton, self)
        box.addButton(QMessageBox.Apply).setText(question.save)
        box.addButton(QMessageBox.Discard).setText(question.discard)
        box.addButton(QMessageBox.Cancel)
        box.setDefaultButton(QMessageBox.Apply if self.document.preview_finished else QMessageBox.Discard)
        return {QMessageBox.Apply: "apply", QMessageBox.Discard: "discard"}.get(box.exec(), "cancel")

    def restore(self) -> bool:
        """Start a restoration (Restore button, Run ▸ Restore). An unsaved result on the canvas
        is applied or discarded first, as the user chooses: a new run never drops it silently."""
        if self.document.preview is not None and not self.runs.running and self.result_unsaved():
            answer = self.ask_pending_result()
            if answer == "cancel":
                return False
            (self.runs.apply if answer == "apply" else self.runs.discard)()
        return self.runs.start()

    def confirm_discard(self, action: str) -> bool:
        """True when it is fine to go on: nothing unsaved, or the user saved or chose to discard.
        Going on stops a running restoration; its finished windows stay as the result to save."""
        if not self.has_unsaved_work():
            return True
        answer = self.ask_save_changes(action)
        if answer == "cancel":
            return False
        self.runs.cancel()
        if answer != "save":
            return True
        if self.result_unsaved():
            return self.save()
        return not self.mask_unsaved() or self.export_mask()

    # ---- files --------------------------------------------------------------------------
    def open_dialog(self) -> None:
        start = self.settings.get("last_dir", str(Path.home()), str)
        path, _ = QFileDialog.getOpenFileName(self, "Open photo", start, file_ops.OPEN_FILTER)
        if path:
            self.open_path(path)

    def replace_photo(self, pixels: np.ndarray, action: str, path: str = "", loaded: Any = None) -> bool:
        """The one way a new photo comes in (open, paste, drop): ask about unsaved work (going on
        stops a running restoration, so its result never lands on the new photo), then start
        afresh with the new photo."""
        if not self.confirm_discard(action):
            return False
        with busy_cursor():
            self.document.set_photo(pixels, path=path, loaded=loaded)
        self._mark_saved()
        self.save_target = None
        return True

    def open_path(self, path: str) -> bool:
        path = os.path.abspath(path)  # the document path, last folder, recent list and save suggestion
        try:
            with busy_cursor():
                pixels, loaded = file_ops.load_photo(path)
        except Exception as exc:  # noqa: BLE001 - InputError: a readable message
            if not Path(path).exists():  # e.g. a recent file moved or deleted since
                self.settings.remove_recent_file(path)
                self._update_recent_menu()
            self._error("Cannot open the photo", f"Cannot open {Path(path).name}: {exc}")
            return False
        if not self.replace_photo(pixels, "opening another photo", path, loaded):
            return False
        self.settings.set("last_dir", str(Path(path).parent))
        self.settings.add_recent_file(path)
        self._update_recent_menu()
        self.log_panel.add("info", f"Opened {path}")
        return True

    def paste(self) -> None:
        mime = QGuiApplication.clipboard().mimeData()
        if mime is not None and mime.hasImage():
            image = QGuiApplication.clipboard().image()
            if not image.isNull():
                if self.replace_photo(file_ops.qimage_to_rgb(image), "pasting another photo"):
                    self.log_panel.add("info", f"Pasted a {image.width()}×{image.height()} image")
                return
        if mime is not None and mime.hasUrls():
            for url in mime.urls():
                if url.isLocalFile():
                    self.open_path(url.toLocalFile())
                    return
        self.statusBar().showMessage("The clipboard holds no image", 4000)

    def _can_save(self) -> bool:
        if self.runs.running:
            self.statusBar().showMessage("Wait for the restoration to finish, or cancel it, before saving", 5000)
            return False
        return self.document.has_image

    def save(self) -> bool:
        """Save to the last path (Save as the first time); True if the file was written."""
        if not self._can_save():
            return False
        if self.save_target is None:
            return self.save_as()
        return self.save_to(*self.save_target)

    def save_as(self) -> bool:
        if not self._can_save():
            return False
        filters = ";;".join(file_ops.SAVE_FILTERS)
        path, chosen = QFileDialog.getSaveFileName(self, "Save result", file_ops.suggested_save_path(self.document),
                                                   filters)
        if not path:
            return False
        ext, depth = file_ops.SAVE_FILTERS.get(chosen, (".png", None))
        if not Path(path).suffix:
            path += ext
        quality = self.settings.get("jpeg_quality", 95, int)
        if Path(path).suffix.lower() in (".jpg", ".jpeg", ".webp"):
            quality, ok = QInputDialog.getInt(self, "Quality", "JPEG/WebP quality (1–100):", quality, 1, 100)
            if not ok:
                return False
            self.settings.set("jpeg_quality", quality)
        return self.save_to(path, quality, depth)

    def save_to(self, path: str, quality: int = 95, bit_depth: Optional[int] = None) -> bool:
        pixels = file_ops.result_pixels(self.document)
        try:
            with busy_cursor():
                notes = file_ops.save_photo(self.document, path, quality, bit_depth)
        except Exception as exc:  # noqa: BLE001
            self._error("Cannot save", f"Cannot save {Path(path).name}: {exc}")
            return False
        for note in notes:
            self.log_panel.add("warning", note)
        self.save_target = file_ops.SaveTarget(path, quality, bit_depth)
        self.document.undo_stack.setClean()
        self._mark_saved(pixels)
        self.log_panel.add("info", f"Saved {path}")
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def import_mask(self) -> None:
        if not self.document.has_image:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Import mask", self.settings.get("last_dir", "", str),
                                              file_ops.OPEN_FILTER)
        if path:
            try:
                with busy_cursor():
                    imported = file_ops.load_mask_file(path, self.document.size)
            except Exception as exc:  # noqa: BLE001
                self._error("Cannot import the mask", f"Cannot import the mask: {exc}")
                return
            self.mask_op(lambda _m: imported.mask, "Import mask")
            self._mark_mask_kept()
            (h, w), (ph, pw) = imported.file_size, self.document.size
            if (h, w) != (ph, pw):
                self.statusBar().showMessage(f"The mask was scaled from {w}×{h} to the photo's {pw}×{ph}", 8000)

    def export_mask(self) -> bool:
        """Write the mask to a PNG the user picks; True if it was written."""
        if not self.document.has_image:
            return False
        default = str(Path(file_ops.suggested_save_path(self.document)).with_name(
            f"{Path(self.document.path or 'photo').stem}_mask.png"))
        path, _ = QFileDialog.getSaveFileName(self, "Export mask", default, "PNG (*.png)")
        if not path:
            return False
        path = path if path.lower().endswith(".png") else path + ".png"
        try:
            with busy_cursor():
                file_ops.save_mask_file(self.document.mask, path)
        except Exception as exc:  # noqa: BLE001
            self._error("Cannot export the mask", f"Cannot export the mask to {Path(path).name}: {exc}")
            return False
        self._mark_mask_kept()
        self.log_panel.add("info", f"Exported the mask to {path}")
        return True

    def _update_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = self.settings.recent_files()
        for path in files:
            self.recent_menu.addAction(Path(path).name, lambda p=path: self.open_path(p)).setToolTip(path)
        if files:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", lambda: (self.settings.clear_recent_files(),
                                                              self._update_recent_menu()))
        self.recent_menu.setEnabled(bool(files))

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        mime = event.mimeData()
        for url in mime.urls():
            if url.isLocalFile():
                self.open_path(url.toLocalFile())
                event.acceptProposedAction()
                return
        if mime.hasImage() and self.replace_photo(file_ops.qimage_to_rgb(mime.imageData()),
                                                  "opening another photo"):
            event.acceptProposedAction()

