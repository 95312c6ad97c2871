"""The fast upscale through engine.pipeline.restore: ×4 and the resized ×2/×8, a fill or colorize task
run by the engine on its result in one run with one progress bar, and what is refused."""

import numpy as np
import pytest

from engine.errors import InputError
from engine.events import FinishedEvent, PlanEvent, ProgressEvent, StageEvent, WindowFinished
from engine.pipeline import restore, run_to_completion
from engine.request import RestoreRequest, Tasks
from engine.resshift.stage import fast_upscale_request
from tests.test_resshift_tiling import photo

FAST = dict(model="test-tiny-resshift", device="cpu", precision="fp32")


@pytest.mark.parametrize("sr, resize", [(4, None), (2, "area ×2/4"), (8, "bicubic ×8/4")])
def test_every_factor_is_a_x4_run_resized(sr, resize):
    finished = run_to_completion(RestoreRequest(image=photo(16, 24), tasks=Tasks(sr=sr), **FAST))
    assert finished.result.shape == (16 * sr, 24 * sr, 3) and finished.result.dtype == np.float32
    report = finished.report
    assert report["resize"] == resize and report["upscaler"] == "test-tiny-resshift"
    assert report["output_size"] == [24 * sr, 16 * sr] and report["is_random_model"]
    assert report["upscaler_steps"] == 4


def test_a_x2_result_is_the_x4_result_area_averaged():
    x4 = run_to_completion(RestoreRequest(image=photo(16, 24), tasks=Tasks(sr=4), **FAST)).result
    x2 = run_to_completion(RestoreRequest(image=photo(16, 24), tasks=Tasks(sr=2), **FAST)).result
    assert np.allclose(x2, x4.reshape(32, 2, 48, 2, 3).mean(axis=(1, 3)), atol=1e-6)


def test_a_black_and_white_photo_stays_black_and_white():
    gray = np.repeat(photo(16, 24)[..., :1], 3, axis=2)
    result = run_to_completion(RestoreRequest(image=gray, tasks=Tasks(sr=4), **FAST)).result
    assert np.array_equal(result[..., 0], result[..., 1]) and np.array_equal(result[..., 1], result[..., 2])


def test_the_model_moves_to_the_upscaler_and_the_engine_gets_the_default_model():
    request = RestoreRequest(image="x.png", tasks=Tasks(sr=4, inpaint=True), mask="m.png", model="test-tiny-resshift")
    moved = fast_upscale_request(request)
    assert (moved.upscaler, moved.model) == ("test-tiny-resshift", RestoreRequest(image="x").model)
    both = request.replace(model="test-tiny", upscaler="test-tiny-resshift")
    assert fast_upscale_request(both) is both  # a diffusion model named with it is kept for the engine's part
    assert fast_upscale_request(RestoreRequest(image="x.png", tasks=Tasks(sr=4), model="test-tiny")) is None


def test_fill_after_the_fast_upscale_is_one_run_with_one_progress_bar():
    mask = np.zeros((16, 24), np.uint8)
    mask[4:9, 6:14] = 255
    request = RestoreRequest(image=photo(16, 24), mask=mask, tasks=Tasks(sr=4, inpaint=True), model="test-tiny",
                             upscaler="test-tiny-resshift", steps=3, window=64, overlap=32, device="cpu",
                             precision="fp32")
    events = list(restore(request))
    finished = events[-1]
    assert isinstance(finished, FinishedEvent) and finished.result.shape == (64, 96, 3)
    stages = [e.stage for e in events if isinstance(e, PlanEvent)]
    assert stages[0] == "upscale" and "restore" in stages  # ResShift first, then the engine on its result
    assert [e.name for e in events if isinstance(e, StageEvent)].count("loading model") == 1
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert all(b.done >= a.done for a, b in zip(progress, progress[1:]))
    assert len({e.total for e in progress}) == 1 and progress[-1].done == progress[-1].total
    last_tile = max(i for i, e in enumerate(events) if isinstance(e, WindowFinished) and e.stage == "upscale")
    after_upscale = next(e for e in events[last_tile:] if isinstance(e, ProgressEvent))
    assert 0 < after_upscale.done < after_upscale.total  # the engine's part follows on the same bar
    report = finished.report
    assert report["upscaler"] == "test-tiny-resshift" and report["model"] == "test-tiny"
    assert report["input_size"] == [24, 16] and report["output_size"] == [96, 64]
    # the engine kept the pixels outside the (×4) mask: they are ResShift's
    upscaled = run_to_completion(RestoreRequest(image=photo(16, 24), tasks=Tasks(sr=4), **FAST)).result
    outside = np.repeat(np.repeat(mask == 0, 4, 0), 4, 1)
    assert np.abs(finished.result[outside] - upscaled[outside]).max() < 0.02


@pytest.mark.parametrize("tasks, message", [
    (Tasks(sr=1, colorize=True), "choose an upscale factor"),
    (Tasks(sr=4, deblur="gauss:1"), "untick Deblur"),
    (Tasks(sr=4, noise=0.05), "noise level to 0"),
])
def test_what_the_fast_upscale_does_not_combine_with_is_refused(tasks, message):
    with pytest.raises(InputError, match=message):
        list(restore(RestoreRequest(image=photo(16, 24), tasks=tasks, **FAST)))
