"""File commands of the main window (a mixin): open, paste, drag and drop, save, masks, recent
files. Files are read and written in the background (:mod:`gui.files.jobs`), from a snapshot taken
when the command is given; the questions that keep unsaved work from being lost are in
:mod:`gui.files.unsaved`."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QInputDialog

from gui.files import ops as file_ops
from gui.dialogs import busy_cursor
from gui.files.jobs import MASK, PHOTO, SAVE
from gui.files.unsaved import UnsavedWork, painted_digest

#: Settings key: the folder the last result was saved to (Save as starts there).
SAVE_DIR = "last_save_dir"


class FileCommands(UnsavedWork):
    """Needs ``document``, ``settings``, ``runs``, ``files`` (a gui.files.jobs.FileJobs), ``log_panel``,
    ``recent_menu``, ``save_target``, ``mask_op`` and ``_error`` from the window it is mixed into."""

    def _may_start(self, kind: str) -> bool:
        """Whether a file job of ``kind`` may start now. A photo replaces a photo or a mask still
        being read (the latest wins); anything else waits for the file work going on, and says so."""
        running = self.files.kind
        if not running or (kind == PHOTO and running != SAVE):
            return True
        self.statusBar().showMessage(f"{self.files.message} Wait for it to finish.")  # cleared when it ends
        return False

    # ---- photos in ----------------------------------------------------------------------
    def open_dialog(self) -> None:
        start = self.settings.get("last_dir", str(Path.home()), str)
        path, _ = QFileDialog.getOpenFileName(self, "Open photo", start, file_ops.OPEN_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str) -> bool:
        """Read the photo in the background, then bring it in (:meth:`replace_photo`); True if reading started."""
        path = os.path.abspath(path)  # the document path, last folder, recent list and save suggestion
        if not self._may_start(PHOTO):
            return False
        self.files.start(PHOTO, f"Opening {Path(path).name}…", lambda: file_ops.load_photo(path),
                         lambda read: self.replace_photo(read[0], "opening another photo", path, read[1],
                                                         f"Opened {path}"),
                         functools.partial(self._open_failed, path))
        return True

    def _open_failed(self, path: str, message: str) -> None:
        if not Path(path).exists():  # e.g. a recent file moved or deleted since
            self.settings.remove_recent_file(path)
            self._update_recent_menu()
        self._error("Cannot open the photo", f"Cannot open {Path(path).name}: {message}")

    def replace_photo(self, pixels: np.ndarray, action: str, path: str = "", loaded: Any = None,
                      note: str = "") -> bool:
        """The one way a new photo comes in (open, paste, drop): ask about unsaved work (going on
        stops a running restoration, so its result never lands on the new photo), then start
        afresh with the new photo, remember its file and log ``note``. A photo still being read is
        dropped: this one is newer. If the user saves first, the photo comes in once that is written."""
        if not self._may_start(PHOTO):
            return False
        self.files.drop()
        if not self.confirm_discard(action, functools.partial(self.replace_photo, pixels, action, path, loaded, note)):
            return False
        with busy_cursor():
            self.document.set_photo(pixels, path=path, loaded=loaded)
        self._mark_saved()
        self.statusBar().clearMessage()  # e.g. "Cancelled": about the photo before
        self.save_target = None
        if path:
            self.settings.set("last_dir", str(Path(path).parent))
            self.settings.add_recent_file(path)
            self._update_recent_menu()
        if note:
            self.log_panel.add("info", note)
        if getattr(loaded, "frames", 1) > 1:  # an animated GIF, a multi-page TIFF
            from engine.image_io import frames_note

            self.log_panel.add("warning", frames_note(loaded.frames))
        return True

    def paste(self) -> None:
        mime = QGuiApplication.clipboard().mimeData()
        if mime is not None and mime.hasImage():
            image = QGuiApplication.clipboard().image()
            if not image.isNull():
                self.replace_photo(file_ops.qimage_to_rgb(image), "pasting another photo",
                                   note=f"Pasted a {image.width()}×{image.height()} image")
                return
        if mime is not None and mime.hasUrls():
            for url in mime.urls():
                if url.isLocalFile():
                    self.open_path(url.toLocalFile())
                    return
        self.statusBar().showMessage("The clipboard holds no image", 4000)

    # ---- saving -------------------------------------------------------------------------
    def _can_save(self) -> bool:
        if self.runs.running:
            self.statusBar().showMessage("Wait for the restoration to finish, or cancel it, before saving", 5000)
            return False
        return self.document.has_image and self._may_start(SAVE)

    def save(self) -> bool:
        """Save to the last path (Save as the first time); True if saving started."""
        if not self._can_save():
            return False
        if self.save_target is None:
            return self.save_as()
        return self.save_to(*self.save_target)

    def save_as(self) -> bool:
        if not self._can_save():
            return False
        filters = ";;".join(file_ops.SAVE_FILTERS)
        start = file_ops.suggested_save_path(self.document, folder=self.settings.get(SAVE_DIR, "", str))
        path, chosen = QFileDialog.getSaveFileName(self, "Save result", start, filters)
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
        """Write what the canvas shows now to ``path`` in the background; True if saving started.
        The document counts as saved once the file is written, never before: a failed save leaves it unsaved."""
        if not self._can_save():
            return False
        doc = self.document
        # The photo and the result are replaced, never changed in place (gui.document.document); the mask is
        # painted in place, so the digest of the mask saved with the result is taken from a copy.
        pixels, like, mask, clean = file_ops.result_pixels(doc), doc.loaded, doc.mask.copy(), doc.undo_stack.changes
        name = Path(path).name

        def written(result: tuple[list[str], Optional[bytes]]) -> None:
            notes, mask_digest = result
            for note in notes:
                self.log_panel.add("warning", note)
            self.save_target = file_ops.SaveTarget(path, quality, bit_depth)
            self.settings.set(SAVE_DIR, str(Path(path).parent))  # where Save as starts next time
            if doc.undo_stack.changes == clean:  # an edit or undo made while saving is not in the file
                doc.undo_stack.setClean()
            self._mark_saved(pixels, mask_digest)
            self.log_panel.add("info", f"Saved {path}")
            self.statusBar().showMessage(f"Saved {path}", 5000)

        self.files.start(SAVE, f"Saving {name}…",
                         lambda: (file_ops.save_photo(path, pixels, like, quality, bit_depth), painted_digest(mask)),
                         written, lambda message: self._error("Cannot save", f"Cannot save {name}: {message}"))
        return True

    # ---- masks --------------------------------------------------------------------------
    def import_mask(self) -> None:
        if not self.document.has_image or not self._may_start(MASK):
            return
        path, _ = QFileDialog.getOpenFileName(self, "Import mask", self.settings.get("last_dir", "", str),
                                              file_ops.OPEN_FILTER)
        if not path:
            return
        shape = self.document.size

        def read() -> tuple[file_ops.ImportedMask, Optional[bytes]]:
            imported = file_ops.load_mask_file(path, shape)
            return imported, painted_digest(imported.mask)

        self.files.start(MASK, f"Reading the mask {Path(path).name}…", read, lambda result: self._mask_read(*result),
                         lambda message: self._error("Cannot import the mask", f"Cannot import the mask: {message}"))

    def _mask_read(self, imported: file_ops.ImportedMask, digest: Optional[bytes]) -> None:
        if imported.mask.shape != self.document.size:  # a result applied (or undone) meanwhile
            self._error("Cannot import the mask", "Cannot import the mask: the photo changed size while the mask "
                                                  "was read. Import it again.")
            return
        self.mask_op(lambda _m: imported.mask, "Import mask")
        self._mark_mask_kept(digest)
        (h, w), (ph, pw) = imported.file_size, self.document.size
        if (h, w) != (ph, pw):
            self.statusBar().showMessage(f"The mask was scaled from {w}×{h} to the photo's {pw}×{ph}", 8000)

    def export_mask(self) -> bool:
        """Write the mask, as it is now, to a PNG the user picks in the background; True if writing started."""
        if not self.document.has_image or not self._may_start(SAVE):
            return False
        default = str(Path(file_ops.suggested_save_path(self.document)).with_name(
            f"{Path(self.document.path or 'photo').stem}_mask.png"))
        path, _ = QFileDialog.getSaveFileName(self, "Export mask", default, "PNG (*.png)")
        if not path:
            return False
        path = path if path.lower().endswith(".png") else path + ".png"
        mask, name = self.document.mask.copy(), Path(path).name  # strokes go on painting into the document's

        def write() -> Optional[bytes]:
            file_ops.save_mask_file(mask, path)
            return painted_digest(mask)

        def written(digest: Optional[bytes]) -> None:
            self._mark_mask_kept(digest)
            self.log_panel.add("info", f"Exported the mask to {path}")

        self.files.start(SAVE, f"Exporting the mask to {name}…", write, written, lambda message: self._error(
            "Cannot export the mask", f"Cannot export the mask to {name}: {message}"))
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
                if self.open_path(url.toLocalFile()):
                    event.acceptProposedAction()
                return
        if mime.hasImage() and self.replace_photo(file_ops.qimage_to_rgb(mime.imageData()),
                                                  "opening another photo"):
            event.acceptProposedAction()

