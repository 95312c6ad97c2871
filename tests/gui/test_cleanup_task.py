"""The app's "Clean up unknown damage" task (two stages, engine/cleanup): the panel's picker and
fidelity slider, the request and estimate it makes, and whole runs through the window's controller
with the real engine (a random-weight spandrel network, then test-tiny): stage 1 arrives first,
Cancel and Continue work across both stages, and stage-1 tiles fill no marks."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.events import PlanEvent, WindowFinished, WindowStarted
from gui.panels.cleanup_box import GET_MORE, CleanupChoice
from gui.run import plan as run_plan
from gui.run.plan import TaskSettings
from gui.run.worker import engine_restore
from window_helpers import open_photo, paint, start_run

pytest.importorskip("engine.pipeline")
from tests.cleanup_helpers import compact, save  # noqa: E402

from conftest import SHARED_DATA  # noqa: E402

CHOICE = CleanupChoice("random-cleanup", "Random clean-up (test)", "random weights", 1)


def settings(**changes) -> TaskSettings:
    base = dict(cleanup=True, cleanup_model="random_cleanup", fidelity=0.5, model="test-tiny", steps=1, window=64,
                overlap=32, hir="off", device="cpu", quality="Custom")
    return TaskSettings(**{**base, **changes})


@pytest.fixture
def installed_cleanup(tmp_path):
    """A random-weight spandrel network imported into the (per-test) models folder."""
    from engine.models import store

    return store.import_model_file(save(compact(1), tmp_path / "random_cleanup.pth")).model_id


def test_the_task_has_a_network_picker_a_fidelity_slider_and_replaces_denoise_and_deblur(qtbot):
    from gui.panels.task_panel import TaskPanel

    panel = TaskPanel()
    qtbot.addWidget(panel)
    panel.set_context((48, 64), False)
    panel.set_settings(TaskSettings(cleanup=True, denoise=True, deblur=True, model="test-tiny"))
    assert "Clean up needs a clean-up network: choose Get more…" in " ".join(panel.problems)
    assert not panel.denoise.isEnabled() and not panel.deblur.isEnabled()
    panel.set_cleanup_models([CHOICE])
    box = panel.cleanup
    assert [box.model.itemText(i) for i in range(box.model.count())] == [CHOICE.label, "Get more…"]
    assert panel.settings().cleanup_model == "random-cleanup" and not panel.problems
    box.fidelity.setValue(80)
    box.fast.setChecked(True)
    s = panel.settings()
    assert (s.fidelity, s.warm_start, s.cleanup_scale) == (0.8, True, 1)
    again = TaskSettings.from_dict(s.to_dict())  # the settings persist
    assert (again.cleanup, again.cleanup_model, again.fidelity, again.warm_start) == (True, "random-cleanup", 0.8, True)
    with qtbot.waitSignal(panel.open_models, timeout=1000):
        box.model.activated.emit(box.model.findData(GET_MORE))
    assert panel.settings().cleanup_model == "random-cleanup"  # "Get more…" is not a choice
    box.enabled.setChecked(False)
    assert panel.denoise.isEnabled() and not box.fidelity.isEnabled()


def test_the_request_and_the_estimate_count_stage_1(photo):
    s = settings(denoise=True, deblur=True, cleanup_model="random-cleanup", warm_start=True)
    request = run_plan.build_request(s, photo, None)
    assert (request.cleanup, request.fidelity, request.warm_start) == ("random-cleanup", 0.5, True)
    assert request.tasks.noise == 0 and request.tasks.deblur is None  # the network does those
    from gui.run.cleanup_plan import stage1_seconds

    estimate, stage1 = run_plan.estimate_run(s, (2000, 3000), "cpu"), stage1_seconds(s, (2000, 3000), "cpu")
    per_call = run_plan.seconds_per_call("cpu", "test-tiny", 64, "auto")
    assert estimate.windows > 0 and stage1 > 0  # fidelity 0.5: stage 2 pools by 4, even with no other task
    assert estimate.seconds == pytest.approx(stage1 + estimate.calls * per_call)
    only_stage1 = run_plan.estimate_run(settings(fidelity=1.0), (2000, 3000), "cpu")
    assert only_stage1.windows == 0 and only_stage1.seconds > 0  # fidelity 1: stage 2 is not run


class Runs:
    """The engine, recording each run's events; ``stop_at`` cancels a run once a window of that
    stage starts (then waits for the window's Cancel to arrive)."""

    def __init__(self, *stops: str):
        self.stops, self.runs = list(stops), []

    def __call__(self, request, cancel: threading.Event):
        stop = self.stops.pop(0) if self.stops else ""
        events: list = []
        self.runs.append(events)
        for event in engine_restore(request, cancel):
            events.append(event)
            yield event
            if stop and isinstance(event, WindowStarted) and event.stage == stop:
                cancel.wait(60)
                stop = ""

    def started(self, run: int, stage: str) -> bool:
        return len(self.runs) > run and any(isinstance(e, WindowStarted) and e.stage == stage for e in self.runs[run])

    def stages(self, run: int) -> list[str]:
        return [e.stage for e in self.runs[run] if isinstance(e, PlanEvent)]

    def finished(self, run: int, stage: str, resumed: bool) -> list[int]:
        return [e.index for e in self.runs[run] if isinstance(e, WindowFinished) and e.stage == stage
                and e.resumed == resumed]


@pytest.mark.slow
def test_an_old_photo_in_two_stages_through_the_app(make_window, qtbot, installed_cleanup):
    photos = sorted((SHARED_DATA / "old_photos").glob("*.jpg")) if (SHARED_DATA / "old_photos").is_dir() else []
    if not photos:
        pytest.skip("../shared/data/old_photos is not here")
    source = min(photos, key=lambda p: p.stat().st_size)
    runs = Runs()
    window = make_window(runs)
    assert open_photo(qtbot, window, source)
    window.refresh_models()
    assert window.panel.cleanup.model.findData(installed_cleanup) >= 0, "installed networks are listed"
    start_run(qtbot, window, settings(cleanup_model=installed_cleanup, window=128, overlap=32))
    qtbot.waitUntil(lambda: not window.runs.running, timeout=300000)
    assert window.runs.last_error is None and window.document.preview_finished
    assert runs.stages(0) == ["cleanup", "restore"], "stage 1 arrives first, then stage 2's windows"
    log = window.log_panel.plain_text()
    assert "Stage 1, the clean-up network:" in log and "clean up with random_cleanup (fidelity 0.50)" in log
    assert window.document.preview.shape == window.document.image.shape
    report = runs.runs[0][-1].report
    assert report["cleanup"]["model"] == installed_cleanup and report["soft_observation"]["k"] == 4


def test_cancel_in_stage_2_and_continue_reuses_stage_1(window_with_photo, qtbot, installed_cleanup):
    runs = Runs("restore")
    window = window_with_photo(runs, size=(96, 96))
    window.refresh_models()
    start_run(qtbot, window, settings(cleanup_model=installed_cleanup))
    qtbot.waitUntil(lambda: runs.started(0, "restore"), timeout=60000)
    window.runs.cancel()
    assert window.runs.wait_idle(60000)
    assert window.pending_question().discard == "Continue", "the finished stage 1 is offered to continue"

    start_run(qtbot, window, settings(cleanup_model=installed_cleanup))
    qtbot.waitUntil(lambda: not window.runs.running, timeout=60000)
    assert window.runs.last_error is None and window.document.preview_finished
    assert runs.finished(1, "cleanup", resumed=True) == [0] and not runs.finished(1, "cleanup", resumed=False)
    assert runs.runs[1][-1].report["cleanup"]["tiles_computed"] == 0
    assert "stage 1 was finished by an earlier run" in window.log_panel.plain_text()


def test_a_run_cancelled_after_stage_1_has_filled_no_marks(window_with_photo, qtbot, installed_cleanup):
    runs = Runs("restore")
    window = window_with_photo(runs, size=(96, 96))
    window.refresh_models()
    paint(qtbot, window, [(20, 20), (60, 20)])
    marks = window.document.engine_mask().copy()
    start_run(qtbot, window, settings(cleanup_model=installed_cleanup, inpaint=True))
    qtbot.waitUntil(lambda: runs.started(0, "restore"), timeout=60000)
    window.runs.cancel()
    assert window.runs.wait_idle(60000)
    assert window.document.preview is not None, "stage 1's tiles are on the preview"
    window.runs.apply()
    np.testing.assert_array_equal(window.document.engine_mask(), marks)  # stage 1 fills nothing: all marks stay


def test_the_models_dialog_imports_a_cleanup_network_and_shows_what_it_is(qtbot, tmp_path):
    from gui.models.dialog import ModelsDialog

    dialog = ModelsDialog(mirror="")
    qtbot.addWidget(dialog)
    dialog.select("scunet-real-psnr")
    assert "Network: SCUNet, ×1." in dialog.details.text() and "Apache-2.0" in dialog.details.text()
    dialog.import_file(str(save(compact(2), tmp_path / "my_cleaner.pth")))
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=15_000)
    assert dialog.status_of("my_cleaner") == "installed", dialog.last_error
    assert ("It is a clean-up network (RealESRGAN Compact, ×2; code licence BSD-3-Clause): choose it under Clean up "
            "unknown damage") in dialog.message_label.text()
    assert "Network: RealESRGAN Compact, ×2." in dialog.details.text()
