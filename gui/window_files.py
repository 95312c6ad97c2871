"""File commands of the main window (a mixin): open, paste, drag and drop, save, masks, recent
files. The questions that keep unsaved work from being lost are in :mod:`gui.window_unsaved`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QInputDialog

from gui import file_ops
from gui.dialogs import busy_cursor
from gui.window_unsaved import UnsavedWork


class FileCommands(UnsavedWork):
    """Needs ``document``, ``settings``, ``runs``, ``log_panel``, ``recent_menu``, ``save_target`` and
    ``_error`` from the window it is mixed into."""

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

