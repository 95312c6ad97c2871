"""The task panel's Advanced section, folded behind a toggle: sampler (steps, time travel, η, σ_y,
seed), class and classifier guidance, tiling (HiR, window, overlap), precision, compile and device.
It holds the widgets only; the panel reads and writes their values."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QLabel, QSpinBox, QToolButton, QVBoxLayout, QWidget,
)

#: What each setting does to the result and when to change it, for a photographer (the tooltips).
TIPS = {
    "steps": "How many times the model refines each window. More steps give finer, more consistent detail and "
             "take proportionally longer: 25 is a quick look, 100 is good, above 250 rarely shows a difference.",
    "travel": "Time travel: after every few steps (steps back) the model goes back and redoes them (repeats), so "
              "what it fills in agrees better with the rest of the photo: large filled areas blend in, colours "
              "fit together. It costs time: 10 steps back with 3 repeats makes a window about 2.8× as slow. "
              "Repeats 1 = off. Raise it when large filled areas look pasted in or colours clash.",
    "eta": "How much fresh randomness each step adds. 0: calm and smooth, can look waxy or plastic. 1: the most "
           "texture and grain. 0.85 suits most photos; lower it when results look noisy, raise it when they look "
           "too smooth.",
    "sigma_y": "How noisy the photo is (0 to 1 of full brightness). The result keeps to the photo only within "
               "this much, so grain is not copied into it. 0 = take it from Remove noise. Raise it when the result "
               "keeps the grain of a scan; too high also loses real fine detail.",
    "seed": "The starting randomness. The same seed and settings give the same result again; another seed gives "
            "another version of what is filled in or coloured.",
    "hir": "Hierarchical restoration: first restore a small version of the whole photo, then the full size on top "
           "of it, so large things (a face, a building, the sky) keep one shape and one colour across windows. "
           "Auto turns it on for photos at least two windows high and wide. It adds about a quarter more windows; "
           "turn it off for speed when the photo has no large shapes to fill or colour.",
    "window": "The model restores the photo in square windows of this many pixels: the size it was trained on "
              "(256 for ADM-256; choosing a model sets it). Leave it, unless a model says otherwise.",
    "overlap": "How many pixels neighbouring windows share: the shared part carries over, so joins do not show. "
               "More overlap: smoother joins but more windows (slower). Less: faster, seams more likely. "
               "Half the window is a good choice.",
}


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
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)  # a long label puts its field below it
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        spin = self._spin
        self.steps = spin(1, 1000, tip=TIPS["steps"])
        self.travel_length = spin(1, 100, tip=TIPS["travel"])
        self.travel_repeat = spin(1, 20, tip=TIPS["travel"])
        self.eta = spin(0.0, 1.0, 0.05, 2, TIPS["eta"])
        self.sigma_y = spin(0.0, 1.0, 0.01, 3, TIPS["sigma_y"])
        self.seed = spin(0, 2**31 - 1, tip=TIPS["seed"])
        self.class_label = spin(0, 999, tip="ImageNet class for a class-conditional model (e.g. 0-999)")
        self.guidance = spin(0.0, 20.0, 0.5, 1, "Classifier guidance towards the class (0 = off; needs the classifier)")
        self.classifier = QComboBox()
        self.classifier.setToolTip("The classifier that guides towards the class: an installed ADM classifier "
                                   "(download or import one in Models…)")
        self.hir = QComboBox()
        for label, value in (("Auto", "auto"), ("On", "on"), ("Off", "off")):
            self.hir.addItem(label, value)
        self.hir.setToolTip(TIPS["hir"])
        self.window_size = spin(32, 1024, 32, tip=TIPS["window"])
        self.overlap = spin(0, 1000, 16, tip=TIPS["overlap"])
        self.precision = QComboBox()
        for label, p in (("Auto", "auto"), ("fp32", "fp32"), ("bf16", "bf16"), ("fp16 (GPUs only: very slow on a CPU)", "fp16")):
            self.precision.addItem(label, p)
        self.precision.setToolTip("Auto: bf16 on GPUs and on CPUs with native bf16 (2-3× faster), else fp32. "
                                  "fp16 is for GPUs: a CPU emulates it, many times slower than Auto")
        self.compile = QCheckBox("Compile the network")
        self.compile.setToolTip("torch.compile: faster steps on a GPU. The first run on this computer spends "
                                "a minute or two compiling; later runs reuse the compiled kernels.")
        self.compile.toggled.connect(self.edited)
        self.device = QComboBox()
        for w in (self.hir, self.precision, self.device, self.classifier):
            w.currentIndexChanged.connect(self.edited)
        hint = QLabel("Hover over a setting to read what it changes in the result and when to change it.")
        hint.setWordWrap(True)
        hint.setObjectName("hint")
        form.addRow(hint)
        for row in (("The result",), ("Steps per window", self.steps), ("Time travel: steps back", self.travel_length),
                    ("Time travel: repeats", self.travel_repeat), ("Randomness (η)", self.eta),
                    ("Photo's noise level (σ_y)", self.sigma_y), ("Seed", self.seed),
                    ("Class-conditional models",), ("Class", self.class_label), ("Guidance", self.guidance),
                    ("Classifier", self.classifier),
                    ("Large photos",), ("Whole photo first (HiR)", self.hir), ("Window size", self.window_size),
                    ("Window overlap", self.overlap),
                    ("This computer",), ("Precision", self.precision), ("Speed", self.compile),
                    ("Device", self.device)):
            if len(row) == 1:
                heading = QLabel(f"<b>{row[0]}</b>")
                form.addRow(heading)
            else:
                label = QLabel(row[0])
                label.setToolTip(row[1].toolTip())  # hovering the name explains it too
                form.addRow(label, row[1])
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
