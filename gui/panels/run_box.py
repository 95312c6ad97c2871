"""The part of the task panel that stays in view below the settings: what stops a run, notes, the
time estimate, the stage and progress of a run, and the Restore / Cancel / Apply / Discard buttons."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from gui.run.plan import STAGES_EXPLAINED


class RunBox(QWidget):
    WIDGETS = ("problem_label", "note_label", "estimate_label", "stage_label", "progress",
               "restore_button", "cancel_button", "apply_button", "discard_button")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        v = QVBoxLayout(self)
        self.problem_label = self._label("color: #ff8a65;")
        self.problem_label.setObjectName("problem")
        self.note_label = self._label("color: #c0a060;")
        self.estimate_label = self._label()
        self.stage_label = self._label()
        self.stage_label.setToolTip(STAGES_EXPLAINED)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self.restore_button = QPushButton("Restore")
        self.restore_button.setDefault(True)
        self.restore_button.setMinimumHeight(32)
        self.cancel_button = QPushButton("Cancel")
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("Make the result the current photo (undoable)")
        self.discard_button = QPushButton("Discard")
        for w in (self.problem_label, self.note_label, self.estimate_label, self.stage_label, self.progress):
            v.addWidget(w)
        row = QHBoxLayout()
        row.addWidget(self.restore_button, 2)
        row.addWidget(self.cancel_button, 1)
        v.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.apply_button)
        row.addWidget(self.discard_button)
        v.addLayout(row)

    @staticmethod
    def _label(style: str = "") -> QLabel:
        label = QLabel()
        label.setWordWrap(True)
        if style:
            label.setStyleSheet(style)
        return label
