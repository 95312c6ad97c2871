"""restore(): events, report, padding, HiR choice, errors, memory, and oracle runs on real photos."""

from __future__ import annotations

import json

import os
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import torch.nn.functional as F

from engine.errors import InputError
from engine.events import FinishedEvent, LogEvent, PlanEvent, StageEvent, WindowFinished
from engine.pipeline import restore, run_to_completion
from engine.request import RestoreRequest, Tasks
from tests.test_msr import GlobalOracle

REPORT_KEYS = {"input_size", "output_size", "consistency", "denoiser_calls", "seconds", "device", "peak_rss_mb",
               "windows", "batches", "levels", "model", "is_random_model"}


class ZeroImage:
    """Predicts the clean image 0 everywhere (x0 = 0): results are A†y, always in range."""

    image_size = 32
    is_random = False

    def __call__(self, x, t):
        from engine.samplers.schedule import alphas_cumprod_of, linear_betas

        ab = alphas_cumprod_of(linear_betas()).to(x.device)[t].view(-1, 1, 1, 1).float()
        return x / (1 - ab).sqrt()


def shared_data() -> Path:
    env = os.environ.get("RESTORER_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def gradient_image(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 5)], -1).astype(np.float32)


def collect(request, **kw):
    return list(restore(request, **kw))


def test_events_report_and_consistency_for_sr_inpaint():
    img = gradient_image(40, 56)
    mask = np.zeros((40, 56), bool)
    mask[10:20, 5:30] = True
    req = RestoreRequest(image=img, mask=mask, tasks=Tasks(inpaint=True, sr=2), steps=2, window=32, overlap=16, hir=False)
    events = collect(req, denoiser=ZeroImage())
    assert isinstance(events[-1], FinishedEvent)
    assert any(isinstance(e, StageEvent) for e in events)
    plan = next(e for e in events if isinstance(e, PlanEvent))
    assert plan.output_size == (80, 112) and len(plan.boxes) == 4 * 6
    assert sum(isinstance(e, WindowFinished) for e in events) == 24
    fin = events[-1]
    assert fin.result.shape == (80, 112, 3) and fin.result.dtype == np.float32
    assert 0 <= fin.result.min() and fin.result.max() <= 1
    rep = fin.report
    assert REPORT_KEYS <= set(rep)
    assert rep["input_size"] == [56, 40] and rep["output_size"] == [112, 80]
    assert rep["consistency"] < 1e-3
    assert rep["windows"] == 24 and rep["levels"] == 4 + 6 - 1 and rep["batches"] >= rep["levels"]
    assert rep["denoiser_calls"] == 24 * 2 and rep["is_random_model"] is False
    # known pixels are reproduced (inpainting keeps what the photo shows, SR keeps its averages)
    low = F.avg_pool2d(torch.from_numpy(fin.result).permute(2, 0, 1)[None], 2)[0].permute(1, 2, 0).numpy()
    assert np.abs(low - img)[~mask].max() < 1e-3


def test_random_model_is_announced_loudly():
    req = RestoreRequest(image=gradient_image(16, 16), tasks=Tasks(colorize=True), model="test-tiny", steps=1,
                         window=32, overlap=16)
    events = collect(req)
    warnings = [e.message for e in events if isinstance(e, LogEvent) and e.level == "warning"]
    assert "test-tiny has random weights: its output is NOT a restoration" in warnings
    fin = events[-1]
    assert fin.report["is_random_model"] is True and fin.result.shape == (16, 16, 3)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"tasks": Tasks(sr=2.5)}, "upscale factor must be a whole number"),
        ({"tasks": Tasks(sr=2, sr_kernel="lanczos")}, "unknown upscale kernel"),
        ({"tasks": Tasks(noise=float("inf"))}, "noise level must be in [0, 1]"),
        ({"tasks": Tasks(noise=5.0)}, "noise level must be in [0, 1]"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"steps": True}, "steps must be a whole number"),
        ({"window": 4, "overlap": 0}, "window must be at least 32"),
        ({"batch": 0}, "batch must be at least 1"),
        ({"batch": "x"}, "batch must be a whole number"),
        ({"sampler": "foo"}, "unknown sampler 'foo'"),
        ({"tiling": "foo"}, "unknown tiling 'foo'"),
        ({"precision": "int8"}, "unknown precision 'int8'"),
        ({"seed": -1}, "seed must be at least 0"),
    ],
)
def test_bad_request_values_are_refused_with_a_message(changes, words):
    with pytest.raises(InputError) as err:
        RestoreRequest(image=gradient_image(8, 8), **{"tasks": Tasks(colorize=True), **changes})
    assert words in str(err.value)


