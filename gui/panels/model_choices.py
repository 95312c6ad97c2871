"""The task panel's model list (a mixin): the installed models, the checkpoint files chosen with
Choose file…, test-tiny, the classifiers for guidance, and the model and quality boxes."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel

from gui.run.plan import CUSTOM, QUALITY_PRESETS, TEST_TINY, TEST_TINY_LABEL, TaskSettings

CHOOSE_FILE = "__choose_file__"


class ModelChoice(NamedTuple):
    id: str  # catalog id, "test-tiny" or a checkpoint path
    label: str
    purpose: str
    window: int = 256
    class_cond: bool = False  # needs an ImageNet class (and may use classifier guidance)


TEST_TINY_CHOICE = ModelChoice(TEST_TINY, TEST_TINY_LABEL, "Checks that everything runs. Not a restorer.", 256)


class ModelChoices:
    """Needs ``_models``, ``_model_files``, ``_last_model``, ``_classifier``, ``_loading``, the
    ``window_size``, ``class_label``, ``guidance`` and ``classifier`` widgets, the signal
    ``choose_model_file`` and ``_on_edited`` / ``_on_quality_changed`` from the panel it is mixed into."""

    def _build_model(self) -> QGroupBox:
        box = QGroupBox("Model and quality")
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.WrapAllRows)  # labels above: a long model name gets the full width
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.model = QComboBox()
        self.model.setMinimumContentsLength(18)
        self.model.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.model_purpose = QLabel()
        self.model_purpose.setWordWrap(True)
        self.model_purpose.setObjectName("hint")
        self.quality = QComboBox()
        for name, preset in QUALITY_PRESETS.items():
            travel = (f", time travel: {preset.travel_length} steps back, {preset.travel_repeat} repeats"
                      if preset.travel_repeat > 1 else "")
            self.quality.addItem(name, name)
            self.quality.setItemData(self.quality.count() - 1, f"{preset.steps} steps{travel}", Qt.ToolTipRole)
        self.quality.addItem(CUSTOM, CUSTOM)
        form.addRow("Model", self.model)
        form.addRow("", self.model_purpose)
        form.addRow("Quality", self.quality)
        self.model.activated.connect(self._on_model_activated)
        self.model.currentIndexChanged.connect(self._on_model_changed)
        self.quality.currentIndexChanged.connect(self._on_quality_changed)
        return box

    def set_models(self, models: list[ModelChoice]) -> None:
        """Installed models, then the checkpoint files chosen with Choose file… (they stay listed),
        then test-tiny (always, last, clearly labelled)."""
        installed = [m for m in models if m.id != TEST_TINY]
        files = [f for f in self._model_files if f.id not in {m.id for m in installed}]
        self._models = installed + files + [TEST_TINY_CHOICE]
        self._list_models(select=self.model.currentData())

    def add_model_file(self, choice: ModelChoice, select: bool = True) -> None:
        """A checkpoint file (the caller has checked it): listed before test-tiny from now on."""
        self._model_files = [f for f in self._model_files if f.id != choice.id] + [choice]
        self._models = [m for m in self._models if m.id != choice.id]
        self._models.insert(len(self._models) - 1, choice)
        self._list_models(select=choice.id if select else self.model.currentData())

    def set_classifiers(self, classifiers: list[ModelChoice]) -> None:
        """The installed ADM classifiers that guidance can use (Advanced ▸ Classifier)."""
        was_loading, self._loading = self._loading, True
        self.classifier.clear()
        for c in classifiers:
            self.classifier.addItem(c.label, c.id)
            self.classifier.setItemData(self.classifier.count() - 1, c.purpose, Qt.ToolTipRole)
        if not classifiers:
            self.classifier.addItem("None installed (see Models…)", "")
        self.classifier.setCurrentIndex(max(0, self.classifier.findData(self._classifier)))
        self._loading = was_loading
        self._on_model_changed()

    def select_model(self, model_id: str) -> None:
        index = self.model.findData(model_id)
        if index >= 0:
            self.model.setCurrentIndex(index)

    def _list_saved_model(self, s: TaskSettings) -> None:
        """Make the saved model selectable. A checkpoint file that still exists is listed for
        good; an installed model's id is listed until the installed models arrive (set_models
        drops it if it is not installed any more); a file that is gone is not listed."""
        if self.model.findData(s.model) >= 0 or s.model in (TEST_TINY, CHOOSE_FILE):
            return
        path = Path(s.model)
        if path.is_file():
            self.add_model_file(ModelChoice(s.model, path.name, f"Checkpoint file {s.model}", s.window,
                                            class_cond=s.class_label >= 0), select=False)
        elif not path.is_absolute():
            self._models.insert(0, ModelChoice(s.model, s.model, ""))
            self._list_models(select=self.model.currentData())

    def _list_models(self, select: Optional[str]) -> None:
        """Fill the model box from ``_models`` and select ``select`` (else the first model)."""
        was_loading, self._loading = self._loading, True
        self.model.clear()
        for m in self._models:
            self.model.addItem(m.label, m.id)
            self.model.setItemData(self.model.count() - 1, m.purpose, Qt.ToolTipRole)
        self.model.addItem("Choose file…", CHOOSE_FILE)
        self.model.setCurrentIndex(max(0, self.model.findData(select)))
        self._loading = was_loading
        if not was_loading:
            self._on_model_changed()

    def _on_model_activated(self, index: int) -> None:
        if self.model.itemData(index) == CHOOSE_FILE:
            self.select_model(self._last_model)  # until a file is chosen (and checked)
            self.choose_model_file.emit()

    def _on_model_changed(self, *_args) -> None:
        if self.model.currentData() not in (None, CHOOSE_FILE):
            self._last_model = self.model.currentData()
        choice = next((m for m in self._models if m.id == self.model.currentData()), None)
        self.model_purpose.setText(choice.purpose if choice else "")
        if choice is not None and not self._loading:
            self.window_size.setValue(choice.window)
        for w in (self.class_label, self.guidance, self.classifier):
            w.setEnabled(self._class_cond())
        self._on_edited()

    def _class_cond(self) -> bool:
        return any(m.class_cond for m in self._models if m.id == self.model.currentData())
