"""Task panel: presets, the reasons a combination cannot run, the estimate and the engine request."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gui.run import plan as run_plan
from gui.run.plan import QUALITY_PRESETS, TEST_TINY, TEST_TINY_LABEL, TaskSettings
from gui.panels.task_panel import ModelChoice, TaskPanel


@pytest.fixture
def panel(qtbot):
    widget = TaskPanel()
    qtbot.addWidget(widget)
    widget.set_devices([("cpu", "CPU")])  # the engine is loaded: the estimate shows
    widget.set_context((64, 96), has_mask=False)
    return widget


def test_no_task_disables_restore_with_the_reason(panel):
    assert not panel.restore_button.isEnabled()
    assert "Tick at least one task" in panel.restore_button.toolTip()
    assert "Tick at least one task" in panel.problem_label.text()
    panel.colorize.setChecked(True)
    assert panel.restore_button.isEnabled() and panel.problems == []


def test_fill_needs_a_mask(panel):
    panel.inpaint.setChecked(True)
    assert not panel.restore_button.isEnabled()
    assert "needs a mask: paint over the damage first" in panel.problem_label.text()
    panel.set_context((64, 96), has_mask=True)
    assert panel.restore_button.isEnabled()


def test_no_photo_is_a_problem(panel):
    panel.colorize.setChecked(True)
    panel.set_context(None, False)
    assert not panel.restore_button.isEnabled() and "Open a photo" in panel.problems[0]


def test_quality_presets_drive_steps_and_time_travel(panel):
    panel.quality.setCurrentIndex(panel.quality.findData("Best"))
    s = panel.settings()
    assert (s.steps, s.travel_length, s.travel_repeat) == tuple(QUALITY_PRESETS["Best"]) == (100, 10, 3)
    panel.quality.setCurrentIndex(panel.quality.findData("Fast"))
    assert panel.steps.value() == QUALITY_PRESETS["Fast"].steps and panel.travel_repeat.value() == 1
    panel.steps.setValue(37)
    assert panel.settings().quality == "Custom"
    panel.steps.setValue(QUALITY_PRESETS["Fast"].steps)
    assert panel.settings().quality == "Fast"


def test_test_tiny_is_always_listed_and_labelled(panel):
    panel.set_models([ModelChoice("adm-256-uncond", "ADM 256 (photos)", "General photos", 256)])
    labels = [panel.model.itemText(i) for i in range(panel.model.count())]
    assert labels[0] == "ADM 256 (photos)" and TEST_TINY_LABEL in labels and labels[-1] == "Choose file…"
    panel.model.setCurrentIndex(panel.model.findData(TEST_TINY))
    panel.colorize.setChecked(True)
    assert "random weights" in panel.note_label.text()


def test_devices_show_the_gpu_name(panel):
    panel.set_devices([("cuda:0", "NVIDIA RTX 4090 (24.0 GB)"), ("cpu", "CPU (16 threads)")])
    texts = [panel.device.itemText(i) for i in range(panel.device.count())]
    assert texts[0] == "Automatic (NVIDIA RTX 4090 (24.0 GB))" and any("CPU" in t for t in texts)


def test_estimate_counts_windows_and_schedule(panel):
    panel.colorize.setChecked(True)
    panel.quality.setCurrentIndex(panel.quality.findData("Best"))
    # one window × (100 steps + 9 jumps back of 10 steps, twice each): the engine's schedule
    assert "1 window × 280 steps on CPU" in panel.estimate_label.text()
    assert "rough guess" in panel.estimate_label.text()
    s = TaskSettings(colorize=True, upscale=4, hir="off", model="adm-256-uncond")
    small = run_plan.estimate_run(s, (64, 96), "cpu")
    big = run_plan.estimate_run(s, (640, 960), "cpu")
    assert big.windows > small.windows and big.seconds > small.seconds
    assert run_plan.estimate_run(s, (640, 960), "cuda").seconds < big.seconds
    # precision auto: bf16 speed only on a CPU that computes bf16 natively
    assert run_plan.estimate_run(s, (640, 960), "cpu", cpu_native_bf16=True).seconds < big.seconds
    assert run_plan.estimate_run(replace(s, precision="fp32"), (640, 960), "cpu", True).seconds == big.seconds


def test_estimate_follows_the_probed_cpu(panel):
    panel.set_settings(TaskSettings(colorize=True, model="adm-256-uncond", device="cpu"))
    panel.set_context((512, 512), False)
    panel.set_devices([("cpu", "CPU (8 threads)")])
    plain = panel.estimate_label.text()
    panel.set_devices([("cpu", "CPU (8 threads, native bf16)")])
    assert panel.estimate_label.text() != plain and "CPU" in panel.estimate_label.text()


def test_no_estimate_until_the_engine_is_loaded(qtbot):
    widget = TaskPanel()
    qtbot.addWidget(widget)
    widget.set_settings(TaskSettings(colorize=True))
    widget.set_context((64, 96), has_mask=False)
    assert widget.estimate_label.text() == "" and widget.estimate() is None, "it would import torch in the GUI thread"
    widget.set_devices([("cpu", "CPU")])
    assert widget.estimate_label.text().startswith("Estimated time")


@pytest.mark.parametrize("size, settings", [
    ((600, 400), dict()),  # was 14 windows (HiR on by the long side) where the run had 12 (no HiR)
    ((480, 640), dict(upscale=2)), ((2000, 3000), dict()), ((513, 257), dict(window=192, overlap=96, upscale=4)),
    ((300, 301), dict(hir="on", overlap=64)), ((64, 96), dict(quality="Best", steps=100, travel_length=10,
                                                               travel_repeat=3)),
])
def test_estimate_counts_what_the_engine_plans(size, settings):
    from engine.tiling.run_plan import plan_run

    s = TaskSettings(colorize=True, model="adm-256-uncond", **settings)
    estimate = run_plan.estimate_run(s, size, "cpu")
    planned = plan_run(run_plan.build_request(s, np.zeros(size + (3,), np.float32), None), *size)
    assert (estimate.windows, estimate.calls) == (planned.windows, planned.calls)
    if size == (600, 400):
        assert estimate.windows == 12


def test_the_estimate_uses_the_measured_speed(panel):
    from gui.run.speed import Speed, SpeedBook, SpeedKey

    panel.set_settings(TaskSettings(colorize=True, model="adm-256-uncond", window=256, overlap=128))
    panel.set_context((600, 400), False)
    book = SpeedBook()
    panel.set_speeds(book)
    assert "rough guess" in panel.estimate_label.text()
    book.remember(SpeedKey.of(panel.settings(), "cpu"), Speed(seconds_per_call=0.5, overhead=20.0))
    panel.set_context((600, 400), False)
    assert panel.estimate().seconds == pytest.approx(20.0 + 12 * 100 * 0.5)
    assert "about 10 min" in panel.estimate_label.text() and "measured here" in panel.estimate_label.text()
    panel.overlap.setValue(64)
    panel.window_size.setValue(128)  # another window: the same speed, scaled by the window's area
    assert panel.estimate().seconds == pytest.approx(20.0 + panel.estimate().calls * 0.5 / 4)


def test_result_too_large_is_refused():
    s = TaskSettings(colorize=True, upscale=8)
    problems = run_plan.find_problems(s, (4000, 6000), False)
    assert any("megapixel limit" in p for p in problems)
    assert not run_plan.find_problems(TaskSettings(colorize=True, upscale=2), (4000, 6000), False)


def test_request_carries_the_panel_settings():
    s = TaskSettings(inpaint=True, upscale=2, denoise=True, denoise_strength=50, deblur=True, deblur_sigma=1.5,
                     steps=7, seed=9, hir="off", window=64, overlap=32, device="cpu")
    image = np.zeros((32, 32, 3), np.float32)
    mask = np.zeros((32, 32), np.uint8)
    mask[:4] = 255
    req = run_plan.build_request(s, image, mask)
    assert req.tasks.inpaint and req.tasks.sr == 2 and req.tasks.deblur == "gauss:1.5"
    assert req.tasks.noise == pytest.approx(0.5 * run_plan.MAX_NOISE_SIGMA)
    assert req.steps == 7 and req.seed == 9 and req.hir is False and req.window == 64 and req.device == "cpu"
    assert req.mask is mask
    assert run_plan.build_request(TaskSettings(colorize=True), image, mask).mask is None
    default = run_plan.build_request(TaskSettings(colorize=True), image, None)
    assert default.precision == "auto" and default.compile is False
    assert run_plan.build_request(TaskSettings(colorize=True, compile=True, precision="fp16"), image, None).compile


def test_settings_round_trip_and_tolerate_junk(panel):
    s = TaskSettings(colorize=True, upscale=4, model=TEST_TINY, steps=33, eta=0.5, hir="on", precision="bf16",
                     quality="Custom", compile=True)
    panel.set_settings(s)
    assert panel.settings() == TaskSettings.from_dict(s.to_dict()) == s
    assert panel.compile.isChecked() and panel.precision.currentData() == "bf16"
    junk = TaskSettings.from_dict({"upscale": 3, "steps": "many", "unknown": 1, "quality": "Ultra"})
    assert junk.upscale == 1 and junk.steps == TaskSettings().steps and junk.quality == "Balanced"


def test_running_state_toggles_buttons(panel):
    panel.colorize.setChecked(True)
    panel.set_running(True)
    assert not panel.restore_button.isEnabled() and panel.cancel_button.isEnabled()
    panel.set_progress(3, 10, 1.0, 2.5)
    assert panel.progress.value() == 3 and "left" in panel.estimate_label.text()  # the time left, shown once
    panel.set_running(False)
    panel.set_preview_ready(True)
    assert panel.restore_button.isEnabled() and panel.apply_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_class_conditional_models_get_a_class_and_guidance(panel):
    cond = ModelChoice("adm-256-cond", "General photos, class-guided", "general photos", 256, class_cond=True)
    plain = ModelChoice("adm-256-uncond", "General photos", "general photos", 256)
    panel.set_models([cond, plain])
    panel.model.setCurrentIndex(panel.model.findData("adm-256-cond"))
    assert panel.class_label.isEnabled() and panel.guidance.isEnabled()
    panel.class_label.setValue(294)
    panel.guidance.setValue(2.5)
    request = run_plan.build_request(panel.settings(), np.zeros((8, 8, 3), np.float32), None)
    assert request.class_label == 294 and request.guidance_scale == 2.5

    panel.model.setCurrentIndex(panel.model.findData("adm-256-uncond"))
    assert not panel.class_label.isEnabled() and not panel.guidance.isEnabled()
    request = run_plan.build_request(panel.settings(), np.zeros((8, 8, 3), np.float32), None)
    assert request.class_label is None and request.guidance_scale == 0.0


def test_installed_models_mark_class_conditional_and_hide_the_classifier(tmp_path, monkeypatch):
    """Only diffusion models are offered: the classifier is a companion, not a restorer."""
    from engine.models import catalog
    from gui.main_window import MainWindow

    def state(model_id, architecture, companions=()):
        entry = catalog.ModelEntry(id=model_id, display_name=model_id, purpose="general photos", file_name="x.pt",
                                   architecture=architecture, companions=tuple(companions))
        return type("S", (), {"entry": entry})()

    monkeypatch.setattr(catalog, "installed_models", lambda *a, **k: [
        state("adm-256-cond", "adm", ["adm-256-classifier"]), state("adm-256-classifier", "adm-classifier"),
        state("celeba-hq-ddpm", "ddpm")])
    choices = {c.id: c for c in MainWindow.installed_models()}
    assert set(choices) == {"adm-256-cond", "celeba-hq-ddpm"}
    assert choices["adm-256-cond"].class_cond and not choices["celeba-hq-ddpm"].class_cond


def test_an_imported_class_conditional_model_gets_a_class(tmp_path):
    import torch

    from engine.models import store
    from engine.models.tiny import build_tiny, tiny_adm_config
    from gui.main_window import MainWindow

    for name, class_cond in (("cc.pt", True), ("plain.pt", False)):
        torch.save(build_tiny(tiny_adm_config(class_cond=class_cond)).state_dict(), tmp_path / name)
        store.import_model_file(tmp_path / name)
    choices = {c.id: c for c in MainWindow.installed_models()}
    assert choices["cc"].class_cond and not choices["plain"].class_cond


def test_colorize_on_a_colour_photo_says_its_colours_are_replaced(panel, make_photo):
    panel.colorize.setChecked(True)
    assert "Colorize replaces" not in panel.note_label.text()
    panel.set_context((64, 96), has_mask=False, colours=True)
    assert "This looks like a colour photo: Colorize replaces its colours." in panel.note_label.text()
    assert not panel.note_label.isHidden()


def test_black_and_white_and_toned_photos_have_no_colours_of_their_own(make_photo):
    gray = np.repeat(make_photo(64, 96)[..., :1], 3, axis=2)
    sepia = gray * np.array([1.0, 0.85, 0.6], np.float32)  # one hue, strength following the tones
    assert not run_plan.has_colours(gray) and not run_plan.has_colours(sepia)
    assert run_plan.has_colours(make_photo(64, 96))


def test_the_window_tells_the_panel_whether_the_photo_has_colours(make_window, make_photo):
    window = make_window()
    window.panel.set_settings(TaskSettings(colorize=True))
    window.document.set_photo(make_photo(32, 32))
    assert "Colorize replaces" in window.panel.note_label.text()
    window.document.set_photo(np.full((32, 32, 3), 0.4, np.float32))
    assert "Colorize replaces" not in window.panel.note_label.text()


def test_test_tiny_rough_guess_follows_the_measured_cpu_speed(panel):
    s = TaskSettings(colorize=True, model=TEST_TINY, steps=4, hir="off")
    estimate = run_plan.estimate_run(s, (256, 256), "cpu")
    assert estimate.calls == 4 and estimate.seconds == pytest.approx(4 * run_plan.TEST_TINY_CPU_SECONDS)
    assert not estimate.measured
    assert 0.2 <= run_plan.TEST_TINY_CPU_SECONDS <= 1.0, "measured about 0.3 to 0.5 s per 256² call"
    assert run_plan.estimate_run(s, (256, 256), "cuda").seconds < estimate.seconds


def test_guidance_uses_the_chosen_installed_classifier(panel):
    cond = ModelChoice("adm-256-cond", "General photos, class-guided", "general photos", 256, class_cond=True)
    panel.set_models([cond])
    panel.select_model("adm-256-cond")
    panel.colorize.setChecked(True)
    panel.guidance.setValue(2.0)
    assert panel.classifier.isEnabled() and not panel.restore_button.isEnabled()
    assert "Guidance needs a classifier: download or import one in Models…" in panel.problem_label.text()
    panel.set_settings(replace(panel.settings(), classifier="mine"))  # saved before the list arrives
    panel.set_classifiers([ModelChoice("adm-256-classifier", "ImageNet classifier", "guidance", 256),
                           ModelChoice("mine", "My classifier", "classifier guidance", 64)])
    assert panel.classifier.currentText() == "My classifier" and panel.problems == []
    request = run_plan.build_request(panel.settings(), np.zeros((8, 8, 3), np.float32), None)
    assert request.classifier == "mine" and request.guidance_scale == 2.0
