"""The fast upscale's row under Upscale: "Fast (4 steps)" when the fast upscaler (ResShift) is
installed, else shown disabled beside a "Get it in Models…" link."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QWidget

from gui.run.plan import FAST_UPSCALE_LABEL


class FastUpscaleRow(QWidget):
    toggled = Signal(bool)
    get_requested = Signal()  # the link: open the Models dialog at the fast upscaler

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.available = False  # the fast upscaler and its autoencoder are installed
        self.check = QCheckBox(FAST_UPSCALE_LABEL)
        self.check.setToolTip("Upscale with ResShift's trained real-world ×4 model (×2 and ×8 are its ×4 resized): "
                              "minutes instead of hours, and real-world blur and noise go too. Its licence allows "
                              "non-commercial use only.")
        self.link = QLabel('<a href="models">Get it in Models…</a>')
        self.link.setToolTip("Download the fast upscaler (ResShift) in the Models dialog")
        self.link.linkActivated.connect(lambda _link: self.get_requested.emit())
        self.check.toggled.connect(self.toggled)
        row = QHBoxLayout(self)
        row.setContentsMargins(16, 0, 0, 0)
        row.addWidget(self.check)
        row.addWidget(self.link)
        row.addStretch(1)
        self.update_state(upscale=1, running=False)

    def chosen(self) -> bool:
        """Ticked, and usable (installed)."""
        return self.check.isChecked() and self.available

    def update_state(self, upscale: int, running: bool) -> None:
        """Tickable only with an upscale factor, the model installed, and no run going."""
        self.check.setEnabled(self.available and upscale > 1 and not running)
        self.link.setVisible(not self.available)
