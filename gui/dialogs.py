"""About, keyboard shortcuts, and error dialogs (engine errors and out-of-memory advice); the busy
cursors, for work on the UI thread and for work in the background."""

from __future__ import annotations

import contextlib
import platform
import sys
from typing import Iterator, Optional

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, qVersion
from PySide6.QtWidgets import (QApplication, QDialog, QDialogButtonBox, QLabel, QMessageBox, QTextBrowser, QVBoxLayout,
                               QWidget)

from gui import __version__ as app_version

#: (keys, what they do) — the single list the Help dialog shows.
SHORTCUTS: list[tuple[str, str]] = [
    ("Ctrl+O", "Open a photo"), ("Ctrl+V", "Paste a photo"), ("Ctrl+S / Ctrl+Shift+S", "Save / Save as"),
    ("Ctrl+R", "Restore"), ("Esc", "Cancel the run (or the current stroke)"),
    ("B / E / H", "Brush / Eraser / Hand (pan)"), ("[ / ]", "Smaller / larger brush"),
    ("Alt+drag", "Erase with the brush tool"), ("Space+drag, middle drag", "Pan"),
    ("Wheel", "Zoom around the cursor"), ("+ / -", "Zoom in / out"),
    ("Ctrl+0 / Ctrl+1", "Fit to window / 100 %"), ("Ctrl+Z", "Undo"), ("Ctrl+Shift+Z, Ctrl+Y", "Redo"),
    ("Ctrl+D", "Detect damage (a proposed mask)"), ("Ctrl+I", "Invert mask"), ("Ctrl+Delete", "Clear mask"),
    ("M", "Show/hide the mask"),
    ("C", "Before/after split"), ("\\ (hold)", "Show the original / the photo before the run"),
    ("Ctrl+Return", "Apply the result"), ("F1", "This list"),
]


@contextlib.contextmanager
def busy_cursor(background: bool = False) -> Iterator[None]:
    """A wait cursor while the UI thread works (showing a new scan); with ``background``, the busy
    cursor (an arrow with a wait sign: the window keeps working) while work runs in another thread."""
    QApplication.setOverrideCursor(Qt.BusyCursor if background else Qt.WaitCursor)
    try:
        yield
    finally:
        QApplication.restoreOverrideCursor()


def device_summary() -> str:
    """Devices as the engine sees them (imports torch: call it only when needed)."""
    try:
        from engine.device import available_devices

        return "<br>".join(f"{spec}: {desc}" for spec, desc in available_devices())
    except Exception as exc:  # noqa: BLE001
        return f"unavailable ({exc})"


def versions() -> dict[str, str]:
    out = {"Restorer": app_version, "Python": platform.python_version(), "Qt": qVersion(), "PySide6": pyside_version}
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch  # noqa: F811
        except ImportError:
            torch = None
    out["PyTorch"] = getattr(torch, "__version__", "not installed")
    return out


def show_about(parent: Optional[QWidget]) -> None:
    rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;{v}</td></tr>" for k, v in versions().items())
    text = (
        f"<h3>Restorer {app_version}</h3>"
        "<p>Restore, colorize and upscale photos offline with zero-shot diffusion "
        "(DDNM, Mask-Shift and Hierarchical Restoration).</p>"
        f"<table>{rows}</table><p><b>Devices</b><br>{device_summary()}</p>"
    )
    QMessageBox.about(parent, "About Restorer", text)


#: Width of the shortcuts list (its height follows from its lines).
SHORTCUTS_WIDTH = 500


class ShortcutsDialog(QDialog):
    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in SHORTCUTS)
        view = QTextBrowser()
        view.setHtml(
            f"<table cellpadding='3'>{rows}</table>"
            "<p>Paint over damage with the brush, tick what to do, press Restore. Windows appear on "
            "the canvas as they finish; Apply keeps the result (undoable), Discard drops it.</p>"
        )
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(view)
        layout.addWidget(buttons)
        view.setMinimumWidth(SHORTCUTS_WIDTH)
        self.view = view
        self.resize(SHORTCUTS_WIDTH + 40, 560)

    def showEvent(self, event) -> None:
        """Tall enough for every line (the screen permitting), once the style has set the font:
        nothing is hidden below the fold."""
        super().showEvent(event)
        view = self.view
        view.document().setTextWidth(view.viewport().width())
        missing = round(view.document().size().height()) + 2 * view.frameWidth() - view.height()
        if missing > 0:
            screen = self.screen().availableGeometry().height() if self.screen() is not None else 900
            self.resize(self.width(), min(self.height() + missing + 2, screen - 80))


def oom_advice(message: str) -> str:
    return (
        "The device ran out of memory.\n\n"
        "What to try, in order:\n"
        "• Advanced ▸ Precision: fp16 or bf16 (half the memory).\n"
        "• A smaller window, or a smaller upscale factor.\n"
        "• Close other programs that use the GPU.\n"
        "• Advanced ▸ Device: CPU (slow, but limited only by RAM).\n\n"
        f"Details: {message}"
    )


def show_error(parent: Optional[QWidget], kind: str, message: str, title: str = "Cannot restore") -> QMessageBox:
    """An error dialog: engine errors as they are (titled ``title``), OOM with advice, internal
    errors with details."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Warning if kind != "internal" else QMessageBox.Critical)
    if kind == "oom":
        box.setWindowTitle("Out of memory")
        box.setText(oom_advice(message))
    elif kind == "internal":
        head, _, details = message.partition("\n\n")
        box.setWindowTitle("Unexpected error")
        where = "\nShow Details… has the technical details (copy them into a bug report)." if details else ""
        box.setText(f"Something went wrong inside the app: {head}{where}")
        box.setDetailedText(details)
    else:
        box.setWindowTitle(title)
        box.setText(message)
    box.setTextInteractionFlags(Qt.TextSelectableByMouse)
    box.setStandardButtons(QMessageBox.Ok)
    box.open()
    return box


def confirm(parent: Optional[QWidget], title: str, text: str) -> bool:
    return QMessageBox.question(parent, title, text, QMessageBox.Yes | QMessageBox.No) == QMessageBox.Yes


class InfoLabel(QLabel):
    def __init__(self, text: str, parent: Optional[QWidget] = None):
        super().__init__(text, parent)
        self.setWordWrap(True)
