"""The QThread adapter around ``engine.pipeline.restore``: engine events in, Qt signals out.

The worker iterates the generator in its own thread and emits one signal per event type with
plain Python / numpy payloads (never QImage, QPixmap or widgets: those are made in the GUI
thread). Cancel sets a ``threading.Event`` the engine checks before each denoiser call; the
:class:`RestoreRun` reports "cancelled" to the GUI at once and lets the thread wind down.

A denoiser call cannot be interrupted and may take many seconds on a CPU, so a worker thread can
outlive its run, its window, even the event loop. A QThread object destroyed while its thread
runs aborts the process; :func:`keep_alive` keeps the thread and worker objects referenced until
the thread has finished, and at interpreter exit :func:`stop_live_threads` waits for them.

Python references are the only owner of these objects: nothing calls ``deleteLater`` on a worker
thread or its worker. (A deferred delete and the slot that lets the registry go are two separate
posted events; when the app quits between them, Qt still runs the deferred deletes of the last
pass, and the registry was left holding a deleted thread: the atexit traceback of issue 16.)
"""

from __future__ import annotations

import atexit
import functools
import threading
import time
import traceback
import weakref
from typing import Any, Callable, Iterator, Optional

import shiboken6
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

#: restore(request, cancel) -> iterator of engine events
RestoreFunction = Callable[[Any, threading.Event], Iterator[Any]]


#: Worker threads still running -> (their worker object, cancel token).
_LIVE: dict[QThread, tuple[QObject, threading.Event]] = {}


def keep_alive(thread: QThread, worker: QObject, cancel: threading.Event) -> None:
    """Keep ``thread`` and ``worker`` referenced until the thread has finished (call before start)."""
    _LIVE[thread] = (worker, cancel)
    thread.finished.connect(functools.partial(_release, weakref.ref(thread)))


def _release(ref: "weakref.ref[QThread]") -> None:
    thread = ref()
    if thread is not None:
        thread.wait()  # finished is emitted just before the thread ends
        _LIVE.pop(thread, None)


def live_threads() -> list[QThread]:
    return list(_LIVE)


@atexit.register
def stop_live_threads() -> None:
    """Cancel every worker still running and wait for it: at most one denoiser call each. All are
    cancelled first, so they stop together; one that cannot be waited for does not keep the others
    from being waited for (a QThread destroyed while it runs aborts the process)."""
    live = list(_LIVE.items())
    for _thread, (_worker, cancel) in live:
        cancel.set()
    for thread, _ in live:
        if shiboken6.isValid(thread):
            thread.wait()
    _LIVE.clear()


def engine_restore(request: Any, cancel: threading.Event) -> Iterator[Any]:
    """``engine.pipeline.restore``, imported when a run starts (it imports torch)."""
    from engine.pipeline import restore

    return restore(request, cancel)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device / host out-of-memory error (engine's or torch's)."""
    try:
        from engine.errors import OutOfMemory

        if isinstance(exc, OutOfMemory):
            return True
    except ImportError:  # pragma: no cover
        pass
    if type(exc).__name__ in ("OutOfMemoryError", "OutOfMemory") or isinstance(exc, MemoryError):
        return True
    return "out of memory" in str(exc).lower()


class RestoreWorker(QObject):
    """Lives in a worker thread; :meth:`run` drains ``restore(request, cancel)``.

    Signals carry plain data: boxes are ``(top, left, height, width)`` tuples of ints, pixels are
    numpy float32 (h, w, 3) in [0, 1].
    """

    stage = Signal(str, int, int)  # name, index, total
    plan = Signal(object)  # dict(output_size, boxes, levels, stage, scale_to_output)
    window_started = Signal(int, object, str)  # index, box, stage
    window_finished = Signal(int, object, object, float, str)  # index, box, pixels, scale_to_output, stage
    #: the current x̂0 of a running window (throttled): index, box, pixels, scale_to_output
    window_preview = Signal(int, object, object, float)
    progress = Signal(int, int, float, object)  # done, total, elapsed s, eta s or None
    log = Signal(str, str)  # level, message
    finished = Signal(object, object)  # result (H, W, 3) float32, report dict
    failed = Signal(str, str)  # kind ("error" | "oom" | "internal"), message
    cancelled = Signal()
    done = Signal()  # always the last signal of a run

    #: Seconds between in-step previews: each one copies the running windows to the host.
    PREVIEW_INTERVAL = 1.0

    def __init__(self, request: Any, cancel: threading.Event, restore: Optional[RestoreFunction] = None,
                 preview_interval: Optional[float] = None):
        super().__init__()
        self.request = request
        self.cancel = cancel
        self._restore = restore
        self.preview_interval = self.PREVIEW_INTERVAL if preview_interval is None else preview_interval
        self._running: list[tuple[int, tuple]] = []  # (index, box) of the batch being solved
        self._stage_scale = 1.0
        self._last_preview = time.monotonic()

    @Slot()
    def run(self) -> None:
        request, self.request = self.request, None  # the photo is not kept once the run has ended
        try:
            restore = self._restore or engine_restore
            for event in restore(request, self.cancel):
                self._emit(event)
                if self.cancel.is_set():
                    break
            if self.cancel.is_set():
                self.cancelled.emit()
        except Exception as exc:  # noqa: BLE001 - everything becomes a signal
            self._fail(exc)
        finally:
            self.done.emit()

    def _fail(self, exc: Exception) -> None:
        name = type(exc).__name__
        if name == "Cancelled" or self.cancel.is_set():
            self.cancelled.emit()
            return
        if is_out_of_memory(exc):
            self.failed.emit("oom", str(exc))
            return
        try:
            from engine.errors import EngineError
        except ImportError:  # pragma: no cover
            EngineError = ()  # type: ignore[assignment]
        if EngineError and isinstance(exc, EngineError):
            self.failed.emit("error", str(exc))
        else:
            details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.failed.emit("internal", f"{name}: {exc}\n\n{details}")

    def _emit(self, event: Any) -> None:
        kind = type(event).__name__
        if kind == "StageEvent":
            self.stage.emit(event.name, int(event.index), int(event.total))
        elif kind == "PlanEvent":
            self.plan.emit(
                {
                    "output_size": tuple(int(v) for v in event.output_size),
                    "boxes": [tuple(int(v) for v in b) for b in event.boxes],
                    "levels": [int(v) for v in event.levels],
                    "stage": str(event.stage),
                    "scale_to_output": float(event.scale_to_output),
                    "tiles": bool(event.tiles),
                }
            )
            self._stage_scale = float(event.scale_to_output)
        elif kind == "WindowStarted":
            box = tuple(int(v) for v in event.box)
            self._running.append((int(event.index), box))
            self.window_started.emit(int(event.index), box, str(event.stage))
        elif kind == "WindowFinished":
            self._running = [r for r in self._running if r[0] != int(event.index)]
            self.window_finished.emit(
                int(event.index),
                tuple(int(v) for v in event.box),
                event.pixels,
                float(getattr(event, "scale_to_output", 1.0)),
                str(event.stage),
            )
        elif kind == "ProgressEvent":
            eta = None if event.eta is None else float(event.eta)
            self.progress.emit(int(event.done), int(event.total), float(event.elapsed), eta)
            self._maybe_preview(event)
        elif kind == "LogEvent":
            self.log.emit(str(event.level), str(event.message))
        elif kind == "FinishedEvent":
            self.finished.emit(event.result, dict(event.report or {}))


    def _maybe_preview(self, event: Any) -> None:
        """Show the running windows' current estimate now and then (never on every step)."""
        now = time.monotonic()
        if event.preview is None or not self._running or now - self._last_preview < self.preview_interval:
            return
        self._last_preview = now
        for (index, box), pixels in zip(self._running, event.preview()):
            self.window_preview.emit(index, box, pixels, self._stage_scale)