def test_whole_numbers_from_numpy_are_accepted():
    req = RestoreRequest(image=gradient_image(8, 8), tasks=Tasks(sr=np.int64(2)), steps=np.int32(3), batch=2)
    assert req.steps == 3 and req.tasks.sr == 2
    assert type(req.steps) is int and type(req.tasks.sr) is int
    assert RestoreRequest.from_dict(json.loads(req.replace(image="x.png").to_json())) == req.replace(image="x.png")


def test_mask_of_wrong_size_names_both_sizes():
    req = RestoreRequest(image=gradient_image(20, 30), mask=np.ones((10, 12), bool), tasks=Tasks(inpaint=True))
    with pytest.raises(InputError) as err:
        collect(req, denoiser=ZeroImage())
    assert "12×10" in str(err.value) and "30×20" in str(err.value)


@pytest.mark.parametrize("shape", [(20, 17), (33, 70), (5, 40)])
def test_small_and_odd_inputs_are_padded_and_cropped(shape):
    img = gradient_image(*shape)
    req = RestoreRequest(image=img, tasks=Tasks(colorize=True), steps=1, window=32, overlap=16)
    fin = run_to_completion(req, denoiser=ZeroImage())
    assert fin.result.shape == (*shape, 3)
    assert fin.report["consistency"] < 1e-3
    gray = fin.result.mean(-1)
    assert np.abs(gray - img.mean(-1)).max() < 1e-3


def test_hir_turns_on_for_large_outputs_and_off_on_request():
    img = gradient_image(128, 128)
    req = RestoreRequest(image=img, tasks=Tasks(colorize=True), steps=1, window=32, overlap=16)
    events = collect(req, denoiser=ZeroImage())
    names = [e.name for e in events if isinstance(e, StageEvent)]
    assert any("phase 1" in n for n in names) and any("phase 2" in n for n in names)
    plans = [e for e in events if isinstance(e, PlanEvent)]
    assert [p.stage for p in plans] == ["hir-low", "restore"] and plans[0].scale_to_output == 4.0
    assert events[-1].report["consistency"] < 1e-3
    off = collect(req.replace(hir=False), denoiser=ZeroImage())
    assert [e.stage for e in off if isinstance(e, PlanEvent)] == ["restore"]


def test_tiling_none_uses_one_window():
    req = RestoreRequest(image=gradient_image(40, 70), tasks=Tasks(sr=2), steps=1, tiling="none")
    events = collect(req, denoiser=ZeroImage())
    plan = next(e for e in events if isinstance(e, PlanEvent))
    assert len(plan.boxes) == 1 and plan.boxes[0].height == 96 and plan.boxes[0].width == 160
    assert events[-1].result.shape == (80, 140, 3)


def test_large_image_keeps_host_memory_bounded():
    """3000×2000 ×1 with a fake fast denoiser: the canvas is uint16 and RSS grows by far less than
    a handful of full-size float32 copies (each is 72 MB)."""
    img = np.random.default_rng(0).random((2000, 3000, 3), dtype=np.float32)
    req = RestoreRequest(image=img, tasks=Tasks(colorize=True), steps=1, hir=False, batch=8)
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = base
    count = 0
    for event in restore(req, denoiser=ZeroImage()):
        count += 1
        if count % 20 == 0 or isinstance(event, FinishedEvent):
            peak = max(peak, proc.memory_info().rss)
    assert event.report["windows"] == 15 * 23
    grown_mb = (peak - base) / 2**20
    assert grown_mb < 700, f"RSS grew by {grown_mb:.0f} MB"


