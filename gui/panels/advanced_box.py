"""The task panel's Advanced section, folded behind a toggle: sampler (steps, time travel, η, σ_y,
seed), class and classifier guidance, tiling (HiR, window, overlap), precision, compile and device.
It holds the widgets only; the panel reads and writes their values."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QSpinBox, QToolButton, QVBoxLayout, QWidget,
)


class AdvancedBox(QWidget):
    edited = Signal()  # any value changed by the user
    WIDGETS = ("advanced_toggle", "advanced", "steps", "travel_length", "travel_repeat", "eta", "sigma_y", "seed",
               "class_label", "guidance", "classifier", "hir", "window_size", "overlap", "precision", "compile",
               "device")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setObjectName("advanced_toggle")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.RightArrow)
        self.advanced = QGroupBox()
        form = QFormLayout(self.advanced)
        spin = self._spin
        self.steps = spin(1, 1000, tip="Denoising steps per window")
        self.travel_length = spin(1, 100, tip="Time travel jump length L (1 = off)")
        self.travel_repeat = spin(1, 20, tip="Time travel repeats r (1 = off)")
        self.eta = spin(0.0, 1.0, 0.05, 2, "η: 0 = deterministic DDIM, 1 = DDPM-like")
        self.sigma_y = spin(0.0, 1.0, 0.01, 3, "Noise σ_y override for DDNM+ (0 = from Remove noise)")
        self.seed = spin(0, 2**31 - 1, tip="Same seed + same settings = same result")
        self.class_label = spin(0, 999, tip="ImageNet class for a class-conditional model (e.g. 0-999)")
        self.guidance = spin(0.0, 20.0, 0.5, 1, "Classifier guidance towards the class (0 = off; needs the classifier)")
        self.classifier = QComboBox()
        self.classifier.setToolTip("The classifier that guides towards the class: an installed ADM classifier "
                                   "(download or import one in Models…)")
        self.hir = QComboBox()
        for label, value in (("Auto", "auto"), ("On", "on"), ("Off", "off")):
            self.hir.addItem(label, value)
        self.hir.setToolTip("Hierarchical restoration: a low-resolution pass first, for global sense")
        self.window_size = spin(32, 1024, 32, tip="Window size the model restores at once")
        self.overlap = spin(0, 1000, 16, tip="Overlap between neighbouring windows")
        self.precision = QComboBox()
        for label, p in (("Auto", "auto"), ("fp32", "fp32"), ("bf16", "bf16"), ("fp16", "fp16")):
            self.precision.addItem(label, p)
        self.precision.setToolTip("Auto: bf16 on GPUs and on CPUs with native bf16 (2-3× faster), else fp32")
        self.compile = QCheckBox("Compile the network")
        self.compile.setToolTip("torch.compile: faster steps on a GPU. The first run on this computer spends "
                                "a minute or two compiling; later runs reuse the compiled kernels.")
        self.compile.toggled.connect(self.edited)
        self.device = QComboBox()
        for w in (self.hir, self.precision, self.device, self.classifier):
            w.currentIndexChanged.connect(self.edited)
        for label, w in (("Steps", self.steps), ("Travel L", self.travel_length), ("Travel r", self.travel_repeat),
                         ("η (eta)", self.eta), ("σ_y", self.sigma_y), ("Seed", self.seed),
                         ("Class", self.class_label), ("Guidance", self.guidance),
                         ("Classifier", self.classifier), ("HiR", self.hir),
                         ("Window", self.window_size), ("Overlap", self.overlap), ("Precision", self.precision),
                         ("Speed", self.compile), ("Device", self.device)):
            form.addRow(label, w)
        self.advanced.setVisible(False)
        self.advanced_toggle.toggled.connect(self._toggle)
        outer.addWidget(self.advanced_toggle)
        outer.addWidget(self.advanced)

    def _spin(self, lo, hi, step=1, decimals=None, tip=""):
        w = QDoubleSpinBox() if decimals is not None else QSpinBox()
        if decimals is not None:
            w.setDecimals(decimals)
        w.setRange(lo, hi)
        w.setSingleStep(step)
        w.setToolTip(tip)
        w.valueChanged.connect(self.edited)
        return w

    def _toggle(self, on: bool) -> None:
        self.advanced.setVisible(on)
        self.advanced_toggle.setArrowType(Qt.DownArrow if on else Qt.RightArrow)
