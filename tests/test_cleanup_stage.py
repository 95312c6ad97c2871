"""Stage 1 over blended tiles (engine.cleanup.stage) and stage 2 with the cleaned photo as a soft
observation, through engine.pipeline.restore: tiled = untiled, no seams, the ×4-asked-×2 and ×1
with upscale rules, fidelity 1 = x1, σ_y = 0 consistency, the warm start, progress and events."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.cleanup import fidelity as fid
from engine.cleanup.stage import STAGE, load_spandrel
from engine.events import FinishedEvent, LogEvent, PlanEvent, ProgressEvent, WindowFinished
from engine.evaluation.real import RealEvalConfig, stage1_only
from engine.pipeline import restore
from engine.request import RestoreRequest, Tasks
from engine.tiling.blended import run_tiles
from tests.cleanup_helpers import compact, esrgan, save, scunet, smooth_photo
from tests.generator_helpers import drain

CPU = torch.device("cpu")
#: Stage 1's outputs are rounded to 16-bit levels (so a resumed run equals an uninterrupted one):
#: tiled and untiled results may differ by one level where float rounding differs.
LEVEL = 1 / 65535


def request(photo, cleanup, **changes) -> RestoreRequest:
    base = dict(model="test-tiny", steps=2, window=64, overlap=32, device="cpu", seed=3)
    return RestoreRequest(image=photo, cleanup=str(cleanup), **{**base, **changes})


def run(req) -> tuple[np.ndarray, dict, list]:
    events = list(restore(req))
    assert isinstance(events[-1], FinishedEvent)
    return events[-1].result, events[-1].report, events


def whole(net_file, photo) -> np.ndarray:
    """The network on the whole photo at once (no tiles), rounded like stage 1."""
    pre = load_spandrel(str(net_file), CPU, "fp32")
    x = torch.from_numpy(photo.transpose(2, 0, 1).copy())[None]
    return pre(x, [])[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("scale", [1, 2])
def test_tiled_equals_untiled_where_the_overlap_covers_the_receptive_field(tmp_path, scale):
    net_file = save(compact(scale), tmp_path / "c.pth")  # receptive-field radius 4 px
    photo = smooth_photo(70, 90)
    pre = load_spandrel(str(net_file), CPU, "fp32")
    spec = dataclasses.replace(pre.spec, tile=32, overlap=16, margin=4)  # overlap/2 − margin = 4 px
    tiled, events = drain(run_tiles(pre, photo, spec, device=CPU))
    assert sum(isinstance(e, WindowFinished) for e in events) > 6  # really tiled
    assert np.abs(tiled - whole(net_file, photo)).max() <= 2 * LEVEL


def border_gradient_ratio(pre, photo, spec) -> float:
    """Mean horizontal gradient across the columns where tiles begin or end, over the mean elsewhere."""
    out, events = drain(run_tiles(pre, photo, spec, device=CPU))
    plan = next(e for e in events if isinstance(e, PlanEvent))
    width = photo.shape[1]
    borders = sorted({b.left for b in plan.boxes if b.left} | {b.left + b.width for b in plan.boxes} - {width})
    step = np.abs(np.diff(out, axis=1)).mean(axis=(0, 2))  # mean horizontal gradient at each column step
    return float(np.mean([step[c - 1] for c in borders]) / np.mean(np.delete(step, [c - 1 for c in borders])))


def test_blended_tiles_leave_no_seam_on_a_network_that_sees_past_them(tmp_path):
    net_file = save(scunet(), tmp_path / "s.pth")  # windowed attention over a 3-level U-Net: sees far
    photo = smooth_photo(96, 160)
    pre = load_spandrel(str(net_file), CPU, "fp32")
    blended = border_gradient_ratio(pre, photo, dataclasses.replace(pre.spec, tile=64, overlap=32, margin=8))
    assert abs(blended - 1) < 0.2
    cut = border_gradient_ratio(pre, photo, dataclasses.replace(pre.spec, tile=64, overlap=0, margin=0))
    assert cut > 1.3  # the measure sees the seams of tiles laid edge to edge (1.64 when written)


def test_fidelity_1_returns_the_cleaned_photo_exactly(tmp_path):
    net_file = save(compact(1), tmp_path / "c.pth")
    photo = smooth_photo(40, 56)
    result, report, events = run(request(photo, net_file, fidelity=1.0))
    x1 = stage1_only(photo, RealEvalConfig(data="", cleanup=str(net_file), scale=1, device="cpu"))
    assert np.array_equal(result, x1)
    assert report["soft_observation"] == {"k": 1, "sigma_y": 0.0, "start_t": None, "stage2": False}
    assert report["denoiser_calls"] == 0 and report["change_from_stage1"] == 0.0
    assert not any(isinstance(e, PlanEvent) and e.stage == "restore" for e in events)  # stage 2 skipped


def test_fidelity_1_keeps_the_cleaned_photo_under_the_other_tasks(tmp_path):
    net_file = save(compact(1), tmp_path / "c.pth")
    photo = smooth_photo(40, 56)
    mask = np.zeros((40, 56), bool)
    mask[10:20, 15:30] = True
    x1 = stage1_only(photo, RealEvalConfig(data="", cleanup=str(net_file), scale=1, device="cpu"))
    result, report, _ = run(request(photo, net_file, fidelity=1.0, mask=mask, tasks=Tasks(inpaint=True, colorize=True)))
    gray = lambda a: a.mean(axis=2)  # noqa: E731
    kept = ~mask
    assert np.abs(gray(result)[kept] - gray(x1)[kept]).max() < 1e-3  # y = gray(x1) where not masked
    assert report["consistency"] < 1e-3


def test_stage_2_at_sigma_0_is_consistent_with_the_pooled_cleaned_photo(tmp_path):
    assert (fid.soft_observation(0.5).k, fid.soft_observation(0.5).sigma_y) == (4, 0.0)
    net_file = save(compact(1), tmp_path / "c.pth")
    photo = smooth_photo(40, 56)  # 56 is not a multiple of 4: x1 is padded for the pooling
    result, report, _ = run(request(photo, net_file, fidelity=0.5))
    x1 = stage1_only(photo, RealEvalConfig(data="", cleanup=str(net_file), scale=1, device="cpu"))
    pool = lambda a: F.avg_pool2d(torch.from_numpy(a[:40, :56]).permute(2, 0, 1)[None], 4)  # noqa: E731
    y, ax = pool(x1[:, :56] * 2 - 1), pool(result * 2 - 1)
    assert float(torch.linalg.vector_norm(ax - y) / torch.linalg.vector_norm(y)) < 1e-3
    assert report["consistency"] < 1e-3 and report["soft_observation"]["k"] == 4
    assert report["change_from_stage1"] > 0.01  # the detail below 4 px came from the (random) prior


def test_a_x4_network_asked_for_x2_runs_x4_then_area_downsamples(tmp_path):
    net_file = save(esrgan(4), tmp_path / "x4.pth")
    photo = smooth_photo(24, 32)
    result, report, events = run(request(photo, net_file, fidelity=1.0, tasks=Tasks(sr=2)))
    big = whole(net_file, photo)  # 96 × 128
    expected = big.reshape(48, 2, 64, 2, 3).mean(axis=(1, 3))
    assert result.shape == (48, 64, 3) and np.abs(result - expected).max() <= 4 * LEVEL
    plan = next(e for e in events if isinstance(e, PlanEvent))
    assert plan.stage == STAGE and plan.scale_to_output == 0.5  # ×4 tiles drawn at ×2 on the output
    assert report["cleanup"]["scale"] == 4 and report["output_size"] == [64, 48]


def test_a_x1_network_with_an_upscale_runs_at_1x_and_stage_2_upscales(tmp_path):
    net_file = save(compact(1), tmp_path / "c.pth")
    photo = smooth_photo(32, 40)
    result, report, _ = run(request(photo, net_file, fidelity=1.0, tasks=Tasks(sr=2)))
    x1 = stage1_only(photo, RealEvalConfig(data="", cleanup=str(net_file), scale=1, device="cpu"))
    assert result.shape == (64, 80, 3)
    down = result.reshape(32, 2, 40, 2, 3).mean(axis=(1, 3))  # A = avgpool_2 at fidelity 1, σ_y = 0
    assert np.abs(down - x1).max() < 1e-3 and report["consistency"] < 1e-3
    assert report["soft_observation"]["stage2"] is True


def test_one_progress_covers_both_stages_and_stage_1_arrives_first(tmp_path):
    net_file = save(compact(1), tmp_path / "c.pth")
    photo = smooth_photo(40, 56)
    _, report, events = run(request(photo, net_file, fidelity=0.5))
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert len({e.total for e in progress}) == 1 and progress[-1].done == progress[-1].total
    stages = [e.stage for e in events if isinstance(e, (PlanEvent, WindowFinished))]
    last_tile = len(stages) - 1 - stages[::-1].index(STAGE)
    assert stages[0] == STAGE and stages[-1] == "restore" and stages.index("restore") > last_tile  # stage 1 first
    tiles = report["cleanup"]["tiles"]
    assert progress[-1].total == tiles + report["denoiser_calls"] and report["cleanup"]["tiles_computed"] == tiles


def test_the_warm_start_starts_later_with_proportionally_fewer_steps(tmp_path):
    net_file = save(compact(1), tmp_path / "c.pth")
    photo = smooth_photo(40, 56)
    _, cold, _ = run(request(photo, net_file, fidelity=0.5, steps=10))
    _, warm, _ = run(request(photo, net_file, fidelity=0.5, steps=10, warm_start=True))
    soft = fid.soft_observation(0.5, warm_start=True)
    assert warm["soft_observation"]["start_t"] == soft.start_t == 400 and soft.steps(10) == 5
    assert warm["denoiser_calls"] * 10 == cold["denoiser_calls"] * 5


def test_the_fidelity_control_lowers_k_and_sigma_towards_the_cleaned_photo():
    values = [fid.soft_observation(f) for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert [v.k for v in values] == [16, 8, 4, 2, 1]
    assert [v.sigma_y for v in values] == [fid.MAX_SIGMA, 0.025, 0.0, 0.0, 0.0]  # σ_y only on the realness half
    starts = [fid.soft_observation(f, warm_start=True).start_t for f in (0.0, 0.5, 1.0)]
    assert starts == [700, 400, 100]
    with pytest.raises(Exception, match="fidelity must be a number between 0"):
        RestoreRequest(image="x.png", cleanup="m", fidelity=1.5)


def run_until(req, stop_stage: str, windows: int = 1):
    """Run ``req`` and cancel it after ``windows`` finished windows of ``stop_stage``."""
    import threading

    from engine.errors import Cancelled

    cancel, seen = threading.Event(), 0
    with pytest.raises(Cancelled):
        for event in restore(req, cancel):
            if isinstance(event, WindowFinished) and event.stage == stop_stage and not event.resumed:
                seen += 1
                if seen >= windows:
                    cancel.set()


@pytest.fixture
def small_tiles(monkeypatch):
    from engine.cleanup import networks

    monkeypatch.setitem(networks.TILE_BY_SCALE, 1, 32)  # tiles of 65 px (twice the overlap): several on 80 × 110


def test_a_run_stopped_in_stage_1_continues_from_its_finished_tiles(tmp_path, small_tiles):
    from engine.tiling.resume import ResumeState

    net_file = save(compact(1), tmp_path / "c.pth")
    photo = smooth_photo(80, 110)
    expected, _, _ = run(request(photo, net_file, fidelity=0.5))
    state = tmp_path / "state"
    run_until(request(photo, net_file, fidelity=0.5, resume_dir=str(state)), STAGE, windows=2)
    assert ResumeState.saved_windows(state) == 2  # what the CLI and the app offer to continue
    result, report, events = run(request(photo, net_file, fidelity=0.5, resume_dir=str(state)))
    resumed = [e.index for e in events if isinstance(e, WindowFinished) and e.stage == STAGE and e.resumed]
    assert resumed == [0, 1] and report["cleanup"]["tiles_resumed"] == 2
    assert report["cleanup"]["tiles_computed"] == report["cleanup"]["tiles"] - 2
    assert np.array_equal(result, expected)  # as if it had never stopped


def test_a_run_stopped_in_stage_2_reuses_the_finished_stage_1(tmp_path, small_tiles):
    net_file = save(compact(1), tmp_path / "c.pth")
    photo = smooth_photo(80, 110)
    expected, _, _ = run(request(photo, net_file, fidelity=0.5))
    state = tmp_path / "state"
    run_until(request(photo, net_file, fidelity=0.5, resume_dir=str(state)), "restore", windows=1)
    result, report, events = run(request(photo, net_file, fidelity=0.5, resume_dir=str(state)))
    assert report["cleanup"]["tiles_computed"] == 0 and report["cleanup"]["tiles_resumed"] == report["cleanup"]["tiles"]
    assert any(isinstance(e, WindowFinished) and e.stage == "restore" and e.resumed for e in events)
    assert np.array_equal(result, expected)
    other = request(photo, net_file, fidelity=0.75, resume_dir=str(state))  # another request starts over
    _, report, _ = run(other)
    assert report["cleanup"]["tiles_resumed"] == 0


def test_an_automatic_mask_is_found_on_the_photo_before_the_clean_up(tmp_path):
    from engine.request import MASK_AUTO

    net_file = save(compact(1), tmp_path / "c.pth")
    photo = smooth_photo(40, 56)
    photo[18:20, 5:50] = 1.0  # a bright scratch
    result, report, events = run(request(photo, net_file, fidelity=1.0, mask=MASK_AUTO, tasks=Tasks(inpaint=True)))
    assert result.shape == photo.shape and report["cleanup"]["tiles"] >= 1
    found = any(isinstance(e, LogEvent) and "damage found" in e.message for e in events)
    assert report["soft_observation"]["stage2"] is found  # fidelity 1: stage 2 runs only to fill what was found
    clean = smooth_photo(40, 56)  # no damage: nothing to fill, but the clean-up is still work to do
    _, report, _ = run(request(clean, net_file, fidelity=1.0, mask=MASK_AUTO, tasks=Tasks(inpaint=True)))
    assert report["soft_observation"]["stage2"] is False
