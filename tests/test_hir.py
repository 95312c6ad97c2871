"""HiR: the low-frequency prior's algebra, the factor choice, and two-phase runs with oracles."""

from __future__ import annotations

import dataclasses

import numpy as np

import pytest
import torch
import torch.nn.functional as F

from engine.operators import AvgPoolSR, ColorizeOperator, InpaintOperator, Observation
from engine.request import Tasks
from engine.samplers import make_schedule
from engine.tiling.hir import HirPlan, LowFrequencyPrior, choose_factor, run_hir
from engine.tiling.msr import MsrStage, Progress, SamplingSettings
from engine.tiling.problem import ObservedProblem, PhotoProblem
from engine.tiling.window_plan import plan_windows
from tests.test_msr import GlobalOracle, run, smooth_image

CPU = torch.device("cpu")


def hole_mask(h, w, seed=0):
    """1 = fill: two rectangles (holes whose blocks are fully unobserved) plus sparse pixels."""
    fill = (torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(seed)) > 0.9).float()
    fill[..., h // 4 : h // 2, w // 8 : w // 2] = 1
    fill[..., 3 * h // 4 :, 5 * w // 8 :] = 1
    return fill


def test_low_frequency_prior_pins_block_means_and_keeps_y_exact():
    h, w, f = 32, 48, 4
    fill = hole_mask(h, w)
    op = InpaintOperator(1 - fill)
    x_star = smooth_image(h, w, 1)
    y = op.A(x_star)
    x_low = F.avg_pool2d(smooth_image(h, w, 2), f)
    prior = LowFrequencyPrior(Observation(op, y), x_low, f)
    out = prior.project(torch.randn(1, 3, h, w) * 2)
    assert (op.A(out) - y).abs().max() < 1e-6  # y stays exactly satisfied
    open_blocks = F.avg_pool2d(fill, f) == 1  # blocks y says nothing about
    diff = (F.avg_pool2d(out, f) - x_low).abs()
    assert diff[open_blocks.expand_as(diff)].max() < 1e-5
    assert open_blocks.sum() > 4
    # without the prior the block means are free
    free = Observation(op, y).project(torch.randn(1, 3, h, w) * 2)
    assert (F.avg_pool2d(free, f) - x_low).abs()[open_blocks.expand_as(diff)].max() > 0.1
    assert prior.low_residual(F.interpolate(x_low, scale_factor=f, mode="nearest")) < 1e-6
    assert prior.low_residual(out) > 0.1  # observed blocks come from y, not from this x_low


def test_low_frequency_prior_is_idempotent_for_colorization():
    x_low = torch.rand(2, 3, 8, 8) * 2 - 1
    op = ColorizeOperator()
    y = op.A(F.interpolate(x_low, scale_factor=2, mode="nearest"))
    prior = LowFrequencyPrior(Observation(op, y), x_low, 2)
    once = prior.project(torch.randn(2, 3, 16, 16))
    assert torch.allclose(prior.project(once), once, atol=1e-6)
    assert torch.allclose(F.avg_pool2d(once, 2), x_low, atol=1e-6)  # chroma pinned, gray from y


@pytest.mark.parametrize(
    "height, width, sr, window, hir, expected",
    [
        (256, 256, 1, 256, None, 1),  # one window: off
        (400, 3000, 1, 256, None, 1),  # short side < 2 windows: off
        (512, 512, 1, 256, None, 2),
        (1024, 768, 1, 256, None, 2),
        (2048, 1360, 4, 256, None, 4),
        (3000, 2000, 1, 256, None, 4),
        (6000, 4000, 1, 256, None, 8),
        (1536, 1536, 3, 256, None, 6),  # 3·2: blocks nest with the ×3 SR blocks
        (1536, 1536, 3, 256, False, 1),
        (300, 300, 1, 256, True, 2),  # forced on a small image
        (300, 300, 3, 256, True, 3),
        (128, 128, 1, 32, None, 4),
    ],
)
def test_choose_factor(height, width, sr, window, hir, expected):
    f = choose_factor(height, width, sr, window, hir)
    assert f == expected
    if f > 1:
        assert sr % f == 0 or f % sr == 0


def _stage(problem, plan, denoiser, name, stage_id, progress, schedule, **kw):
    return MsrStage(problem=problem, plan=plan, denoiser=denoiser, progress=progress, batch_cap=8, stage=name,
                    stage_id=stage_id, settings=SamplingSettings(schedule=schedule, seed=3), **kw)


def _hir(problem, low_problem, f, den_low, den_high, window=32, overlap=16, start_t=None, steps=3):
    plan_high = plan_windows(problem.height, problem.width, window, overlap, max(problem.scale, f))
    plan_low = plan_windows(low_problem.height, low_problem.width, window, overlap, low_problem.scale)
    schedule = make_schedule(steps)
    progress = Progress(total=schedule.num_calls * (len(plan_low.boxes) + len(plan_high.boxes)))
    low = _stage(low_problem, plan_low, den_low, "hir-low", 1, progress, schedule)
    high_schedule = make_schedule(steps, t_start=start_t) if start_t is not None else schedule
    high = _stage(problem, plan_high, den_high, "restore", 0, progress, high_schedule)
    canvas, events = run(run_hir(HirPlan(low=low, high=high, factor=f, start_t=start_t)))
    result = torch.from_numpy(canvas.to_float()).permute(2, 0, 1)[None] * 2 - 1
    x_low = torch.from_numpy(low.canvas.to_float()).permute(2, 0, 1)[None] * 2 - 1
    return result, x_low, events


@pytest.mark.parametrize("task", ["sr4", "inpaint", "colorize"])
def test_hir_with_oracles_returns_the_clean_image(task):
    h = w = 64
    f = 2
    x = smooth_image(h, w, 4)
    x_low_star = F.avg_pool2d(x, f)
    if task == "sr4":
        op, op_low = AvgPoolSR(4), AvgPoolSR(2)
    elif task == "inpaint":
        keep = 1 - hole_mask(h, w)
        op, op_low = InpaintOperator(keep), InpaintOperator(-F.max_pool2d(-keep, f))  # low pixel known iff its block is
    else:
        op, op_low = ColorizeOperator(), ColorizeOperator()
    problem = ObservedProblem(op, op.A(x), h, w)
    low = ObservedProblem(op_low, op_low.A(x_low_star), h // f, w // f)
    result, x_low, events = _hir(problem, low, f, GlobalOracle(x_low_star), GlobalOracle(x))
    assert (x_low - x_low_star).abs().max() < 1e-4
    assert (result - x).abs().max() < 1e-4
    stages = [e.name for e in events if type(e).__name__ == "StageEvent"]
    assert len(stages) == 2 and "phase 1" in stages[0]


def test_hir_pins_open_content_to_phase_one_and_keeps_y():
    """Phase 2's denoiser believes in a different image: y still holds exactly, and in the holes the
    block means follow phase 1 instead of that image."""
    h = w = 64
    f = 4
    x, other = 0.5 * smooth_image(h, w, 5), 0.5 * smooth_image(h, w, 6)  # corrected values stay in [-1, 1]
    fill = hole_mask(h, w, 1)
    op = InpaintOperator(1 - fill)
    y = op.A(x)
    keep_low = -F.max_pool2d(-(1 - fill), f)
    op_low = InpaintOperator(keep_low)
    x_low_star = F.avg_pool2d(x, f)
    problem = ObservedProblem(op, y, h, w)
    low = ObservedProblem(op_low, op_low.A(x_low_star), h // f, w // f)
    result, x_low, _ = _hir(problem, low, f, GlobalOracle(x_low_star), GlobalOracle(other), window=16, overlap=8)
    assert (op.A(result) - y).abs().max() < 1e-4  # A x = y exactly (up to the uint16 canvas)
    open_blocks = (F.avg_pool2d(fill, f) == 1).expand(1, 3, h // f, w // f)
    pooled = F.avg_pool2d(result, f)
    assert (pooled - x_low)[open_blocks].abs().max() < 1e-4
    assert (pooled - F.avg_pool2d(other, f))[open_blocks].abs().max() > 0.05  # not the denoiser's image


def test_hir_warm_start_from_noised_low_result():
    h = w = 64
    f = 2
    x = smooth_image(h, w, 7)
    op, op_low = AvgPoolSR(4), AvgPoolSR(2)
    x_low_star = F.avg_pool2d(x, f)
    problem = ObservedProblem(op, op.A(x), h, w)
    low = ObservedProblem(op_low, op_low.A(x_low_star), h // f, w // f)
    result, _, _ = _hir(problem, low, f, GlobalOracle(x_low_star), GlobalOracle(x), start_t=400)
    assert (result - x).abs().max() < 1e-4


def _photo_problem(tasks, photo, fill):
    return PhotoProblem(tasks, photo, fill, CPU)


@pytest.mark.parametrize("tasks", [Tasks(inpaint=True, colorize=True), Tasks(sr=4), Tasks(sr=2, colorize=True)])
def test_photo_problem_downscaled_is_exact_for_oracles(tasks):
    """The phase-1 problem built from the photo (pooled photo, max-pooled mask, or a smaller SR
    factor) is consistent with the downscaled clean image, so oracle HiR recovers it exactly."""
    h = w = 64
    f = 2
    x = smooth_image(h, w, 8)
    s = tasks.sr
    fill = hole_mask(h // s, w // s, 2) if tasks.inpaint else None
    photo = F.avg_pool2d(x, s) if s > 1 else x.clone()
    if fill is not None:
        photo = torch.where(fill > 0.5, torch.full_like(photo, 0.7), photo)  # garbage in the holes
    problem = _photo_problem(tasks, photo, fill)
    low = problem.downscaled(f)
    assert low is not None and (low.height, low.width) == (h // f, w // f)
    x_low_star = F.avg_pool2d(x, f)
    result, x_low, _ = _hir(problem, low, f, GlobalOracle(x_low_star), GlobalOracle(x))
    assert (x_low - x_low_star).abs().max() < 1e-4
    assert (result - x).abs().max() < 1e-4


def test_photo_problem_downscale_rules():
    photo = torch.zeros(1, 3, 16, 24)
    fill = torch.zeros(1, 1, 16, 24)
    fill[..., 0, 0] = 1
    p = PhotoProblem(Tasks(inpaint=True, noise=0.1, deblur="gauss:2"), photo, fill, CPU)
    low = p.downscaled(4)
    assert (low.height, low.width) == (4, 6)
    assert low.mask[0, 0, 0, 0] == 1 and low.mask.sum() == 1  # any filled pixel fills its block
    assert low.tasks.noise == pytest.approx(0.025) and low.tasks.deblur == "gauss:0.5"
    sr = PhotoProblem(Tasks(sr=4), photo, None, CPU)
    assert sr.downscaled(2).tasks.sr == 2 and sr.downscaled(2).photo is photo
    assert sr.downscaled(3) is None  # blocks would not nest
    assert PhotoProblem(Tasks(sr=2), photo, None, CPU).downscaled(4) is None  # nothing left to solve
    padded = dataclasses.replace(p).padded(20, 30)
    assert padded.photo.shape[-2:] == (20, 30) and padded.mask.shape[-2:] == (20, 30)


def test_pipeline_hir_warm_start_from_the_request():
    """``hir_start`` makes phase 2 start from x_low noised to that t: phase 2 never sees a noisier
    timestep, and the result keeps the same consistency with y."""
    from engine.pipeline import run_to_completion
    from engine.request import RestoreRequest, Tasks
    from tests.test_pipeline import ZeroImage

    class Recording(ZeroImage):
        def __init__(self):
            self.ts = []

        def __call__(self, x, t):
            self.ts.extend(int(v) for v in t)
            return super().__call__(x, t)

    img = np.random.default_rng(0).random((64, 96, 3)).astype(np.float32)
    base = RestoreRequest(image=img, tasks=Tasks(colorize=True), steps=10, window=32, overlap=16, hir=True,
                          device="cpu")
    cold_den, warm_den = Recording(), Recording()
    cold = run_to_completion(base, denoiser=cold_den)
    warm = run_to_completion(base.replace(hir_start=300), denoiser=warm_den)
    assert cold.report["hir_factor"] > 1 and warm.report["hir_factor"] == cold.report["hir_factor"]
    noisy_cold = sum(t > 300 for t in cold_den.ts)
    noisy_warm = sum(t > 300 for t in warm_den.ts)
    assert 0 < noisy_warm < noisy_cold  # only phase 1 starts from pure noise
    assert warm.report["consistency"] < 1e-3 and cold.report["consistency"] < 1e-3
    with pytest.raises(Exception, match="warm start"):
        base.replace(hir_start=1000)
