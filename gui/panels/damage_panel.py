"""The Detect damage panel: which detector, Detect / Cancel with a progress bar, the sensitivity
slider (it moves the proposal live) and what the proposal is now. The window
(:mod:`gui.document.damage`) does the work; this is only the widgets."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSlider, QVBoxLayout,
                               QWidget)

BUILTIN_LABEL = "Built-in (no model file)"


class DamagePanel(QWidget):
    detect_requested = Signal()
    cancel_requested = Signal()
    sensitivity_changed = Signal(float)

    def __init__(self, sensitivity: float, parent: Optional[QWidget] = None):
        super().__init__(parent)
        v = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Detector"))
        self.detector_combo = QComboBox()
        self.detector_combo.setToolTip("Built-in: image processing, no model file. The scratch detector of Bringing "
                                       "Old Photos Back to Life appears here once installed (Models…).")
        row.addWidget(self.detector_combo, 1)
        v.addLayout(row)
        row = QHBoxLayout()
        self.detect_button = QPushButton("Detect damage")
        self.detect_button.setToolTip("Propose a mask of scratches, cracks, dust, tears and missing corners")
        self.cancel_button = QPushButton("Cancel")
        row.addWidget(self.detect_button, 2)
        row.addWidget(self.cancel_button, 1)
        v.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        v.addWidget(self.progress)
        row = QHBoxLayout()
        row.addWidget(QLabel("Sensitivity"))
        self.sensitivity_slider = QSlider(Qt.Horizontal)
        self.sensitivity_slider.setRange(0, 100)
        self.sensitivity_slider.setToolTip("Higher marks more: weaker and less certain damage too")
        self.sensitivity_value = QLabel()
        self.sensitivity_value.setMinimumWidth(30)
        row.addWidget(self.sensitivity_slider, 1)
        row.addWidget(self.sensitivity_value)
        v.addLayout(row)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        v.addWidget(self.status_label)
        v.addStretch(1)
        self.set_detectors([])
        self.set_busy(False)
        self.sensitivity_slider.valueChanged.connect(self._on_slider)
        self.set_sensitivity(sensitivity)
        self.detect_button.clicked.connect(self.detect_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)

    def set_detectors(self, models: list[tuple[str, str]]) -> None:
        """``models``: (model id, display name) of the installed detector networks."""
        current = self.detector()
        self.detector_combo.clear()
        self.detector_combo.addItem(BUILTIN_LABEL, "builtin")
        for model_id, name in models:
            self.detector_combo.addItem(name, model_id)
        index = self.detector_combo.findData(current)
        self.detector_combo.setCurrentIndex(max(index, 0))

    def detector(self) -> str:
        return self.detector_combo.currentData() or "builtin"

    def sensitivity(self) -> float:
        return self.sensitivity_slider.value() / 100

    def set_sensitivity(self, value: float) -> None:
        self.sensitivity_slider.setValue(round(100 * value))
        self.sensitivity_value.setText(f"{self.sensitivity_slider.value()}")

    def set_busy(self, busy: bool) -> None:
        self.detect_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.detector_combo.setEnabled(not busy)
        self.progress.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)  # until the first tile reports

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def _on_slider(self, value: int) -> None:
        self.sensitivity_value.setText(f"{value}")
        self.sensitivity_changed.emit(value / 100)
