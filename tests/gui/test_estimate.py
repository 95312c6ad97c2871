"""The time estimate holds: after a run has measured this computer, the estimate of the next run
(another photo size, another number of steps) is within a factor of 1.5 of how long that run
takes. Real engine, test-tiny; a loose bound, no assertion on absolute speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.events import PlanEvent, ProgressEvent, StageEvent, WindowFinished, WindowStarted
from gui.run.plan import TaskSettings
from gui.run.speed import SpeedKey
from window_helpers import BOXES, open_photo, write_photo

pytest.importorskip("engine.pipeline")


def settings(steps: int) -> TaskSettings:
    return TaskSettings(colorize=True, model="test-tiny", steps=steps, window=64, overlap=32, hir="off",
                        device="cpu", quality="Custom")


def run(qtbot, window, s: TaskSettings) -> float:
    """Restore with ``s`` and wait for the result; the seconds it took, as the user waits."""
    window.panel.set_settings(s)
    started = time.monotonic()
    assert window.restore()
    qtbot.waitUntil(lambda: window.document.preview is not None and not window.runs.running, timeout=120_000)
    took = time.monotonic() - started
    window.runs.discard()
    return took


@pytest.mark.slow
def test_the_estimate_before_a_run_is_within_half_again_of_its_time(make_window, make_photo, tmp_path, qtbot):
    window = make_window()
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    write_photo(small, make_photo(96, 96))  # 2 × 2 windows
    write_photo(large, make_photo(128, 160, seed=1))  # 3 × 4 windows
    assert open_photo(qtbot, window, small)
    run(qtbot, window, settings(2))  # the first run in this process also warms torch up
    run(qtbot, window, settings(2))
    measured = window.runs.speeds.get(SpeedKey.of(settings(2), "cpu"))
    assert measured is not None and measured.seconds_per_call > 0

    assert open_photo(qtbot, window, large)
    window.panel.set_settings(settings(5))
    estimate = window.panel.estimate()
    assert estimate.measured and estimate.windows == 12 and estimate.calls == 60
    assert estimate.calls > 4 * 2 * 5, "a prediction for a larger run, not a replay of the measured one"
    assert window.panel.estimate_label.text().startswith("Estimated time")
    took = run(qtbot, window, settings(5))
    assert 1 / 1.5 <= took / estimate.seconds <= 1.5, f"estimated {estimate.seconds:.2f} s, took {took:.2f} s"


def paused_restore(request, cancel):
    """Two windows: the first finished after 3 s of sampling, then a wait for Cancel."""
    yield StageEvent("restoring", 2, 3)
    yield PlanEvent((64, 64), BOXES[:2], (0, 1))
    yield WindowStarted(0, BOXES[0])
    yield WindowFinished(0, BOXES[0], np.full((32, 32, 3), 0.5, np.float32))
    yield ProgressEvent(10, 40, 3.0, 150.0)
    cancel.wait(10)


def test_the_live_time_left_replaces_the_estimate_while_a_run_goes(window_with_photo, qtbot):
    window = window_with_photo(paused_restore)
    window.panel.set_settings(TaskSettings(colorize=True))
    assert window.panel.estimate_label.text().startswith("Estimated time")
    assert window.restore()
    qtbot.waitUntil(lambda: "left" in window.panel.estimate_label.text(), timeout=5000)
    assert window.panel.estimate_label.text() == "About 2 min left (10 of 40 window-steps, 0:03 so far)"
    window.runs.cancel()
    assert window.runs.wait_idle()
    qtbot.waitUntil(lambda: window.panel.estimate_label.text().startswith("Estimated time"), timeout=5000)
