"""Typed events that :func:`engine.pipeline.restore` yields. Consumers (CLI, GUI) only render them.

Pixel arrays are numpy ``float32`` (H, W, 3) in [0, 1], already on the host. Anything costly is
computed lazily (``ProgressEvent.preview``) so nobody pays for what they do not show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from engine.geometry import Box


@dataclass(frozen=True)
class StageEvent:
    """A new phase of the run, e.g. "loading model", "HiR phase 1/2", "restoring"."""

    name: str
    index: int = 0
    total: int = 1


@dataclass(frozen=True)
class PlanEvent:
    """All windows of the coming stage, known up front (the GUI draws them as an overlay)."""

    output_size: tuple[int, int]  # (height, width) of the stage's canvas
    boxes: tuple[Box, ...]
    levels: tuple[int, ...]  # wavefront level of each box
    stage: str = "restore"
    scale_to_output: float = 1.0  # multiply box coordinates by this to get final-output pixels
    tiles: bool = False  # the boxes are tiles of a network before the engine (engine.tiling.blended), not windows


@dataclass(frozen=True)
class WindowStarted:
    index: int
    box: Box
    stage: str = "restore"


@dataclass(frozen=True)
class WindowFinished:
    index: int
    box: Box
    pixels: np.ndarray  # (box.height, box.width, 3) float32 in [0, 1]
    stage: str = "restore"
    scale_to_output: float = 1.0
    resumed: bool = False  # finished by an earlier, interrupted run (see RestoreRequest.resume_dir)


@dataclass(frozen=True)
class ProgressEvent:
    """Denoiser calls done over the whole job, with an ETA once it can be estimated."""

    done: int
    total: int
    elapsed: float
    eta: Optional[float] = None
    #: Lazily gives the current x̂0 of the running windows as (H, W, 3) float32 [0, 1] arrays.
    preview: Optional[Callable[[], list[np.ndarray]]] = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class LogEvent:
    level: str  # "info" | "warning" | "error"
    message: str


@dataclass(frozen=True)
class FinishedEvent:
    result: np.ndarray  # (H, W, 3) float32 in [0, 1], the final output (alpha is handled by I/O)
    report: dict[str, Any] = field(default_factory=dict)


Event = StageEvent | PlanEvent | WindowStarted | WindowFinished | ProgressEvent | LogEvent | FinishedEvent
