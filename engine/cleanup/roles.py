"""The two kinds of pre-stage (engine.cleanup.stage) and what each does in a run: which request
field names its network and which model role that network must have, its stage name, its fidelity,
how its result reaches the output's scale, and its part of the run report.

- **clean-up** (``request.cleanup``): stage 1 of a two-stage restoration, at the request's fidelity;
  a network larger than the upscale is area-downsampled, a smaller one leaves the rest of the
  upscale to stage 2; stage 2 without HiR (the soft observation fixes the coarse content). Report:
  ``cleanup``, ``fidelity``, ``soft_observation``, ``change_from_stage1``.
- **fast upscaler** (``request.upscaler``; ResShift): fidelity 1, its result resized to the output
  (area below its scale, bicubic above); the engine's fill or colorize after it is the usual one
  on that result, HiR as the request says. Report: ``upscaler``, ``upscaler_steps``,
  ``upscale_tiles``, ``upscale_tile``, ``resize``, ``upscale_seconds``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from engine.cleanup.resample import area_downsample, resize_note
from engine.models import kinds
from engine.request import RestoreRequest

if TYPE_CHECKING:
    from engine.cleanup.stage import PreStage

STAGE, UPSCALE_STAGE = "cleanup", "upscale"


@dataclass(frozen=True)
class PreStageRole:
    """How a pre-stage network of one role takes part in a run (its loader: PRESTAGE_LOADERS)."""

    role: str  # the role its model file must have (engine.models.kinds)
    field: str  # the request field that names the network
    stage: str  # the stage name of its events and of its folder in the resume state
    label: str  # what the log calls it
    title: str  # the StageEvent while it runs
    stage2_title: str  # the StageEvent of the engine's part after it
    output: str  # what its result is, for the random-weights warning
    fidelity: Optional[float]  # its fixed fidelity (None: the request's)
    to_output: bool  # its result is resized to the output scale; else stage 2 does the rest of the upscale
    stage2_hir: bool  # stage 2 uses HiR as the request says; else never (y already fixes the coarse content)
    report: Callable[["PreStage", np.ndarray], dict[str, Any]]


def _cleanup_report(stage: "PreStage", result: np.ndarray) -> dict[str, Any]:
    """The stage-1 model, its tiles and seconds, the soft observation, and how far stage 2 moved
    from x1 (RMS in [0, 1] units, at x1's scale)."""
    h, w = stage.x1_size
    moved = area_downsample(np.ascontiguousarray(result[: h * stage.q, : w * stage.q]), h, w) - stage.x1
    net, soft = stage.network, stage.soft
    return {
        "cleanup": {"model": net.name, "network": net.summary, "licence": net.licence, "scale": net.spec.scale,
                    "tiles": len(stage.boxes), "tiles_computed": stage.tiles_computed, "tiles_resumed": stage.resumed,
                    "seconds": round(stage.seconds, 3)},
        "fidelity": stage.fidelity,
        "soft_observation": {"k": soft.k, "sigma_y": soft.sigma_y, "start_t": soft.start_t,
                             "stage2": stage.needs_stage2},
        "change_from_stage1": round(float(math.sqrt(float(np.mean(np.square(moved, dtype=np.float64))))), 6),
    }


def _upscale_report(stage: "PreStage", result: np.ndarray) -> dict[str, Any]:
    """The upscaler, its steps and tiles, how its ×4 became the output's scale, and its seconds."""
    box = stage.boxes[0]
    return {"upscaler": stage.network.name, "upscaler_steps": stage.network.steps, "upscale_tiles": len(stage.boxes),
            "upscale_tile": [box.height, box.width], "resize": resize_note(stage.network.spec.scale, stage.scale),
            "upscale_seconds": round(stage.seconds, 3)}


CLEANUP_ROLE = PreStageRole(kinds.CLEANUP, "cleanup", STAGE, "stage 1", "cleaning up (stage 1)", "restoring (stage 2)",
                            "a clean-up", None, False, False, _cleanup_report)
UPSCALE_ROLE = PreStageRole(kinds.UPSCALER, "upscaler", UPSCALE_STAGE, "the upscale", "upscaling", "restoring",
                            "an upscale", 1.0, True, True, _upscale_report)


def role_for(request: RestoreRequest) -> Optional[PreStageRole]:
    """The pre-stage a request asks for, if any (the request refuses asking for both)."""
    return UPSCALE_ROLE if request.upscaler else CLEANUP_ROLE if request.cleanup else None
