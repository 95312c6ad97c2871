"""QApplication setup: names (for QSettings), icon, and the dark / light theme."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from gui import __version__
from gui.settings import APPLICATION, ORGANIZATION

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
ICONS = RESOURCES / "icons"


def icon(name: str) -> QIcon:
    """An icon from resources/icons/<name>.svg (empty icon if missing)."""
    path = ICONS / f"{name}.svg"
    return QIcon(str(path)) if path.is_file() else QIcon()


def create_application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationVersion(__version__)
    app.setWindowIcon(icon("app"))
    return app


def apply_theme(app: QApplication, theme: str) -> None:
    """``dark`` (qdarkstyle's dark palette) or ``light``; falls back to Fusion if qdarkstyle is absent."""
    try:
        import qdarkstyle
        from qdarkstyle.dark.palette import DarkPalette
        from qdarkstyle.light.palette import LightPalette

        palette = LightPalette if theme == "light" else DarkPalette
        app.setStyleSheet(qdarkstyle.load_stylesheet(qt_api="pyside6", palette=palette))
    except ImportError:
        app.setStyle("Fusion")
        app.setStyleSheet("")
