"""First-run welcome: a banner at the top of the task panel while no model is installed (and the
user has not said "Not now"). It explains in plain words what to do and offers the three ways to
get a model (download the recommended one, import a file, open the Models dialog), or to go on
without one (only the test model, which does not restore). It is not a dialog: it appears when
the model list is known, takes no keys and blocks nothing."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from gui.models.dialog import human_size

DOWNLOAD, IMPORT, OPEN_MODELS, CONTINUE = "download", "import", "open-models", "continue"
#: Settings key: the user said "Not now"; the welcome does not come back.
WELCOME_DISMISSED = "welcome/dismissed"


def should_show_welcome(models_dir: Optional[str] = None) -> bool:
    """True when no usable model is installed (broken catalogs count as 'none installed')."""
    from engine.errors import EngineError
    from engine.models import catalog as cat

    try:
        return not cat.installed_models(models_dir)
    except EngineError:
        return True


def recommended_model(models_dir: Optional[str] = None):
    from engine.errors import EngineError
    from engine.models import catalog as cat

    try:
        return next((e for e in cat.load_catalog().values() if e.recommended), None)
    except EngineError:
        return None


class WelcomeBanner(QFrame):
    """Shown at the top of the task panel, not over the window: it takes no keys and waits. Its
    buttons emit :attr:`chosen` (DOWNLOAD, IMPORT, OPEN_MODELS or CONTINUE, "Not now"); the window
    acts on the choice and hides the banner (:meth:`gui.models.window_models.ModelCommands.on_welcome_choice`)."""

    chosen = Signal(str)

    def __init__(self, parent=None, *, models_dir: Optional[str] = None):
        super().__init__(parent)
        self.setObjectName("welcome_banner")
        self.setFrameShape(QFrame.StyledPanel)
        self.recommended = recommended_model(models_dir)
        size = human_size(self.recommended.size_bytes) if self.recommended else "?"
        title = QLabel("<b>Welcome! No model is installed yet.</b>")
        text = QLabel(
            "Restoring needs a <b>diffusion model</b>: a file of 0.5–2 GB that knows what photos look like. "
            "Until one is installed only <i>test-tiny</i> runs, which is for testing and does not restore photos."
        )
        for label in (title, text):
            label.setWordWrap(True)
            label.setTextFormat(Qt.RichText)
        self.download_button = QPushButton(f"Download recommended ({size})")
        self.download_button.setEnabled(self.recommended is not None)
        self.import_button = QPushButton("Import a file…")
        self.models_button = QPushButton("Models…")
        self.continue_button = QPushButton("Not now")
        self.continue_button.setToolTip("Hide this for good (the Models menu gets a model at any time). "
                                        "Only the test model is available then: it has random weights and does "
                                        "not restore photos.")
        for button, choice in ((self.download_button, DOWNLOAD), (self.import_button, IMPORT),
                               (self.models_button, OPEN_MODELS), (self.continue_button, CONTINUE)):
            button.setAutoDefault(False)
            button.clicked.connect(lambda _checked=False, c=choice: self.chosen.emit(c))
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(text)
        layout.addWidget(self.download_button)
        row = QHBoxLayout()
        for button in (self.import_button, self.models_button, self.continue_button):
            row.addWidget(button)
        layout.addLayout(row)