class RestoreRun(QObject):
    """One run: owns the thread, the worker and the cancel token; re-emits the worker's signals.

    After :meth:`cancel`, :attr:`active` is False at once and ``ended("cancelled")`` is emitted
    right away; late events of the cancelled run (the engine stops within one denoiser call)
    are dropped.
    """

    stage = Signal(str, int, int)
    plan = Signal(object)
    window_started = Signal(int, object, str)
    window_finished = Signal(int, object, object, float, str)
    window_preview = Signal(int, object, object, float)
    progress = Signal(int, int, float, object)
    log = Signal(str, str)
    finished = Signal(object, object)
    failed = Signal(str, str)
    ended = Signal(str)  # "finished" | "failed" | "cancelled": the UI can return to ready
    #: this run, once its thread has ended (always after ``ended``); it holds no thread any more
    stopped = Signal(object)

    def __init__(self, request: Any, restore: Optional[RestoreFunction] = None, parent: QObject | None = None):
        super().__init__(parent)
        self.cancel_event = threading.Event()
        self.thread = QThread()
        self.thread.setObjectName("restore-worker")
        self.worker = RestoreWorker(request, self.cancel_event, restore)
        self.worker.moveToThread(self.thread)
        self.active = False
        self._outcome = ""
        self.thread.started.connect(self.worker.run)
        w = self.worker
        for name in ("stage", "plan", "window_started", "window_finished", "window_preview", "progress", "log"):
            getattr(w, name).connect(self._forwarder(name))
        w.finished.connect(self._on_finished)
        w.failed.connect(self._on_failed)
        w.cancelled.connect(self._on_cancelled)
        w.done.connect(self.thread.quit, Qt.DirectConnection)  # quit() is thread-safe; no GUI round trip
        self.thread.finished.connect(self._on_thread_finished)

    def _forwarder(self, name: str):
        signal = getattr(self, name)

        def forward(*args):
            if self.active:
                signal.emit(*args)

        return forward

    def start(self) -> None:
        self.active = True
        keep_alive(self.thread, self.worker, self.cancel_event)
        self.thread.start()

    def cancel(self) -> None:
        """Ask the engine to stop; the UI is told at once (``ended("cancelled")``)."""
        self.cancel_event.set()
        self._end("cancelled")

    def is_running(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def wait(self, ms: int = 10000) -> bool:
        return self.thread is None or self.thread.wait(ms)

    def _end(self, outcome: str) -> None:
        if self.active:
            self.active = False
            self._outcome = outcome
            self.ended.emit(outcome)

    def _on_finished(self, result, report) -> None:
        if self.active:
            self.finished.emit(result, report)
            self._end("finished")

    def _on_failed(self, kind: str, message: str) -> None:
        if self.active:
            self.failed.emit(kind, message)
            self._end("failed")

    def _on_cancelled(self) -> None:
        self._end("cancelled")

    def _on_thread_finished(self) -> None:
        if self.active and not self.cancel_event.is_set():
            self.failed.emit("internal", "The engine stopped without producing a result.")
        self._end("cancelled" if self.cancel_event.is_set() else "failed")
        # the registry (keep_alive) holds the thread and worker until it has waited for the thread
        self.thread = self.worker = None
        self.stopped.emit(self)
