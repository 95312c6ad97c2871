"""The task panel's "Clean up unknown damage" task: two stages (engine/cleanup). A restoration
network chosen from the installed clean-up models removes grain, softness and JPEG blocks, then the
diffusion model restores the result; one slider sets fidelity (the cleaned photo) against realness
(detail from the diffusion model). It holds the widgets only; the panel reads and writes them."""

from __future__ import annotations

from typing import Any, NamedTuple

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QGridLayout, QLabel, QSlider, QWidget

GET_MORE = "__get_more__"


class CleanupChoice(NamedTuple):
    id: str  # catalog or imported id
    label: str
    purpose: str  # tooltip: what it is for, its network and licence
    scale: int = 1  # output pixels per input pixel (for the time estimate)


class CleanupBox(QWidget):
    edited = Signal()  # a value changed by the user
    get_more = Signal()  # "Get more…": open the Models dialog

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._choices: list[CleanupChoice] = []
        self._wanted = ""  # the model the settings name, selected once it is installed
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.enabled = QCheckBox("Clean up unknown damage")
        self.enabled.setToolTip("Two stages for real scans: a restoration network removes grain, softness and JPEG "
                                "blocks, then the diffusion model adds real detail. Combines with fill, colorize and "
                                "upscale; it takes the place of Remove noise and Deblur.")
        self.model = QComboBox()
        self.model.setToolTip("The clean-up network (stage 1); Get more… opens Models")
        self.fidelity = QSlider(Qt.Horizontal)
        self.fidelity.setRange(0, 100)
        self.fidelity.setToolTip("Right: keep the cleaned photo (100 = exactly it). Left: more detail and texture "
                                 "from the diffusion model, less of the cleaned photo.")
        self.fidelity_value = QLabel()
        self.fast = QCheckBox("Fast: start from the cleaned photo")
        self.fast.setToolTip("Stage 2 starts from the cleaned photo with noise added, and takes fewer steps")
        grid.addWidget(self.enabled, 0, 0, 1, 3)
        grid.addWidget(QLabel("Network"), 1, 0)
        grid.addWidget(self.model, 1, 1, 1, 2)
        grid.addWidget(QLabel("Realness"), 2, 0)
        grid.addWidget(self.fidelity, 2, 1)
        grid.addWidget(self.fidelity_value, 2, 2)
        grid.addWidget(self.fast, 3, 0, 1, 3)
        self.enabled.toggled.connect(self._changed)
        self.fast.toggled.connect(self._changed)
        self.fidelity.valueChanged.connect(self._changed)
        self.model.activated.connect(self._on_model_activated)
        self.set_models([])
        self._show_state()

    # ---- values ------------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        """The TaskSettings fields this box holds."""
        model = self.model.currentData()
        chosen = model if model not in (None, GET_MORE) else ""  # only an installed network (else: Get more…)
        scale = next((c.scale for c in self._choices if c.id == chosen), 1)
        return {"cleanup": self.enabled.isChecked(), "cleanup_model": chosen, "cleanup_scale": scale,
                "fidelity": self.fidelity.value() / 100.0, "warm_start": self.fast.isChecked()}

    def set_values(self, settings: Any) -> None:
        for w in (self.enabled, self.fast, self.fidelity):
            w.blockSignals(True)
        self.enabled.setChecked(bool(settings.cleanup))
        self.fast.setChecked(bool(settings.warm_start))
        self.fidelity.setValue(int(round(float(settings.fidelity) * 100)))
        for w in (self.enabled, self.fast, self.fidelity):
            w.blockSignals(False)
        self._wanted = settings.cleanup_model
        self._select(settings.cleanup_model)
        self._show_state()

    def set_models(self, choices: list[CleanupChoice]) -> None:
        """The installed clean-up models, then "Get more…"."""
        self._choices = list(choices)
        self.model.blockSignals(True)
        self.model.clear()
        for c in choices:
            self.model.addItem(c.label, c.id)
            self.model.setItemData(self.model.count() - 1, c.purpose, Qt.ToolTipRole)
        self.model.addItem("Get more…" if choices else "None installed: get one…", GET_MORE)
        self.model.blockSignals(False)
        self._select(self._wanted)

    def _select(self, model_id: str) -> None:
        index = self.model.findData(model_id) if model_id else -1
        self.model.blockSignals(True)
        self.model.setCurrentIndex(index if index >= 0 else 0)
        self.model.blockSignals(False)

    # ---- reactions ---------------------------------------------------------------------------
    def _on_model_activated(self, index: int) -> None:
        if self.model.itemData(index) == GET_MORE:
            self._select(self._wanted)
            self.get_more.emit()
            return
        self._wanted = self.model.itemData(index)
        self._changed()

    def _changed(self, *_args) -> None:
        self._show_state()
        self.edited.emit()

    def _show_state(self) -> None:
        on = self.enabled.isChecked()
        for w in (self.model, self.fidelity, self.fidelity_value, self.fast):
            w.setEnabled(on)
        value = self.fidelity.value()
        self.fidelity_value.setText(f"Fidelity {value / 100:.2f}")
        self.fidelity_value.setToolTip("1.00 = the cleaned photo exactly")