@pytest.mark.parametrize("task", ["sr2", "inpaint", "colorize", "sr4"])
def test_pipeline_with_oracle_on_a_real_photo(task):
    folder = shared_data() / "kodak"
    photos = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if not photos:
        pytest.skip("shared test photos not available")
    from PIL import Image

    clean = np.asarray(Image.open(photos[0]).convert("RGB"), dtype=np.float32)[100:164, 200:296] / 255.0
    x = torch.from_numpy(clean).permute(2, 0, 1)[None] * 2 - 1
    h, w = clean.shape[:2]
    mask = None
    if task.startswith("sr"):
        s = int(task[2:])
        tasks, photo = Tasks(sr=s), F.avg_pool2d(x, s)
    elif task == "inpaint":
        mask = np.zeros((h, w), bool)
        mask[20:40, 30:70] = True
        tasks, photo = Tasks(inpaint=True), x.clone()
        photo[..., 20:40, 30:70] = 1.0  # what the photo shows there does not matter
    else:
        tasks, photo = Tasks(colorize=True), x.mean(1, keepdim=True).repeat(1, 3, 1, 1)
    photo_np = ((photo[0].permute(1, 2, 0) + 1) / 2).numpy()
    req = RestoreRequest(image=photo_np, mask=mask, tasks=tasks, steps=3, window=32, overlap=16, hir=False)
    fin = run_to_completion(req, denoiser=GlobalOracle(x))
    assert np.abs(fin.result - clean).max() < 1e-3
    assert fin.report["consistency"] < 1e-3


def gray_photo(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.repeat((0.2 + 0.6 * (xx / w) * (0.5 + 0.5 * np.cos(yy / 7)))[..., None], 3, axis=2)


def colourful_oracle(h, w):
    """An oracle whose clean image is strongly coloured: whatever it fills in has colour."""
    return GlobalOracle(torch.from_numpy(gradient_image(h, w)).permute(2, 0, 1)[None] * 2 - 1)


def spread(result):
    return float((result.max(axis=2) - result.min(axis=2)).max())


@pytest.mark.parametrize("tasks", [Tasks(inpaint=True), Tasks(inpaint=True, sr=2), Tasks(sr=2, noise=0.05)])
def test_black_and_white_photo_stays_black_and_white(tasks):
    h, w = 32, 48
    mask = np.zeros((h, w), bool)
    mask[8:24, 10:30] = True
    photo = gray_photo(h, w)
    req = RestoreRequest(image=photo, mask=mask, tasks=tasks, steps=3, window=32, overlap=16, hir=False)
    events = collect(req, denoiser=colourful_oracle(h * tasks.sr, w * tasks.sr))
    fin = events[-1]
    assert fin.report["monochrome"] is True
    assert any(isinstance(e, LogEvent) and "stays black and white" in e.message for e in events)
    assert spread(fin.result) == 0.0  # R = G = B exactly, in the fill and the new detail alike
    if tasks.inpaint and tasks.sr == 1 and not tasks.noise:
        np.testing.assert_allclose(fin.result[~mask], photo[~mask], atol=1e-4)  # known pixels kept
        assert np.abs(fin.result[mask] - photo[mask]).max() > 0.05  # and the hole was really filled


def test_colour_appears_when_asked_for_or_present():
    h, w = 32, 48
    mask = np.zeros((h, w), bool)
    mask[8:24, 10:30] = True
    oracle = colourful_oracle(h, w)
    colorized = run_to_completion(RestoreRequest(image=gray_photo(h, w), mask=mask, tasks=Tasks(inpaint=True, colorize=True),
                                                 steps=3, window=32, overlap=16, hir=False), denoiser=oracle)
    assert colorized.report["monochrome"] is False and spread(colorized.result) > 0.2
    stamped = gray_photo(h, w)
    stamped[2:5, 40:45] = [0.8, 0.1, 0.1]  # a small red date stamp: the photo is not black and white
    filled = run_to_completion(RestoreRequest(image=stamped, mask=mask, tasks=Tasks(inpaint=True), steps=3,
                                              window=32, overlap=16, hir=False), denoiser=oracle)
    assert filled.report["monochrome"] is False
    np.testing.assert_allclose(filled.result[2:5, 40:45], stamped[2:5, 40:45], atol=1e-4)  # the stamp is kept


def test_looks_monochrome_tolerates_rounding_not_tint():
    from engine.pipeline import looks_monochrome

    photo = gray_photo(300, 40)
    noisy = photo + np.random.default_rng(0).integers(-1, 2, photo.shape) / 255.0  # ±1 level per channel
    assert looks_monochrome(photo) and looks_monochrome(noisy.astype(np.float32))
    sepia = photo * np.array([1.0, 0.85, 0.65], np.float32)
    assert not looks_monochrome(sepia)
