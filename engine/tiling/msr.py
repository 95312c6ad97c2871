"""Mask-Shift Restoration with wavefront batches.

Windows (from :mod:`engine.tiling.window_plan`) are solved level by level; all windows of a level
are independent, so they run as batches (capped by the memory plan). Each window's constraint is
``KnownPixels(Observation(A_w, y_w), written_w, canvas_w)`` (optionally wrapped, e.g. by HiR's
low-frequency prior): the pixels finished windows already wrote are imposed at every step,
whatever their shape (L-shaped overlaps, snapped borders). x_T and every random draw of window i
come from its own generator seeded from (seed, stage, i), so the result does not depend on the
batching: level-by-level batches give the raster-order sequential result.

The orchestrator is a generator of events; its return value (``yield from``) is the canvas.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import torch

from engine.errors import Cancelled, NumericalError, OutOfMemory
from engine.events import Event, LogEvent, PlanEvent, ProgressEvent, WindowFinished, WindowStarted
from engine.geometry import Box
from engine.operators.base import Constraint, KnownPixels, Monochrome, Observation, Operator, project_in_range
from engine.request import Quirks
from engine.samplers import per_sample_randn, sample
from engine.samplers.noise import seeded_generators
from engine.samplers.schedule import Schedule
from engine.tiling.canvas import Canvas, to_unit_float
from engine.tiling.memory import is_out_of_memory, release_cached_memory, split_in_two
from engine.tiling.problem import WindowProblem
from engine.tiling.window_plan import WindowPlan

#: wrap_constraint(constraint, boxes) -> constraint: stacks more constraints (HiR) per batch.
ConstraintWrapper = Callable[[Constraint, list[Box]], Constraint]
#: start(boxes, generators) -> x_T (B, 3, h, w): a custom start sample (HiR phase 2 warm start).
StartFn = Callable[[list[Box], list[torch.Generator]], torch.Tensor]


@dataclass(frozen=True)
class SamplingSettings:
    """Everything the sampler needs besides the denoiser and the constraint."""

    schedule: Schedule
    eta: float = 0.85
    sigma_y: float = 0.0  # model units ([-1, 1] range)
    form: str = "ddim"
    seed: int = 1234
    guidance: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None
    quirks: Quirks = Quirks()


@dataclass
class Progress:
    """Denoiser calls (window-steps) over the whole job; shared by all stages."""

    total: int
    done: int = 0
    started: float = field(default_factory=time.perf_counter)
    batches: int = 0  # sequential denoiser batch rounds actually run
    baseline: int = 0  # calls already done before this run started (resumed windows)

    def event(self, preview: Optional[Callable[[], list]] = None) -> ProgressEvent:
        elapsed = time.perf_counter() - self.started
        ran = self.done - self.baseline
        eta = elapsed / ran * (self.total - self.done) if ran > 0 else None
        return ProgressEvent(self.done, self.total, elapsed, eta, preview)


def window_seed(seed: int, stage_id: int, index: int) -> int:
    """A 63-bit seed for window ``index`` of stage ``stage_id`` (splitmix-style mixing)."""
    z = (seed * 0x9E3779B97F4A7C15 + stage_id * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB + 1) & (2**64 - 1)
    z ^= z >> 31
    z = (z * 0xD6E8FEB86659FD93) & (2**64 - 1)
    z ^= z >> 29
    return z & (2**63 - 1)


def invalid_values_message(precision: Optional[str]) -> str:
    """What to tell the user when the network produced NaN or infinity at ``precision``."""
    advice = {
        "fp16": "fp16 overflows with some models: choose bf16 or fp32 precision",
        "bf16": "choose fp32 precision",
        "auto": "choose fp32 precision",
    }.get(precision or "", "the model file may be damaged: check it under Models (verify)")
    return (f"the network produced invalid values (NaN or infinity), so these windows were not written; "
            f"{advice} (windows already finished are kept)")


def batch_operator(ops: Sequence[Operator]) -> Operator:
    """One operator acting on a batch whose sample i belongs to window i."""
    if len(ops) == 1:
        return ops[0]
    from engine.operators.compose import BatchOperator

    return BatchOperator(list(ops))


@dataclass
class MsrStage:
    """One MSR pass over a canvas. ``finished``: window indices already on ``canvas`` (resume)."""

    problem: WindowProblem
    plan: WindowPlan
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    settings: SamplingSettings
    progress: Progress
    batch_cap: int = 1
    stage: str = "restore"
    stage_id: int = 0
    scale_to_output: float = 1.0
    canvas: Optional[Canvas] = None
    finished: set[int] = field(default_factory=set)
    wrap_constraint: Optional[ConstraintWrapper] = None
    start: Optional[StartFn] = None
    #: called after each level and on cancel or close; returns a warning for the log, or None
    checkpoint: Optional[Callable[["MsrStage"], Optional[str]]] = None
    cancel: Any = None

    def __post_init__(self) -> None:
        if self.canvas is None:
            self.canvas = Canvas(self.plan.padded_height, self.plan.padded_width)
        self._carried: Optional[torch.Tensor] = None

    # -- the run -----------------------------------------------------------------------------------
    def run(self) -> Iterator[Event]:
        """Yield events; return the canvas (``canvas = yield from stage.run()``)."""
        plan = self.plan
        yield PlanEvent((plan.padded_height, plan.padded_width), plan.boxes, plan.levels, self.stage, self.scale_to_output)
        for i in sorted(self.finished):  # resumed: already on the canvas, shown before any new work
            box = plan.boxes[i]
            yield WindowFinished(i, box, self.canvas.region(box), self.stage, self.scale_to_output, resumed=True)
        sequential = self.settings.quirks.carry_state_across_windows
        if sequential:  # the reference's carry-over only makes sense one window at a time, raster order
            groups = [[i] for i in range(len(plan.boxes))]
        else:
            groups = plan.level_groups()
        try:
            for group in groups:
                todo = [i for i in group if i not in self.finished]
                cap = 1 if sequential else max(1, self.batch_cap)
                for start in range(0, len(todo), cap):
                    yield from self._run_with_split(todo[start : start + cap])
                if todo and self.checkpoint is not None:
                    warning = self.checkpoint(self)
                    if warning:
                        yield LogEvent("warning", warning)
        except (Cancelled, GeneratorExit):  # GeneratorExit: the consumer stopped iterating (closed us)
            if self.checkpoint is not None:
                self.checkpoint(self)  # no event now: the run is stopping (and a closed one cannot yield)
            raise
        return self.canvas

    def _run_with_split(self, chunk: list[int]) -> Iterator[Event]:
        """Solve ``chunk``; on out-of-memory halve it (and the cap for later batches) and retry."""
        done_before = self.progress.done
        try:
            yield from self._solve(chunk)
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is an OOM we can split
            if not is_out_of_memory(exc):
                raise
            release_cached_memory(self.problem.device)
            self.progress.done = done_before
            if len(chunk) == 1:
                raise OutOfMemory(
                    "the device ran out of memory on a single window; try a smaller window, "
                    "lower precision (fp16/bf16) or the CPU"
                ) from exc
            first, second = split_in_two(chunk)
            self.batch_cap = len(first)
            yield LogEvent("warning", f"out of memory with {len(chunk)} windows at once; retrying {len(first)} at a time")
            yield from self._run_with_split(first)
            yield from self._run_with_split(second)

    def _solve(self, chunk: list[int]) -> Iterator[Event]:
        problem, device, dtype = self.problem, self.problem.device, self.problem.dtype
        boxes = [self.plan.boxes[i] for i in chunk]
        ops = [problem.operator(b) for b in boxes]
        y = torch.cat([problem.observation(b, op) for b, op in zip(boxes, ops)])
        constraint: Constraint = Observation(batch_operator(ops), y)
        if self.wrap_constraint is not None:
            constraint = self.wrap_constraint(constraint, boxes)
        known_mask, known_values = self.canvas.known(boxes, device, dtype)
        if bool(known_mask.any()):
            constraint = KnownPixels(constraint, known_mask, known_values)
        if problem.monochrome:
            constraint = Monochrome(constraint)
        gens = seeded_generators([window_seed(self.settings.seed, self.stage_id, i) for i in chunk], device)
        shape = (len(chunk), 3, self.plan.window_h, self.plan.window_w)
        if self.start is not None:
            x_T = self.start(boxes, gens)
        else:
            x_T = per_sample_randn(shape, gens, device, dtype)
            if self._carried is not None and self._carried.shape == x_T.shape:
                x_T = self._carried  # quirks.carry_state_across_windows (sequential only)
        for i, box in zip(chunk, boxes):
            yield WindowStarted(i, box, self.stage)
        s = self.settings
        step = None
        self.progress.batches += 1
        denoiser = self.denoiser
        if hasattr(denoiser, "for_windows"):  # position-aware denoisers (oracles for tests/evaluation)
            denoiser = denoiser.for_windows(boxes)
        for step in sample(denoiser, x_T, constraint, s.schedule, eta=s.eta, sigma_y=s.sigma_y, form=s.form,
                           generators=gens, guidance=s.guidance, quirks=s.quirks, cancel=self.cancel):
            self.progress.done += len(chunk)
            x0 = step.x0_hat
            yield self.progress.event(preview=lambda x0=x0: [to_unit_float(v) for v in x0])
        if step is None:
            raise RuntimeError("the schedule made no denoiser call")
        if s.quirks.carry_state_across_windows:
            self._carried = step.x_t
        result = step.x0_hat if s.sigma_y > 0 else project_in_range(constraint, step.x0_hat)
        if not bool(torch.isfinite(result).all()):  # one check per batch, never inside the step loop
            raise NumericalError(invalid_values_message(getattr(self.denoiser, "precision", None)))
        for k, (i, box) in enumerate(zip(chunk, boxes)):
            self.canvas.write(box, result[k])
            self.finished.add(i)
            yield WindowFinished(i, box, self.canvas.region(box), self.stage, self.scale_to_output)


def run_msr(**kwargs: Any) -> Iterator[Event]:
    """Convenience: ``canvas = yield from run_msr(problem=..., plan=..., ...)`` (see MsrStage)."""
    stage = MsrStage(**kwargs)
    canvas = yield from stage.run()
    return canvas
