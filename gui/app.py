"""QApplication setup: names (for QSettings), icon, and the dark / light theme."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Optional

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


#: Linux desktops whose native file dialogs come from the GTK 3 theme that PySide6 ships (Qt's own list).
GTK_DESKTOPS = {"GNOME", "X-CINNAMON", "PANTHEON", "UNITY", "MATE", "XFCE", "LXDE"}


def native_dialog_theme(environ: Mapping[str, str], platform: str = sys.platform) -> Optional[str]:
    """The Qt platform theme that gives this desktop its own file dialogs, where Qt would not pick one.

    Windows and macOS dialogs are native anyway; a GTK desktop gets them from the ``gtk3`` theme.
    Elsewhere (KDE Plasma, LXQt, sway, Hyprland…) Qt picks a theme without file dialogs (the PySide6
    wheels have no KDE theme plugin), so its own dialog shows; the ``xdgdesktopportal`` theme asks the
    desktop's portal for them instead (and falls back to Qt's dialog where no portal runs). A theme
    the user chose (QT_QPA_PLATFORMTHEME) is kept. None: nothing to change."""
    if not platform.startswith("linux") or environ.get("QT_QPA_PLATFORMTHEME"):
        return None
    desktops = {d.upper() for d in environ.get("XDG_CURRENT_DESKTOP", "").split(":") if d}
    if not desktops or desktops & GTK_DESKTOPS:
        return None
    return "xdgdesktopportal"


def create_application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if app is None:
        theme = native_dialog_theme(os.environ)
        if theme:  # read by Qt when the application is made
            os.environ["QT_QPA_PLATFORMTHEME"] = theme
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
