"""The QThread adapter: events become signals with plain payloads, slots run in the GUI thread,
cancel answers at once, errors become the right kind of failure."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import numpy as np
import pytest
import shiboken6
from PySide6.QtCore import QObject, QThread
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QApplication, QWidget

from engine.errors import EngineError, InputError, OutOfMemory
from engine.events import FinishedEvent, LogEvent, PlanEvent, ProgressEvent, StageEvent, WindowFinished, WindowStarted
from engine.geometry import Box
from gui.run.worker import RestoreRun, live_threads, stop_live_threads
from window_helpers import StuckRestore

SIGNALS = ("stage", "plan", "window_started", "window_finished", "progress", "log", "finished", "failed", "ended")
BOXES = (Box(0, 0, 32, 32), Box(0, 16, 32, 32), Box(16, 0, 32, 32))


def fake_restore(boxes=BOXES, delay=0.0, record=None):
    """A stand-in for engine.pipeline.restore: a plan, every window, progress, a result."""

    def restore(request, cancel):
        if record is not None:
            record["thread"] = threading.get_ident()
        yield StageEvent("restoring", 0, 1)
        yield PlanEvent((48, 48), tuple(boxes), tuple(range(len(boxes))))
        for i, box in enumerate(boxes):
            yield WindowStarted(i, box)
            if delay and cancel.wait(delay):
                return
            yield ProgressEvent(i + 1, len(boxes), 0.1 * (i + 1), 0.1 * (len(boxes) - i - 1),
                                preview=lambda: [np.zeros((2, 2, 3), np.float32)])
            yield WindowFinished(i, box, np.full((box.height, box.width, 3), 0.1 * (i + 1), np.float32))
        yield LogEvent("info", "done")
        yield FinishedEvent(np.full((48, 48, 3), 0.5, np.float32), {"seconds": 0.3})

    return restore


class Recorder(QObject):
    """Connects to every signal of a run and records (name, args, thread the slot ran in)."""

    def __init__(self, run: RestoreRun):
        super().__init__()
        self.calls: list[tuple[str, tuple, QThread]] = []
        for name in SIGNALS:
            getattr(run, name).connect(lambda *args, n=name: self.calls.append((n, args, QThread.currentThread())))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def args(self, name: str) -> list[tuple]:
        return [c[1] for c in self.calls if c[0] == name]


def assert_plain(value) -> None:
    """No Qt GUI objects anywhere in a payload."""
    assert not isinstance(value, (QImage, QPixmap, QWidget, QObject)), type(value)
    if isinstance(value, dict):
        for v in value.values():
            assert_plain(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            assert_plain(v)
    else:
        assert isinstance(value, (int, float, str, bool, np.ndarray, type(None))), type(value)


def run_to_end(qtbot, run: RestoreRun, timeout=10000) -> None:
    with qtbot.waitSignal(run.thread.finished, timeout=timeout):
        run.start()


def test_events_become_signals_in_order_with_plain_payloads_in_the_gui_thread(qtbot):
    record = {}
    run = RestoreRun(request=object(), restore=fake_restore(record=record))
    rec = Recorder(run)
    run_to_end(qtbot, run)
    names = rec.names()
    assert names[:2] == ["stage", "plan"] and names[-2:] == ["finished", "ended"]
    assert names.count("window_finished") == len(BOXES) and names.count("window_started") == len(BOXES)
    assert rec.args("ended") == [("finished",)]
    gui_thread = QApplication.instance().thread()
    assert all(thread is gui_thread for _n, _a, thread in rec.calls), "slots must run in the GUI thread"
    assert record["thread"] != threading.get_ident(), "the engine must run in the worker thread"
    for _name, args, _t in rec.calls:
        assert_plain(args)
    plan = rec.args("plan")[0][0]
    assert plan["boxes"] == [tuple(b) for b in BOXES] and plan["levels"] == [0, 1, 2]
    index, box, pixels, scale, stage = rec.args("window_finished")[1]
    assert index == 1 and box == tuple(BOXES[1]) and pixels.shape == (32, 32, 3) and scale == 1.0
    assert rec.args("progress")[-1] == (3, 3, pytest.approx(0.3), pytest.approx(0.0))


def test_cancel_answers_at_once_and_stops_the_thread(qtbot):
    run = RestoreRun(request=object(), restore=fake_restore(delay=0.5))
    rec = Recorder(run)
    with qtbot.waitSignal(run.window_started, timeout=5000):
        run.start()
    t0 = time.perf_counter()
    run.cancel()
    assert rec.args("ended") == [("cancelled",)], "the UI is told synchronously"
    assert not run.active
    assert run.wait(3000), "the worker thread stops soon after"
    assert time.perf_counter() - t0 < 1.0
    qtbot.wait(50)
    assert "finished" not in rec.names() and rec.names().count("ended") == 1


@pytest.mark.parametrize("error, kind", [
    (InputError("the mask is empty: paint the areas to fill"), "error"),
    (OutOfMemory("CUDA out of memory even at batch 1"), "oom"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom"),
    (ZeroDivisionError("oops"), "internal"),
])
def test_errors_become_failed_signals(qtbot, error, kind):
    def restore(request, cancel):
        yield StageEvent("loading model")
        raise error

    run = RestoreRun(request=object(), restore=restore)
    rec = Recorder(run)
    run_to_end(qtbot, run)
    (got_kind, message), = rec.args("failed")
    assert got_kind == kind
    assert str(error) in message
    assert rec.args("ended") == [("failed",)]
    assert isinstance(error, EngineError) or kind != "error"


def test_generator_ending_without_result_is_a_failure(qtbot):
    def restore(request, cancel):
        yield StageEvent("restoring")

    run = RestoreRun(request=object(), restore=restore)
    rec = Recorder(run)
    run_to_end(qtbot, run)
    assert rec.args("ended") == [("failed",)] and rec.args("failed")[0][0] == "internal"


def test_running_windows_preview_is_throttled_and_matches_the_batch(qtbot):
    """In-step previews: the running windows' current x̂0, at most once per interval, each
    paired with its own box; nothing is copied while no preview is due."""
    from gui.run.worker import RestoreWorker

    boxes = (Box(0, 0, 8, 8), Box(0, 8, 8, 8))
    calls = []

    def preview():
        calls.append(1)
        return [np.full((8, 8, 3), 0.1 * (k + 1), np.float32) for k in range(len(boxes))]

    def restore(request, cancel):
        yield PlanEvent((8, 16), boxes, (0, 0), scale_to_output=2.0)
        for i, b in enumerate(boxes):
            yield WindowStarted(i, b)
        for step in range(5):
            yield ProgressEvent(step + 1, 5, 0.0, None, preview=preview)
        for i, b in enumerate(boxes):
            yield WindowFinished(i, b, np.zeros((8, 8, 3), np.float32))
        yield ProgressEvent(6, 6, 0.0, None, preview=preview)  # nothing running: no preview
        yield FinishedEvent(np.zeros((8, 16, 3), np.float32))

    seen = []
    worker = RestoreWorker(None, threading.Event(), restore, preview_interval=0.0)
    worker.window_preview.connect(lambda i, box, px, scale: seen.append((i, box, float(px.mean()), scale)))
    worker.run()
    assert len(calls) == 5 and len(seen) == 10
    assert seen[:2] == [(0, (0, 0, 8, 8), pytest.approx(0.1), 2.0), (1, (0, 8, 8, 8), pytest.approx(0.2), 2.0)]

    calls.clear()
    slow = RestoreWorker(None, threading.Event(), restore, preview_interval=3600.0)
    slow.run()
    assert calls == [], "no preview is due within the interval: nothing is copied"



def test_a_worker_thread_outlives_its_deleted_run_until_it_finishes(qtbot):
    stuck, owner = StuckRestore(), QObject()
    run = RestoreRun(request=object(), restore=stuck, parent=owner)
    run.start()
    assert stuck.entered.wait(3)
    run.cancel()
    thread = weakref.ref(run.thread)
    del run
    shiboken6.delete(owner)  # the window and its run controller are gone
    gc.collect()
    assert thread() is not None and thread().isRunning(), "not destroyed while running (that aborts)"
    assert thread() in live_threads()
    stuck.release.set()
    qtbot.waitUntil(lambda: not live_threads(), timeout=3000)


def test_stop_live_threads_cancels_and_waits_at_exit():
    stuck = StuckRestore()
    run = RestoreRun(request=object(), restore=stuck)
    run.start()
    assert stuck.entered.wait(3)
    threading.Timer(0.2, stuck.release.set).start()
    stop_live_threads()
    assert run.cancel_event.is_set() and run.thread.isFinished() and not live_threads()
