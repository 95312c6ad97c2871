"""Hierarchical Restoration (HiR): a global low-resolution pass, then full-size MSR pinned to it.

Phase 1 restores the problem downscaled by ``factor`` (output short side ≈ one window: few
windows, global view). Phase 2 restores the full size with MSR, every window constrained by
:class:`LowFrequencyPrior`: x̂0 ← x̂0 − U(avgpool_f(x̂0) − x_low) (U = replication), applied
BEFORE the y-consistency, so A x = y stays exact while whatever y leaves open (mask holes, chroma,
detail between y's scale and x_low's) is pinned to x_low at the block-average level. Phase 2 may
also start from x_low replicated and noised to an intermediate timestep (``start_t``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from engine.events import Event, StageEvent
from engine.geometry import Box
from engine.operators.base import Constraint, Stacked
from engine.samplers import per_sample_randn
from engine.samplers.schedule import Schedule
from engine.tiling.msr import ConstraintWrapper, MsrStage, StartFn

#: Auto HiR turns on when the output's short side spans at least this many windows.
AUTO_MIN_WINDOWS = 2


def upsample_blocks(x: torch.Tensor, factor: int) -> torch.Tensor:
    """U: (B, C, h, w) -> (B, C, h·f, w·f) by replication."""
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


class LowFrequencyPrior(Stacked):
    """Pins avgpool_f(x) to ``x_low`` (B or 1, 3, H/f, W/f), then applies ``inner`` (y-consistency).

    The prior is imposed fully at every step (x_low carries no observation noise); ``lam`` is
    passed on to the inner constraint. Window height and width must be multiples of ``factor``.
    """

    def __init__(self, inner: Constraint, x_low: torch.Tensor, factor: int):
        super().__init__(inner)
        self.x_low = x_low
        self.factor = int(factor)

    def project(self, x0, lam=1.0):
        f = self.factor
        correction = upsample_blocks(F.avg_pool2d(x0, f) - self.x_low, f)
        return self.inner.project(x0 - correction, lam)

    def hard_part(self) -> Constraint:  # a soft guide: not part of what the result must satisfy
        return self.inner.hard_part()

    def low_residual(self, x: torch.Tensor) -> float:
        """‖avgpool_f(x) − x_low‖ / ‖x_low‖."""
        diff = torch.linalg.vector_norm((F.avg_pool2d(x, self.factor) - self.x_low).double())
        return float(diff / torch.linalg.vector_norm(self.x_low.double()).clamp_min(1e-12))


def _crop_low(x_low: torch.Tensor, boxes: list[Box], factor: int, device, dtype) -> torch.Tensor:
    crops = []
    for box in boxes:
        rows, cols = box.divided(factor).slices()
        crops.append(x_low[0, :, rows, cols])
    return torch.stack(crops).to(device=device, dtype=dtype)


def low_prior_wrapper(x_low: torch.Tensor, factor: int, device, dtype) -> ConstraintWrapper:
    """For MSR: wraps each batch's constraint in a LowFrequencyPrior over the windows' x_low crops.
    ``x_low``: (1, 3, H/f, W/f) in [-1, 1] on the host (only the crops go to the device)."""

    def wrap(inner: Constraint, boxes: list[Box]) -> Constraint:
        return LowFrequencyPrior(inner, _crop_low(x_low, boxes, factor, device, dtype), factor)

    return wrap


def warm_start(x_low: torch.Tensor, factor: int, schedule: Schedule, device, dtype) -> StartFn:
    """x_T = √ᾱ·U(x_low) + √(1−ᾱ)·z at ᾱ = ᾱ_{first_t}, z from each window's own generator."""
    ab = schedule.alpha_bar(schedule.first_t)

    def start(boxes: list[Box], generators: list[torch.Generator]) -> torch.Tensor:
        base = upsample_blocks(_crop_low(x_low, boxes, factor, device, dtype), factor)
        z = per_sample_randn(base.shape, generators, device, dtype)
        return math.sqrt(ab) * base + math.sqrt(1.0 - ab) * z

    return start


def valid_factor(factor: int, sr: int) -> bool:
    """Phase-1 pooling blocks must nest with the SR blocks: f divides sr, or sr divides f."""
    return factor >= 2 and (sr % factor == 0 or factor % sr == 0)


def choose_factor(height: int, width: int, sr: int, window: int, hir: Optional[bool] = None) -> int:
    """HiR downscale factor for a (height, width) output (1 = HiR off).

    ``hir`` None (auto): on when the short side spans ≥ 2 windows; f is the largest power of two
    (or sr·2^k, or divisor of sr) with short side / f ≥ window, so phase 1 is about one window
    high/wide. ``hir`` True forces it (f ≥ 2 even on small outputs; phase 1 is then padded).
    """
    if hir is False:
        return 1
    target = min(height, width) / window
    if hir is None and target < AUTO_MIN_WINDOWS:
        return 1
    limit = max(int(target), 2)
    candidates = {2**k for k in range(1, 16)} | {sr * 2**k for k in range(0, 16)} | {d for d in range(2, sr + 1) if sr % d == 0}
    usable = sorted(c for c in candidates if c <= limit and valid_factor(c, sr))
    if usable:
        return usable[-1]
    forced = sorted(c for c in candidates if valid_factor(c, sr))
    return forced[0] if hir else 1


@dataclass
class HirPlan:
    """Phase 1 (``low``) and phase 2 (``high``) MSR stages; x_low is phase 1's canvas cropped to
    the phase-2 canvas / factor."""

    low: MsrStage
    high: MsrStage
    factor: int
    start_t: Optional[int] = None  # phase 2 warm start (its schedule must start at this t)


def run_hir(job: HirPlan) -> Iterator[Event]:
    """Run both phases; returns the phase-2 canvas (``canvas = yield from run_hir(job)``).

    ``job.high`` must not have ``wrap_constraint``/``start`` set: they are built here from x_low.
    """
    f = job.factor
    high = job.high
    yield StageEvent("HiR phase 1/2: global structure", 0, 2)
    low_canvas = yield from job.low.run()
    h_low, w_low = high.plan.padded_height // f, high.plan.padded_width // f
    x_low = torch.from_numpy(low_canvas.to_float(h_low, w_low)).permute(2, 0, 1)[None] * 2.0 - 1.0
    device, dtype = high.problem.device, high.problem.dtype
    high.wrap_constraint = low_prior_wrapper(x_low, f, device, dtype)
    if job.start_t is not None:
        high.start = warm_start(x_low, f, high.settings.schedule, device, dtype)
    yield StageEvent("HiR phase 2/2: full-size detail", 1, 2)
    canvas = yield from high.run()
    return canvas
