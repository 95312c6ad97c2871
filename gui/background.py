"""Slow file work (reading a checkpoint, hashing, downloading) off the GUI thread.

A :class:`BackgroundTask` runs ``work(progress, cancel)`` once in a thread of its own and reports
the outcome through its signals, in the GUI thread, with plain data only. ``cancel`` is a
``threading.Event`` the work may check; a torch.load of a 2 GB file cannot be interrupted, so the
thread has no Qt parent and :func:`gui.run.worker.keep_alive` keeps it until it ends: closing a window
in the middle neither blocks the GUI nor destroys a running QThread (which would abort the process).
After :meth:`BackgroundTask.discard` nothing the work reports reaches the GUI: a stale result
(of a file the user has since replaced by another, or of a closed window) never wins.
A task started with ``busy=True`` shows the busy cursor until its outcome is delivered or it is
discarded. The work is let go as soon as it has run, with the data it holds (a scan being saved).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from gui.dialogs import busy_cursor
from gui.run.worker import keep_alive

#: work(progress, cancel) -> result; ``progress`` sends any plain object to the GUI thread
Work = Callable[[Callable[[Any], None], threading.Event], Any]


class _Worker(QObject):
    progress = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    done = Signal()  # always last

    def __init__(self, work: Work, cancel: threading.Event):
        super().__init__()
        self.work, self.cancel = work, cancel

    @Slot()
    def run(self) -> None:
        from engine.errors import Cancelled, EngineError

        work, self.work = self.work, None  # what it holds is freed once it has run
        try:
            result = work(self.progress.emit, self.cancel)
        except Cancelled:
            self.cancelled.emit()
        except EngineError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - shown to the user rather than lost in a thread
            self.failed.emit(f"unexpected error: {type(exc).__name__}: {exc}")
        else:
            self.succeeded.emit(result)
        finally:
            self.done.emit()


class BackgroundTask(QObject):
    """One call of ``work`` in a worker thread. Exactly one of succeeded / failed / cancelled is
    emitted (in the GUI thread), unless the task was discarded first."""

    progress = Signal(object)
    succeeded = Signal(object)  # whatever work returned
    failed = Signal(str)  # a message fit for the user
    cancelled = Signal()

    def __init__(self, work: Work, parent: Optional[QObject] = None, busy: bool = False):
        super().__init__(parent)
        self.busy = busy  # the busy cursor while it runs
        self._cursor = contextlib.ExitStack()
        self.cancel_event = threading.Event()
        self.thread = QThread()  # no parent: it may outlive the window that started it
        self.thread.setObjectName("background-task")
        self._worker = _Worker(work, self.cancel_event)
        self._worker.moveToThread(self.thread)
        self.thread.started.connect(self._worker.run)
        self._worker.done.connect(self.thread.quit, Qt.DirectConnection)
        # bound methods of this GUI-thread object: queued into the GUI thread
        self._worker.progress.connect(self._on_progress)
        self._worker.succeeded.connect(self._on_succeeded)
        self._worker.failed.connect(self._on_failed)
        self._worker.cancelled.connect(self._on_cancelled)
        self.active = False  # True from start() until the outcome is delivered or the task discarded

    def start(self) -> "BackgroundTask":
        self.active = True
        if self.busy:
            self._cursor.enter_context(busy_cursor(background=True))
        keep_alive(self.thread, self._worker, self.cancel_event)
        self.thread.start()
        return self

    def cancel(self) -> None:
        """Ask the work to stop; its outcome (often ``cancelled``) is still reported."""
        self.cancel_event.set()

    def discard(self) -> None:
        """Ask the work to stop and drop everything it reports from now on."""
        self.cancel_event.set()
        self._end()

    def _end(self) -> None:
        self.active = False
        self._cursor.close()  # the busy cursor, once

    @Slot(object)
    def _on_progress(self, value: Any) -> None:
        if self.active:
            self.progress.emit(value)

    def _deliver(self, signal, *args) -> None:
        if self.active:
            self._end()
            signal.emit(*args)

    @Slot(object)
    def _on_succeeded(self, result: Any) -> None:
        self._deliver(self.succeeded, result)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._deliver(self.failed, message)

    @Slot()
    def _on_cancelled(self) -> None:
        self._deliver(self.cancelled)
