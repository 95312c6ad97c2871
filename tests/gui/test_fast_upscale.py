"""The fast upscale in the app: "Fast (4 steps)" under Upscale when ResShift is installed (else a link
to Models…, whose Download asks to accept its non-commercial licence), tile previews as they finish,
Cancel and Continue — with files in the official layout (random weights, tiny configuration) and
the real engine."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import engine.resshift.upscaler as upscaler_module
from engine.events import WindowFinished
from gui.run.plan import FAST_UPSCALER, TaskSettings, build_request, find_problems
from gui.run.state import state_folder
from gui.run.worker import engine_restore
from tests.resshift_helpers import write_files
from window_helpers import paint, start_run


def fast(**changes) -> TaskSettings:
    base = dict(upscale=4, fast_upscale=True, model="test-tiny", device="cpu", precision="fp32", quality="Custom",
                steps=2, window=64, overlap=32)
    return TaskSettings(**{**base, **changes})


@pytest.fixture
def installed(isolated_settings):
    write_files(isolated_settings / "models")


def test_fast_is_offered_only_when_installed_and_with_an_upscale(qtbot):
    from gui.panels.task_panel import TaskPanel

    panel = TaskPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_settings(fast())
    assert not panel.fast_upscale.isEnabled() and panel.fast_row.link.isVisible()
    assert not panel.settings().fast_upscale, "not installed: the diffusion engine upscales"
    panel.set_fast_upscaler(True)
    assert panel.fast_upscale.isEnabled() and not panel.fast_row.link.isVisible()
    assert panel.settings().fast_upscale
    panel.upscale.setCurrentIndex(panel.upscale.findData(1))
    assert not panel.fast_upscale.isEnabled() and not panel.settings().uses_fast_upscale

    request = build_request(fast(), np.zeros((8, 8, 3), np.float32), None)
    assert request.upscaler == FAST_UPSCALER and request.tasks.sr == 4
    assert build_request(fast(fast_upscale=False), np.zeros((8, 8, 3), np.float32), None).upscaler is None
    assert any("untick Deblur" in p for p in find_problems(fast(deblur=True), (8, 8), False))


def test_the_link_opens_models_at_the_fast_upscaler_and_its_licence_must_be_accepted(make_window, qtbot,
                                                                                       monkeypatch):
    window = make_window()
    assert window.panel.fast_row.link.isVisible()
    window.panel.fast_row.get_requested.emit()
    dialog = window._models_dialog
    assert dialog is not None and dialog.selected_id() == FAST_UPSCALER
    assert "Licence: S-Lab License 1.0 (non-commercial)" in dialog.details.text()
    asked = []
    monkeypatch.setattr(type(dialog), "confirm_licence", lambda self, text: asked.append(text) or False)
    dialog.download_selected()
    assert asked and "non-commercial use only" in asked[0]
    assert not dialog.is_busy() and "its licence was not accepted" in dialog.message_label.text()
    dialog.close()


class StopAfterTiles:
    """The real engine; the first run waits for Cancel after its second finished tile."""

    def __init__(self):
        self.runs: list[list] = []

    def __call__(self, request, cancel: threading.Event):
        events: list = []
        self.runs.append(events)
        stop = len(self.runs) == 1
        for event in engine_restore(request, cancel):
            events.append(event)
            yield event
            if stop and isinstance(event, WindowFinished) and sum(isinstance(e, WindowFinished) for e in events) == 2:
                cancel.wait(60)
                stop = False


def test_fast_upscale_previews_tiles_cancels_and_continues(installed, window_with_photo, qtbot, monkeypatch):
    monkeypatch.setattr(upscaler_module, "DEFAULT_TILE", 32)  # a 48×48 photo: 2 × 2 tiles of 32
    engine = StopAfterTiles()
    window = window_with_photo(engine, size=(48, 48))
    window.refresh_models()
    assert window.panel.fast_row.available and not window.panel.fast_row.link.isVisible()
    start_run(qtbot, window, fast())
    qtbot.waitUntil(lambda: window.runs.windows_finished >= 2, timeout=60000)
    preview = window.document.preview
    assert preview.shape == (192, 192, 3) and preview[:128, :128].any(), "the finished tiles are on the canvas"
    window.runs.cancel()
    assert window.runs.wait_idle(60000)
    assert (state_folder(window.document.image) / "upscale").is_dir()
    assert window.pending_question().discard == "Continue"

    start_run(qtbot, window, fast())
    qtbot.waitUntil(lambda: not window.runs.running, timeout=60000)
    assert window.runs.last_error is None and window.document.preview_finished
    second = engine.runs[1]
    assert sum(isinstance(e, WindowFinished) and e.resumed for e in second) == 2
    assert sum(isinstance(e, WindowFinished) and not e.resumed for e in second) == 2
    report = second[-1].report
    assert report["upscaler"] == FAST_UPSCALER and report["output_size"] == [192, 192]
    assert window.document.preview.shape == (192, 192, 3)
    assert "fast upscale: ResShift ×4 in 4 steps" in window.log_panel.plain_text()


def test_a_fill_cancelled_during_the_fast_upscale_fills_no_marks(installed, window_with_photo, qtbot, monkeypatch):
    """The upscale's tiles are not the fill: Apply after a Cancel in the upscale keeps every mark (scaled
    with the photo) for the next run."""
    monkeypatch.setattr(upscaler_module, "DEFAULT_TILE", 32)
    window = window_with_photo(StopAfterTiles(), size=(48, 48))
    window.refresh_models()
    paint(qtbot, window, [(10, 10), (30, 10)])
    marks = window.document.engine_mask().copy()
    start_run(qtbot, window, fast(inpaint=True))
    qtbot.waitUntil(lambda: window.runs.windows_finished >= 2, timeout=60000)
    window.runs.cancel()
    assert window.runs.wait_idle(60000)
    window.runs.apply()
    kept = window.document.engine_mask()
    assert kept.shape == (192, 192)
    np.testing.assert_array_equal(kept[::4, ::4] > 0, marks > 0)  # every mark stays, ×4 nearest-neighbour


def test_the_fast_upscale_and_a_clean_up_network_together_are_a_problem_before_restore():
    problems = find_problems(fast(cleanup=True, cleanup_model="some-network"), (48, 48), has_mask=False)
    assert any("untick Clean up unknown damage, or untick Fast" in p for p in problems)
    assert not any("Clean up" in p for p in find_problems(fast(), (48, 48), has_mask=False))


def official_spec():
    """The tile layout of the official networks (built on the meta device: no memory)."""
    import torch

    from engine.resshift.autoencoder import AutoencoderConfig, VQAutoencoder
    from engine.resshift.diffusion import ResShiftSchedule
    from engine.resshift.unet import SwinUNet, SwinUNetConfig
    from engine.resshift.upscaler import ResShiftUpscaler

    with torch.device("meta"):
        unet, autoencoder = SwinUNet(SwinUNetConfig()), VQAutoencoder(AutoencoderConfig())
    return ResShiftUpscaler(unet, autoencoder, ResShiftSchedule(), device=torch.device("meta")).spec()


def test_the_estimate_and_the_memory_check_count_the_fast_upscale_and_what_follows():
    from engine.errors import InputError
    from engine.tiling.blended import plan_tiles
    from gui.run.plan import (FAST_UPSCALE_OVERLAP, FAST_UPSCALE_TILE, check_memory, estimate_run,
                              fast_upscale_seconds, seconds_per_call)

    alone = estimate_run(fast(precision="fp32"), (100, 100), "cpu")
    assert (alone.windows, alone.calls) == (0, 0)
    rate = 0.7 * 2.2 / seconds_per_call("cpu", "adm", 256, "fp32")  # TFLOP/s: 0.7 of the ADM-256's
    work = 16 * 128 * 128 / 1e6 * 19.6 + 2 * 2048 * 128 ** 4 / 1e12  # one 128-px tile (100 px padded to 64s)
    assert alone.seconds == pytest.approx(work / rate)
    big = estimate_run(fast(precision="fp32"), (1000, 700), "cpu")
    spec = official_spec()
    assert (spec.tile, spec.overlap, spec.multiple) == (FAST_UPSCALE_TILE, FAST_UPSCALE_OVERLAP, 64)
    tiles = len(plan_tiles(1000, 700, spec))
    assert big.seconds == pytest.approx(tiles * (16 * 256 * 256 / 1e6 * 19.6 + 2 * 2048 * 256 ** 4 / 1e12) / rate)
    assert fast_upscale_seconds(fast(precision="auto"), (1000, 700), "cuda") < big.seconds / 100
    with_fill = estimate_run(fast(precision="fp32", inpaint=True), (100, 100), "cpu")
    engine_only = estimate_run(fast(precision="fp32", inpaint=True, upscale=1, fast_upscale=False), (400, 400), "cpu")
    assert (with_fill.windows, with_fill.calls) == (engine_only.windows, engine_only.calls) != (0, 0)
    assert with_fill.seconds == pytest.approx(alone.seconds + engine_only.seconds)

    image = np.zeros((10, 10, 3), np.float32)
    request = build_request(fast(), image, None)
    check_memory(request)  # small: fits
    huge = request.replace(image=np.broadcast_to(image[:1, :1], (60_000, 60_000, 3)))
    with pytest.raises(InputError, match="too large for this computer's memory"):
        check_memory(huge)
