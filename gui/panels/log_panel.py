"""The log view: engine LogEvents and app messages, with Copy and Clear."""

from __future__ import annotations

import time

from PySide6.QtGui import QFontDatabase, QGuiApplication, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

_PREFIX = {"info": "", "warning": "warning: ", "error": "error: "}


class LogPanel(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(5000)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        copy = QPushButton("Copy")
        copy.setToolTip("Copy the whole log to the clipboard")
        clear = QPushButton("Clear")
        copy.clicked.connect(self.copy_all)
        clear.clicked.connect(self.text.clear)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(copy)
        buttons.addWidget(clear)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.text, 1)
        layout.addLayout(buttons)

    def add(self, level: str, message: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.text.appendPlainText(f"{stamp}  {_PREFIX.get(level, level + ': ')}{message}")
        self.text.moveCursor(QTextCursor.End)

    def plain_text(self) -> str:
        return self.text.toPlainText()

    def copy_all(self) -> None:
        QGuiApplication.clipboard().setText(self.plain_text())
