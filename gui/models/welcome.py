"""First-run welcome: shown while no model is installed. Explains in plain words what to do and
offers the three ways to get a model (download the recommended one, import a file, open the
Models dialog) or to continue without one (only the test model, which does not restore)."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QFileDialog, QLabel, QPushButton, QVBoxLayout

from gui.models.dialog import ModelsDialog, human_size

DOWNLOAD, IMPORT, OPEN_MODELS, CONTINUE = "download", "import", "open-models", "continue"


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


class WelcomeDialog(QDialog):
    """Buttons set :attr:`choice` and close; the chosen action then opens the Models dialog."""

    def __init__(self, parent=None, *, models_dir: Optional[str] = None):
        super().__init__(parent)
        self.setWindowTitle("Welcome to Restorer")
        self.models_dir = models_dir
        self.choice: Optional[str] = None
        self.models_dialog: Optional[ModelsDialog] = None
        self.recommended = recommended_model(models_dir)
        size = human_size(self.recommended.size_bytes) if self.recommended else "?"

        text = QLabel(
            "<h3>Welcome!</h3>"
            "<p>Restorer repairs photos with a <b>diffusion model</b>: a large file (about 0.5–2 GB) that "
            "knows what photos look like. None is installed yet, so let's get one.</p>"
            "<p><b>Download the recommended model</b> if this computer is online. It is a general model "
            f"for all kinds of photos ({size}); the download can be paused and picks up where it stopped.</p>"
            "<p><b>Import a model file</b> if you already have one (for example "
            "<tt>256x256_diffusion_uncond.pt</tt> or <tt>celeba_hq.ckpt</tt>), or a model you trained.</p>"
            "<p>You can change models any time in <b>Models…</b>.</p>"
        )
        text.setWordWrap(True)
        text.setTextFormat(Qt.RichText)
        self.download_button = QPushButton(f"Download recommended model ({size})")
        self.download_button.setEnabled(self.recommended is not None)
        self.import_button = QPushButton("Import a model file…")
        self.models_button = QPushButton("Open Models…")
        self.continue_button = QPushButton("Continue without")
        self.continue_button.setToolTip("Only the built-in test model is available then. It is for testing only: "
                                        "it has random weights and will not restore photos.")
        note = QLabel("Without a model only <i>test-tiny</i> is available — it is for testing only and "
                      "does not restore photos.")
        note.setWordWrap(True)
        self.download_button.clicked.connect(lambda: self._choose(DOWNLOAD))
        self.import_button.clicked.connect(lambda: self._choose(IMPORT))
        self.models_button.clicked.connect(lambda: self._choose(OPEN_MODELS))
        self.continue_button.clicked.connect(lambda: self._choose(CONTINUE))

        layout = QVBoxLayout(self)
        layout.addWidget(text)
        for b in (self.download_button, self.import_button, self.models_button):
            layout.addWidget(b)
        layout.addSpacing(8)
        layout.addWidget(note)
        layout.addWidget(self.continue_button)
        self.download_button.setDefault(True)

    def _choose(self, choice: str) -> None:
        self.choice = choice
        if choice == CONTINUE:
            self.reject()
            return
        import_path = None
        if choice == IMPORT:
            import_path = self.ask_import_path()
            if not import_path:
                self.choice = None
                return
        self.accept()
        self.open_models(download=choice == DOWNLOAD, import_path=import_path)

    def ask_import_path(self) -> str:
        path, _ = QFileDialog.getOpenFileName(self, "Import a model file", "",
                                              "Model checkpoints (*.pt *.pth *.ckpt *.safetensors *.bin);;All files (*)")
        return path

    def open_models(self, *, download: bool = False, import_path: Optional[str] = None) -> ModelsDialog:
        """Open the Models dialog (window-modal, non-blocking) and start the chosen action in it:
        the main window's own dialog (it updates the window's model list), else a new one."""
        window_dialog = getattr(self.parent(), "models_dialog", None)
        dialog = window_dialog() if callable(window_dialog) else ModelsDialog(self.parent(), models_dir=self.models_dir)
        self.models_dialog = dialog
        dialog.open()
        if download and self.recommended is not None:
            dialog.select(self.recommended.id)
            dialog.download(self.recommended.id)
        elif import_path:
            dialog.import_file(import_path)
        return dialog


def show_welcome_if_needed(parent=None, models_dir: Optional[str] = None) -> Optional[str]:
    """For the main window at start-up: shows the welcome when no model is installed; returns the choice."""
    if not should_show_welcome(models_dir):
        return None
    dialog = WelcomeDialog(parent, models_dir=models_dir)
    dialog.exec()
    return dialog.choice
