"""Detect damage, in the window: the detection runs in the background (progress, Cancel), and its
proposal becomes the normal mask in one undo step, which the sensitivity slider moves live.

The expensive part (``engine.detection.detect``: one byte of score per pixel) runs once; the
proposal at a sensitivity is a threshold of those scores (``mask_from_scores``), added to the
marks the user had painted, or replacing them when the user says so (they are never replaced
without asking). The step is one :class:`~gui.document.undo.MaskEditCommand` over the whole mask:
it keeps the mask as it was before, so while it is the last step, the slider rewrites the mask
in place and one Undo still gives the old marks back. Once another edit follows (a brush stroke,
an eraser stroke, Undo), the proposal is the user's mask like any other: the slider no longer
changes it, and Detect starts over.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QMessageBox

from gui.background import BackgroundTask
from gui.document.mask_tools import changed_region
from gui.document.undo import MaskEditCommand
from gui.panels.damage_panel import DamagePanel

ADD, REPLACE = "add", "replace"


class Proposal:
    """The scores of one detection and the marks they are added to."""

    def __init__(self, scores: Any, base: np.ndarray, token: object):
        self.scores = scores  # engine.detection.DamageScores
        self.base = base  # (H, W) uint8: the marks kept (the user's, or none when replaced)
        self.token = token  # carried by the undo step, also into a rebuilt history

    def mask(self, sensitivity: float) -> np.ndarray:
        from engine.detection import mask_from_scores

        found = mask_from_scores(self.scores.scores, sensitivity)
        return np.maximum(self.base, np.where(found, np.uint8(255), np.uint8(0)))


class DamageCommands:
    """The main window's Detect damage (a mixin of :class:`gui.main_window.MainWindow`)."""

    #: The answer to "add to or replace your marks?" where no dialog may open (tests).
    marks_answer: Optional[str] = ADD

    def build_damage_dock(self) -> None:
        from engine.detection import DEFAULT_SENSITIVITY

        self.damage_panel = DamagePanel(DEFAULT_SENSITIVITY)
        self.damage_dock = QDockWidget("Detect damage", self)
        self.damage_dock.setObjectName("damage_dock")
        self.damage_dock.setWidget(self.damage_panel)
        self.addDockWidget(Qt.RightDockWidgetArea, self.damage_dock)
        self.tabifyDockWidget(self.panel_dock, self.damage_dock)
        self.panel_dock.raise_()
        self._damage_task: Optional[BackgroundTask] = None
        self._damage_photo: Optional[np.ndarray] = None
        self.proposal: Optional[Proposal] = None
        self.damage_panel.detect_requested.connect(self.detect_damage)
        self.damage_panel.cancel_requested.connect(self.cancel_detection)
        self.damage_panel.sensitivity_changed.connect(self.set_damage_sensitivity)
        self.damage_dock.visibilityChanged.connect(self._list_detectors)  # models installed since are offered
        self.document.image_changed.connect(self._forget_proposal)
        self.document.undo_stack.indexChanged.connect(self._show_proposal_state)  # a method: not after deletion

    # ---- detection ----------------------------------------------------------------------
    def detect_damage(self) -> None:
        """Find the damage in the photo with the panel's detector (in the background)."""
        if not self.document.has_image or (self._damage_task is not None and self._damage_task.active):
            return
        self.damage_dock.show()
        self.damage_dock.raise_()
        self._list_detectors()
        from engine.detection import detect
        from engine.events import ProgressEvent

        photo, detector = self.document.image, self.damage_panel.detector()

        def work(progress, cancel):
            events = detect(photo, detector, cancel=cancel)
            while True:
                try:
                    event = next(events)
                except StopIteration as stop:
                    return stop.value
                if isinstance(event, ProgressEvent):
                    progress((event.done, event.total))

        self._damage_photo = photo
        task = BackgroundTask(work, self)
        task.progress.connect(lambda value: self.damage_panel.set_progress(*value))
        task.succeeded.connect(self._on_detected)
        task.failed.connect(self._on_detection_failed)
        task.cancelled.connect(lambda: self._detection_ended("Detection cancelled; the mask is unchanged."))
        self._damage_task = task.start()
        self.damage_panel.set_busy(True)
        self.damage_panel.set_status("Looking for scratches, dust, tears and missing corners…")

    def cancel_detection(self) -> None:
        if self._damage_task is not None and self._damage_task.active:
            self._damage_task.cancel()

    def _list_detectors(self, visible: bool = True) -> None:
        if not visible:
            return
        from engine.models import catalog
        from engine.models.kinds import DETECTOR

        try:
            models = [(s.entry.id, s.entry.display_name) for s in catalog.installed_models() if s.entry.role == DETECTOR]
        except Exception:  # noqa: BLE001 - a damaged registry must not stop the built-in detector
            models = []
        self.damage_panel.set_detectors(models)

    def _detection_ended(self, status: str) -> None:
        self.damage_panel.set_busy(False)
        self.damage_panel.set_status(status)
        self._damage_task = None

    def _on_detection_failed(self, message: str) -> None:
        self._detection_ended(f"Detection failed: {message}")
        self._error("Cannot detect damage", message)

    def _on_detected(self, scores: Any) -> None:
        self._detection_ended("")
        if self.document.image is not self._damage_photo:
            return  # another photo since: these scores are not its
        keep = self._ask_marks() if self.document.has_mask() else ADD
        if keep is None:
            self.damage_panel.set_status("Nothing changed: your marks are as they were.")
            return
        base = self.document.mask.copy() if keep == ADD else np.zeros_like(self.document.mask)
        proposal = Proposal(scores, base, object())
        h, w = self.document.size
        command = MaskEditCommand(self.document, [((0, 0, h, w), proposal.mask(self.damage_panel.sensitivity()))],
                                  "Detect damage", done=False)
        command.proposal_token = proposal.token
        self.proposal = proposal
        self.document.undo_stack.push(command)
        self._show_proposal_state()
        self.log_panel.add("info", f"Detect damage ({scores.summary}): {self._marked_share():.1%} of the photo marked "
                           f"at sensitivity {self.damage_panel.sensitivity():g}")

    def _ask_marks(self) -> Optional[str]:
        """Add the proposal to the marks the user painted, or replace them (None: neither)."""
        if not self.interactive:
            return self.marks_answer
        box = QMessageBox(QMessageBox.Question, "Detect damage",
                          "The mask already has marks you made. Add the damage found to them, or replace them?",
                          QMessageBox.Cancel, self)
        add = box.addButton("Add to my marks", QMessageBox.AcceptRole)
        replace = box.addButton("Replace my marks", QMessageBox.DestructiveRole)
        box.setDefaultButton(add)
        box.exec()
        return {add: ADD, replace: REPLACE}.get(box.clickedButton())

    # ---- the live proposal --------------------------------------------------------------
    def proposal_is_live(self) -> bool:
        """Whether the last step is the shown proposal (so the slider may rewrite it)."""
        stack = self.document.undo_stack
        top = stack.command(stack.index() - 1) if stack.index() > 0 else None
        return self.proposal is not None and getattr(top, "proposal_token", None) is self.proposal.token

    def set_damage_sensitivity(self, sensitivity: float) -> None:
        """Move the proposal to ``sensitivity`` (a threshold of the kept scores: no new detection)."""
        if self.damage_panel.sensitivity() != sensitivity:
            self.damage_panel.set_sensitivity(sensitivity)  # emits again, with the slider's value
            return
        if not self.proposal_is_live():
            return
        new = self.proposal.mask(sensitivity)
        region = changed_region(self.document.mask, new)
        if region is not None:
            top, left, h, w = region
            self.document.set_mask_region(top, left, new[top : top + h, left : left + w])
        self._show_proposal_state()

    def _show_proposal_state(self, *_why) -> None:
        if self.proposal is None or (self._damage_task is not None and self._damage_task.active):
            return
        if self.proposal_is_live():
            self.damage_panel.set_status(
                f"Marked {self._marked_share():.1%} of the photo ({self.proposal.scores.summary}). Move "
                "Sensitivity to mark more or less; correct it with the brush and eraser; Undo takes it back.")
        else:
            self.damage_panel.set_status("The proposal is part of your mask now: Sensitivity no longer changes "
                                         "it. Detect again to start over.")

    def _marked_share(self) -> float:
        return float(np.count_nonzero(self.document.mask > 127)) / max(self.document.mask.size, 1)

    def _forget_proposal(self) -> None:
        """A new photo: the scores and a detection still running are not its."""
        if self._damage_task is not None:
            self._damage_task.discard()
            self._damage_task = None
        self.proposal = None
        self._damage_photo = None
        self.damage_panel.set_busy(False)
        self.damage_panel.set_status("")
