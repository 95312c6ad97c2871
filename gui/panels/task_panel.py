"""The task panel: what to do, with which model and quality, and the Restore / Cancel / Apply controls.

The panel only edits a :class:`~gui.run.plan.TaskSettings`; whether the combination can run,
how long it should take and the engine request come from :mod:`gui.run.plan`.
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QGroupBox, QScrollArea, QVBoxLayout, QWidget

from engine.request import DEFAULT_CLASSIFIER, NATIVE_BF16_LABEL
from gui.run import plan as run_plan
from gui.panels.advanced_box import AdvancedBox
from gui.panels.cleanup_box import CleanupBox, CleanupChoice
from gui.panels.fast_upscale_row import FastUpscaleRow
from gui.panels.model_choices import CHOOSE_FILE, ModelChoice, ModelChoices  # noqa: F401 - ModelChoice: imported from here
from gui.panels.tasks_box import TasksBox
from gui.panels.run_box import RunBox
from gui.run.plan import CUSTOM, QUALITY_PRESETS, TEST_TINY, TaskSettings
from gui.run.speed import SpeedKey


class TaskPanel(ModelChoices, QWidget):
    changed = Signal()
    restore_requested = Signal()
    cancel_requested = Signal()
    apply_requested = Signal()
    discard_requested = Signal()
    choose_model_file = Signal()
    open_models = Signal()  # "Get more…" of the clean-up networks
    get_fast_upscaler = Signal()  # "Get it in Models…" beside the fast upscale

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._loading = False
        self._image_size: Optional[tuple[int, int]] = None
        self._has_mask = False
        self._colours = False
        self._running = False
        self._preview_ready = False
        self._auto_device = "cpu"  # what Automatic picks (set_devices)
        self._cpu_native_bf16 = False
        self._engine_ready = False  # the estimate asks the engine: not before it is loaded (set_devices)
        self._speeds = None  # measured speeds (set_speeds)
        self._models: list[ModelChoice] = []
        self._model_files: list[ModelChoice] = []  # chosen with Choose file…: kept when set_models runs
        self._last_model = TEST_TINY  # the model selected before "Choose file…"
        self._waits: dict[str, str] = {}  # what Restore waits for (a model file checked, a photo saved): why
        self._classifier = DEFAULT_CLASSIFIER  # the one chosen (listed once it is installed)
        self.problems: list[str] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._layout = layout
        layout.addWidget(self._build_settings_area(), 1)
        layout.addWidget(self._build_run_box())
        self.set_models([])
        self.set_classifiers([])
        self._fill_devices([("cpu", "CPU")])  # until the engine says which devices there are
        self.set_settings(TaskSettings())

    # ---- construction -----------------------------------------------------------------
    def _build_settings_area(self) -> QScrollArea:
        """Tasks, model and Advanced scroll; the run box below them (Restore, Apply, Discard,
        progress) stays in view however short the window is. The sections (``run_settings``: add
        more with :meth:`add_section`) and the Advanced fields are locked while a run goes."""
        settings = QWidget()
        layout = QVBoxLayout(settings)
        self.run_settings = QWidget()
        self._sections = QVBoxLayout(self.run_settings)
        self._sections.setContentsMargins(0, 0, 0, 0)
        self._sections.addWidget(self._build_tasks())
        self._sections.addWidget(self._build_model())
        layout.addWidget(self.run_settings)
        layout.addWidget(self._build_advanced())
        layout.addStretch(1)
        scroll = QScrollArea()
        self._scroll = scroll
        scroll.setWidget(settings)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        return scroll

    def _build_tasks(self) -> QGroupBox:
        box = TasksBox()
        for name in TasksBox.WIDGETS:  # the panel's own names for them (the window and tests use these)
            setattr(self, name, getattr(box, name))
        box.edited.connect(self._on_edited)
        self.fast_row = FastUpscaleRow()  # under Upscale
        self.fast_upscale = self.fast_row.check  # the panel's name for it (the window and tests use it)
        self.fast_row.toggled.connect(self._on_edited)
        self.fast_row.get_requested.connect(self.get_fast_upscaler)
        self.cleanup = CleanupBox()  # two stages: engine/cleanup
        self.cleanup.edited.connect(self._on_edited)
        self.cleanup.get_more.connect(self.open_models)
        box.layout().insertWidget(3, self.fast_row)
        box.layout().insertWidget(4, self.cleanup)
        return box

    def show_banner(self, widget: QWidget) -> None:
        """A message with its own buttons at the top of the panel, above the settings (the welcome)."""
        self._layout.insertWidget(0, widget)

    def add_section(self, widget: QWidget, index: int = -1) -> None:
        """A section of settings that changes the run (a group of tasks, a model's options), placed
        among the panel's sections (``index`` as in QBoxLayout.insertWidget: -1 = last, above
        Advanced). Like every section, it is locked while a run goes."""
        self._sections.insertWidget(index, widget)

    def _build_advanced(self) -> QWidget:
        box = AdvancedBox()
        for name in AdvancedBox.WIDGETS:  # the panel's own names for them (the window and tests use these)
            setattr(self, name, getattr(box, name))
        box.edited.connect(self._on_edited)
        box.advanced_toggle.toggled.connect(lambda on: on and QTimer.singleShot(0, self._scroll_to_advanced))
        self.classifier.activated.connect(lambda _i: setattr(self, "_classifier", self.classifier.currentData()))
        return box

    def _scroll_to_advanced(self) -> None:
        """Advanced just opened: its fields fill the view (the toggle at the top), not the rows below it."""
        self._scroll.verticalScrollBar().setValue(self.advanced_toggle.mapTo(self._scroll.widget(), QPoint()).y())

    def _build_run_box(self) -> QWidget:
        box = RunBox()
        for name in RunBox.WIDGETS:  # the panel's own names for them (the window and tests use these)
            setattr(self, name, getattr(box, name))
        self.restore_button.clicked.connect(self.restore_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.apply_button.clicked.connect(self.apply_requested)
        self.discard_button.clicked.connect(self.discard_requested)
        return box

    # ---- settings <-> widgets -----------------------------------------------------------
    def settings(self) -> TaskSettings:
        s = TaskSettings(
            inpaint=self.inpaint.isChecked(), colorize=self.colorize.isChecked(),
            upscale=int(self.upscale.currentData() or 1), denoise=self.denoise.isChecked(),
            denoise_strength=self.denoise_strength.value(), deblur=self.deblur.isChecked(),
            deblur_sigma=self.deblur_sigma.value(), model=self.model.currentData() or TEST_TINY,
            quality=self.quality.currentData() or CUSTOM, steps=self.steps.value(),
            travel_length=self.travel_length.value(), travel_repeat=self.travel_repeat.value(),
            eta=self.eta.value(), sigma_y=self.sigma_y.value(), seed=self.seed.value(),
            hir=self.hir.currentData() or "auto", window=self.window_size.value(), overlap=self.overlap.value(),
            precision=self.precision.currentData() or "auto", compile=self.compile.isChecked(),
            device=self.device.currentData() or "auto",
            class_label=self.class_label.value() if self._class_cond() else -1, guidance_scale=self.guidance.value(),
            classifier=self.classifier.currentData() or self._classifier, fast_upscale=self.fast_row.chosen(),
            **self.cleanup.values(),
        )
        if s.model == CHOOSE_FILE:
            s.model = TEST_TINY
        return s

    def set_settings(self, s: TaskSettings) -> None:
        self._loading = True
        try:
            self.inpaint.setChecked(s.inpaint)
            self.colorize.setChecked(s.colorize)
            self.upscale.setCurrentIndex(max(0, self.upscale.findData(s.upscale)))
            self.fast_upscale.setChecked(s.fast_upscale)
            self.denoise.setChecked(s.denoise)
            self.denoise_strength.setValue(s.denoise_strength)
            self.deblur.setChecked(s.deblur)
            self.deblur_sigma.setValue(s.deblur_sigma)
            self.cleanup.set_values(s)
            self._list_saved_model(s)
            self.model.setCurrentIndex(max(0, self.model.findData(s.model)))
            self.quality.setCurrentIndex(max(0, self.quality.findData(s.quality)))
            self.steps.setValue(s.steps)
            self.travel_length.setValue(s.travel_length)
            self.travel_repeat.setValue(s.travel_repeat)
            self.eta.setValue(s.eta)
            self.sigma_y.setValue(s.sigma_y)
            self.seed.setValue(s.seed)
            self.class_label.setValue(max(s.class_label, 0))
            self.guidance.setValue(s.guidance_scale)
            self._classifier = s.classifier
            self.classifier.setCurrentIndex(max(0, self.classifier.findData(s.classifier)))  # as set_classifiers
            self.hir.setCurrentIndex(max(0, self.hir.findData(s.hir)))
            self.window_size.setValue(s.window)
            self.overlap.setValue(s.overlap)
            self.precision.setCurrentIndex(max(0, self.precision.findData(s.precision)))
            self.compile.setChecked(s.compile)
            self.device.setCurrentIndex(max(0, self.device.findData(s.device)))
        finally:
            self._loading = False
        self._on_edited()

    def set_speeds(self, speeds) -> None:
        """Where the measured speeds of earlier runs are (a gui.run.speed.SpeedBook): the estimate uses them."""
        self._speeds = speeds
        self._refresh()

    def set_cleanup_models(self, choices: list[CleanupChoice]) -> None:
        self.cleanup.set_models(choices)
        self._on_edited()

    def set_fast_upscaler(self, available: bool) -> None:
        """Whether the fast upscaler is installed (else Fast is disabled, with a link to Models…)."""
        self.fast_row.available = available
        self._on_edited()

    def device_kind(self, s: TaskSettings) -> str:
        """The device a run with ``s`` uses: the chosen one, or for Automatic the first GPU, else the CPU."""
        return s.device if s.device != "auto" else self._auto_device

    def set_devices(self, devices: list[tuple[str, str]]) -> None:
        """(spec, description) pairs from engine.device.available_devices(); "auto" comes first.
        The engine is loaded once the devices are known: the time estimate shows from then on."""
        self._engine_ready = True
        self._fill_devices(devices)

    def _fill_devices(self, devices: list[tuple[str, str]]) -> None:
        current = self.device.currentData()
        self._auto_device = next((spec for spec, _ in devices if not spec.startswith("cpu")), "cpu")
        self._cpu_native_bf16 = any(spec.startswith("cpu") and NATIVE_BF16_LABEL in desc for spec, desc in devices)
        best = next((desc for spec, desc in devices if not spec.startswith("cpu")), None)
        was_loading, self._loading = self._loading, True
        self.device.clear()
        self.device.addItem(f"Automatic ({best})" if best else "Automatic (CPU)", "auto")
        for spec, desc in devices:
            self.device.addItem(f"{desc}" if spec.startswith("cpu") else f"{desc} — {spec}", spec)
        self.device.setCurrentIndex(max(0, self.device.findData(current)))
        self._loading = was_loading
        self._refresh()

    def set_context(self, image_size: Optional[tuple[int, int]], has_mask: bool, colours: bool = False) -> None:
        """The photo the panel plans for: its (height, width), whether it has a mask, and whether it
        has colours of its own (run_plan.has_colours)."""
        self._image_size, self._has_mask, self._colours = image_size, has_mask, colours
        self._refresh()

    def set_model_check(self, file_name: Optional[str]) -> None:
        """The name of a chosen model file being checked, or None once the check has ended: until
        then a run would use the model selected before, so Restore waits."""
        self.set_waiting("model file", file_name and f"Checking the model file {file_name}… Restore waits for the "
                                                     "check to end.")

    def set_waiting(self, key: str, why: Optional[str]) -> None:
        """Restore waits, saying ``why``, until ``why`` is None again for this ``key``."""
        if why:
            self._waits[key] = why
        else:
            self._waits.pop(key, None)
        self._refresh()

    def run_problems(self, s: TaskSettings, image_size: Optional[tuple[int, int]], has_mask: bool) -> list[str]:
        """Why a run with ``s`` cannot start now (run_plan.find_problems, and what it waits for)."""
        problems = run_plan.find_problems(s, image_size, has_mask)
        if s.class_label >= 0 and s.guidance_scale > 0 and not self.classifier.currentData():
            problems.append("Guidance needs a classifier: download or import one in Models…, or set Guidance to 0.")
        return problems + list(self._waits.values())

    # ---- run state --------------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        self._running = running
        self.progress.setVisible(running or self.progress.value() > 0)
        if running:
            self.progress.setRange(0, 0)
            self.progress.setFormat("%p%")
            self.stage_label.setText("Starting…")
            self.estimate_label.setText("")  # the time left replaces the estimate from the first progress on
        else:
            self.progress.setFormat("%p%")
        self._refresh()

    def clear_run_status(self) -> None:
        """No run to report on: a new photo, or the result applied or discarded."""
        self.stage_label.setText("")
        self.progress.reset()
        self.progress.setVisible(False)

    def set_stage(self, text: str) -> None:
        self.stage_label.setText(text)

    def set_progress(self, done: int, total: int, elapsed: float, eta: Optional[float]) -> None:
        """A running run's progress: the bar, and the live time left in place of the estimate."""
        self.progress.setVisible(True)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        if self._running:
            self.estimate_label.setText(run_plan.describe_progress(done, total, elapsed, eta))

    def set_preview_ready(self, ready: bool) -> None:
        self._preview_ready = ready
        self._refresh()

    # ---- reactions --------------------------------------------------------------------
    def _on_quality_changed(self, *_args) -> None:
        name = self.quality.currentData()
        if self._loading or name not in QUALITY_PRESETS:
            self._on_edited()
            return
        self._loading = True
        preset = QUALITY_PRESETS[name]
        self.steps.setValue(preset.steps)
        self.travel_length.setValue(preset.travel_length)
        self.travel_repeat.setValue(preset.travel_repeat)
        self._loading = False
        self._on_edited()

    def _on_edited(self, *_args) -> None:
        if self._loading:
            return
        s = self.settings()
        for box, value in ((self.denoise, self.denoise_strength), (self.deblur, self.deblur_sigma)):
            box.setEnabled(not s.cleanup)  # the clean-up network removes noise and blur
            value.setEnabled(box.isChecked() and not s.cleanup)
        preset = s.matching_preset()
        if preset != s.quality:
            self._loading = True
            self.quality.setCurrentIndex(self.quality.findData(preset))
            self._loading = False
        self._refresh()
        self.changed.emit()

    def _refresh(self) -> None:
        s = self.settings()
        self.problems = self.run_problems(s, self._image_size, self._has_mask)
        notes = run_plan.find_notes(s, self._image_size, self._colours)
        self.problem_label.setText("\n".join(f"• {p}" for p in self.problems))
        self.problem_label.setVisible(bool(self.problems))
        self.note_label.setText("\n".join(notes))
        self.note_label.setVisible(bool(notes) and not self.problems)
        if not self._running:  # while a run goes, set_progress shows the time it has left
            self.estimate_label.setText(self._estimate_text())
        self.restore_button.setEnabled(not self._running and not self.problems)
        self.restore_button.setToolTip(self.problems[0] if self.problems else "Start restoring (Ctrl+R)")
        self.cancel_button.setEnabled(self._running)
        self.apply_button.setEnabled(self._preview_ready and not self._running)
        self.discard_button.setEnabled(self._preview_ready and not self._running)
        for w in (self.run_settings, self.advanced):  # everything that would change the run
            w.setEnabled(not self._running)
        self.fast_row.update_state(s.upscale, self._running)

    def estimate(self) -> Optional[run_plan.Estimate]:
        """How long a run with the current settings takes: from the speed measured on this computer,
        else a rough guess. None before the engine is loaded, or when the run cannot start."""
        s = self.settings()
        if not (self._image_size and self._engine_ready) or self.problems:
            return None
        kind = self.device_kind(s)
        measured = self._speeds.get(SpeedKey.of(s, kind)) if self._speeds is not None else None
        try:
            return run_plan.estimate_run(s, self._image_size, kind, self._cpu_native_bf16, measured)
        except Exception:  # noqa: BLE001 - a plan the engine refuses: the run says why
            return None

    def _estimate_text(self) -> str:
        est = self.estimate()
        return run_plan.describe_estimate(est, self.device_kind(self.settings())) if est is not None else ""
