"""Persistent user settings (QSettings, INI format) with a version key.

Older or unknown versions are ignored (cleared) instead of being misread; add a migration step
to :data:`MIGRATIONS` when a key changes meaning.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "Restorer"
APPLICATION = "Restorer"
SETTINGS_VERSION = 3
MAX_RECENT_FILES = 10

#: version -> function upgrading a QSettings from that version to version + 1
MIGRATIONS: dict[int, Callable[[QSettings], None]] = {
    # version 1 stored the theme as a bool "dark"; version 2 stores "theme" = "dark" | "light"
    1: lambda s: (s.setValue("theme", "dark" if _as_bool(s.value("dark", True)) else "light"), s.remove("dark")),
    # version 2 defaulted precision to fp32; version 3 adds "auto" (bf16 where the device runs it well)
    2: lambda s: _set_task_setting(s, "precision", "auto", only_if="fp32"),
}


def _set_task_setting(s: QSettings, key: str, value: Any, only_if: Any) -> None:
    try:
        task = json.loads(s.value("task_settings") or "{}")
    except (TypeError, ValueError):
        return
    if isinstance(task, dict) and task.get(key) == only_if:
        task[key] = value
        s.setValue("task_settings", json.dumps(task))


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


class AppSettings:
    """Typed accessors over one QSettings store."""

    def __init__(self, settings: QSettings | None = None):
        self.qs = settings or QSettings(QSettings.IniFormat, QSettings.UserScope, ORGANIZATION, APPLICATION)
        self._upgrade()

    def _upgrade(self) -> None:
        raw = self.qs.value("settings_version")
        try:
            version = int(raw) if raw is not None else None
        except (TypeError, ValueError):
            version = None
        if version == SETTINGS_VERSION:
            return
        if version is not None and version < SETTINGS_VERSION and all(
            v in MIGRATIONS for v in range(version, SETTINGS_VERSION)
        ):
            for v in range(version, SETTINGS_VERSION):
                MIGRATIONS[v](self.qs)
        else:  # unknown, newer or unmigratable: start fresh rather than misread
            self.qs.clear()
        self.qs.setValue("settings_version", SETTINGS_VERSION)
        self.qs.sync()

    # generic -----------------------------------------------------------------------------
    def get(self, key: str, default: Any = None, kind: type | None = None) -> Any:
        value = self.qs.value(key, default)
        if value is None or kind is None:
            return value
        try:
            if kind is bool:
                return _as_bool(value)
            return kind(value)
        except (TypeError, ValueError):
            return default

    def set(self, key: str, value: Any) -> None:
        self.qs.setValue(key, value)

    def get_json(self, key: str, default: Any = None) -> Any:
        raw = self.qs.value(key)
        if not raw:
            return default
        try:
            return json.loads(raw)
        except (TypeError, ValueError):
            return default

    def set_json(self, key: str, value: Any) -> None:
        self.qs.setValue(key, json.dumps(value))

    # specific ----------------------------------------------------------------------------
    @property
    def theme(self) -> str:
        theme = self.get("theme", "dark", str)
        return theme if theme in ("dark", "light") else "dark"

    @theme.setter
    def theme(self, value: str) -> None:
        self.set("theme", value)

    def recent_files(self) -> list[str]:
        files = self.get_json("recent_files", [])
        return [f for f in files if isinstance(f, str)][:MAX_RECENT_FILES]

    def add_recent_file(self, path: str) -> list[str]:
        files = [path] + [f for f in self.recent_files() if f != path]
        files = files[:MAX_RECENT_FILES]
        self.set_json("recent_files", files)
        return files

    def remove_recent_file(self, path: str) -> None:
        self.set_json("recent_files", [f for f in self.recent_files() if f != path])

    def clear_recent_files(self) -> None:
        self.set_json("recent_files", [])

    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        return self.qs.value("window/geometry"), self.qs.value("window/state")

    def save_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self.qs.setValue("window/geometry", geometry)
        self.qs.setValue("window/state", state)

    def sync(self) -> None:
        self.qs.sync()
