"""What the main window shows of its document (a mixin): the title, the sizes and the pixel under
the cursor in the status bar, what the task panel knows of the photo, the mask overlay (stepping
aside over a finished result and in the compare view) and the compare split."""

from __future__ import annotations

from pathlib import Path

from gui.run import plan as run_plan


class DocumentView:
    """Needs ``document``, ``canvas``, ``panel``, ``status_size``, ``status_cursor``, the actions
    ``act_show_mask`` and ``act_compare``, ``_run_state``, ``_photo_has_colours``, ``_mask_marked``,
    ``_mask_shown_before`` and ``has_unsaved_work`` from the window it is mixed into."""

    def _on_image_changed(self) -> None:
        self._photo_has_colours = self.document.has_image and run_plan.has_colours(self.document.image)
        self._show_sizes()
        if self.document.image is not None and self.document.image is self.document.original:  # a photo just opened
            self.canvas.compare.split = 0.5
        self.status_cursor.setText("")  # the pixel under the cursor is another one now
        self._update_panel_context()
        self._update_title()

    def _show_sizes(self, *_why) -> None:
        """The photo's size, and the result's while a preview of another size (an upscale) is shown."""
        h, w = self.document.size
        preview = self.document.preview
        text = f"{w} × {h} px" if w else ""
        if preview is not None and preview.shape[:2] != (h, w):
            text += f" → result {preview.shape[1]} × {preview.shape[0]} px"
        self.status_size.setText(text)

    def _update_panel_context(self) -> None:
        doc = self.document
        self.panel.set_context(doc.size if doc.has_image else None, doc.has_image and doc.has_mask(),
                               self._photo_has_colours)

    def _update_title(self, *_why) -> None:
        name = Path(self.document.path).name if self.document.path else ("Pasted image" if self.document.has_image else "")
        star = "*" if self.has_unsaved_work() else ""  # what closing would ask about
        self.setWindowTitle(f"{name}{star} — Restorer" if name else "Restorer")

    def _show_cursor(self, x: int, y: int) -> None:
        if x < 0:
            self.status_cursor.setText("")
            return
        r, g, b = (round(255 * float(v)) for v in self.document.image[y, x])
        self.status_cursor.setText(f"x {x}, y {y}   RGB {r} {g} {b}")

    def _set_mask_visible(self, on: bool) -> None:
        self.canvas.mask_visible = on
        self.canvas.update()

    def _set_compare(self, on: bool) -> None:
        self.canvas.compare.enabled = on
        self._hide_mask_where_it_hides_the_result()
        self.canvas.update()

    def _hide_mask_where_it_hides_the_result(self) -> None:
        """The mask overlay is hidden over a finished result and in the compare view (M still shows
        it there), and is as it was before once they are gone."""
        hide = self.act_compare.isChecked() or (self._run_state == "preview" and self.document.preview_finished)
        if hide and self._mask_shown_before is None:
            self._mask_shown_before = self.act_show_mask.isChecked()
            self.act_show_mask.setChecked(False)
        elif not hide and self._mask_shown_before is not None:
            self.act_show_mask.setChecked(self._mask_shown_before)
            self._mask_shown_before = None

    def _on_mask_changed(self, _region) -> None:
        """Marking something to fill (painting, importing a mask) ticks Fill masked areas; it can be unticked."""
        marked = self.document.has_image and self.document.has_mask()
        if marked and not self._mask_marked:
            self.panel.inpaint.setChecked(True)
        self._mask_marked = marked
        self._update_panel_context()
