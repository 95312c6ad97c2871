"""The task panel's "What to do" section: fill, colorize, upscale, remove noise, deblur. It holds
the widgets only; the panel reads and writes their values."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QGroupBox, QHBoxLayout, QSlider, QVBoxLayout

from gui.run.plan import UPSCALE_FACTORS


class TasksBox(QGroupBox):
    edited = Signal()  # any value changed by the user
    WIDGETS = ("inpaint", "colorize", "upscale", "denoise", "denoise_strength", "deblur", "deblur_sigma")

    def __init__(self, parent=None):
        super().__init__("What to do", parent)
        self.inpaint = QCheckBox("Fill masked areas")
        self.inpaint.setToolTip("Paint over scratches, stains or objects; they are filled in. "
                                "Painting a mask ticks this; untick it to keep the mask for later.")
        self.colorize = QCheckBox("Colorize")
        self.colorize.setToolTip("Give a black-and-white photo plausible colours.")
        self.upscale = QComboBox()
        for f in UPSCALE_FACTORS:
            self.upscale.addItem("No upscale" if f == 1 else f"Upscale ×{f}", f)
        self.upscale.setToolTip("Make the photo 2, 4 or 8 times larger, with new detail where the photo has none.")
        self.denoise = QCheckBox("Remove noise")
        self.denoise.setToolTip("Smooth away film grain and scanner noise while restoring.")
        self.denoise_strength = QSlider(Qt.Horizontal)
        self.denoise_strength.setRange(1, 100)
        self.denoise_strength.setToolTip("How noisy the photo is: left for light grain, right for heavy grain. "
                                         "Too far right smooths away real detail.")
        self.deblur = QCheckBox("Deblur")
        self.deblur.setToolTip("Sharpen a photo that is evenly out of focus (a Gaussian blur).")
        self.deblur_sigma = QDoubleSpinBox()
        self.deblur_sigma.setRange(0.1, 20.0)
        self.deblur_sigma.setSingleStep(0.5)
        self.deblur_sigma.setSuffix(" px")
        self.deblur_sigma.setToolTip("How wide the blur is, in pixels of the photo (its σ): about the width of "
                                     "a blurred edge divided by 3. Too large adds ringing around edges.")
        form = QVBoxLayout(self)
        for w in (self.inpaint, self.colorize, self.upscale):
            form.addWidget(w)
        for check, amount in ((self.denoise, self.denoise_strength), (self.deblur, self.deblur_sigma)):
            row = QHBoxLayout()
            row.addWidget(check)
            row.addWidget(amount, 1)
            form.addLayout(row)
            check.toggled.connect(amount.setEnabled)  # the amount only matters when the task is ticked
            amount.setEnabled(False)
        for w in (self.inpaint, self.colorize, self.denoise, self.deblur):
            w.toggled.connect(self.edited)
        self.upscale.currentIndexChanged.connect(self.edited)
        self.denoise_strength.valueChanged.connect(self.edited)
        self.deblur_sigma.valueChanged.connect(self.edited)
