"""The main window's file work in the background: a 10000×8000 16-bit scan takes seconds to read
and more to save as TIFF, and the window keeps working meanwhile.

One job at a time, run by a :class:`gui.background.BackgroundTask` with the busy cursor and said in
the status bar while it runs. A job can be dropped (a photo still being read when another is
opened, the window closing): nothing it reports arrives. :meth:`FileJobs.after` runs an action
(closing the window, bringing in the next photo) once the job running now has succeeded.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QStatusBar

from engine.errors import EngineError
from gui.background import BackgroundTask

#: The kinds of job: a photo or a mask being read, a result or a mask being written.
PHOTO, MASK, SAVE = "photo", "mask", "save"


def _as_file_work(work: Callable[[], Any]) -> Callable[[Any, Any], Any]:
    """``work`` for a BackgroundTask. What goes wrong with a file (missing, unreadable, a full disk)
    reaches the user in the error's own words, as it did when files were read on the UI thread."""

    def run(_progress, _cancel) -> Any:
        try:
            return work()
        except Exception as exc:  # noqa: BLE001 - OSError, PIL errors, InputError: all shown as they are
            raise EngineError(str(exc)) from exc

    return run


class FileJobs(QObject):
    changed = Signal(str)  # the kind of job now running, "" when none

    def __init__(self, status_bar: QStatusBar, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.status_bar = status_bar
        self.kind = ""  # PHOTO, MASK, SAVE or "" (none running)
        self.message = ""  # what the status bar says while it runs, e.g. "Saving scan.tif…"
        self._task: Optional[BackgroundTask] = None
        self._handlers: tuple[Callable[[Any], None], Callable[[str], None]] | None = None
        self._after: Optional[Callable[[], Any]] = None

    def start(self, kind: str, message: str, work: Callable[[], Any], succeeded: Callable[[Any], None],
              failed: Callable[[str], None]) -> None:
        """Run ``work()`` in a thread as the one job (one still running is dropped), then, in the GUI
        thread, ``succeeded(result)`` or ``failed(message)``. ``work`` must take what it needs from
        the window before (a snapshot): it runs while the user goes on working."""
        self.drop()
        self._task = BackgroundTask(_as_file_work(work), self, busy=True)
        self._task.succeeded.connect(self._on_succeeded)
        self._task.failed.connect(self._on_failed)
        self._handlers = succeeded, failed
        self.kind, self.message = kind, message
        self.status_bar.showMessage(message)
        self._task.start()
        self.changed.emit(kind)

    def after(self, action: Callable[[], Any]) -> None:
        """Run ``action()`` once the job running now has succeeded (not if it fails or is dropped)."""
        self._after = action

    def drop(self) -> None:
        """Forget the job running now, if any: nothing it reports arrives (its thread ends on its own)."""
        if self._task is not None:
            self._task.discard()
            self._end()

    def _end(self):
        handlers, after = self._handlers, self._after
        self._task.deleteLater()
        self._task = self._handlers = self._after = None
        self.kind = self.message = ""
        self.status_bar.clearMessage()
        self.changed.emit("")
        return handlers, after

    def _on_succeeded(self, result: Any) -> None:
        (succeeded, _failed), after = self._end()
        succeeded(result)
        if after is not None:
            after()

    def _on_failed(self, message: str) -> None:
        (_succeeded, failed), _after = self._end()
        failed(message)
