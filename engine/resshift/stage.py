"""The fast upscale as the pre-stage of a run (engine.cleanup.stage, role ``upscaler``): ResShift ×4
over blended tiles, then, for a fill or colorize task, the DDNM engine on its result.

:func:`engine.pipeline.restore` uses a fast upscaler when ``request.upscaler`` is set, or when
``request.model`` names one (:func:`fast_upscale_request` then moves it to ``upscaler``; the
engine's part, if any, uses the default diffusion model, ``RestoreRequest``'s ``model`` default;
a request names another one in ``model`` together with ``upscaler``).

:func:`load_prestage` is the pre-stage loader of the upscaler role
(``engine.cleanup.stage.PRESTAGE_LOADERS``). The pre-stage does the rest as for any network: the
tiles (stage ``"upscale"``, per-tile events, tile side from free memory, out-of-memory split,
cancel), the resume state (``resume_dir/upscale``), the resize to ×2 (area) or ×8 (bicubic), a
black-and-white photo kept black and white, and the report (``upscaler``, ``upscaler_steps``,
``upscale_tiles``, ``upscale_tile``, ``resize``, ``upscale_seconds``). Its fidelity is 1: the
engine keeps the upscale exactly and only fills or colorizes it, at ×1, in the same run with one
progress bar. The request refuses deblurring and denoising with it (ResShift's real-world model
removes blur and noise itself) and a clean-up network beside it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

import torch

from engine.geometry import Box
from engine.request import RestoreRequest
from engine.resshift.files import LICENCE
from engine.resshift.load import is_upscaler, load_upscaler, schedule_for
from engine.resshift.upscaler import ResShiftUpscaler, describe
from engine.tiling.blended import TileSpec


def fast_upscale_request(request: RestoreRequest) -> Optional[RestoreRequest]:
    """The request in this module's terms (``upscaler`` set) when it uses a fast upscaler, else None."""
    if request.upscaler:
        return request
    if is_upscaler(request.model):
        default_model = RestoreRequest.__dataclass_fields__["model"].default
        return request.replace(upscaler=request.model, model=default_model)
    return None


@dataclass
class ResShiftPreStage:
    """A :class:`ResShiftUpscaler` as a pre-stage network (engine.cleanup.stage.PreStageNetwork)."""

    upscaler: ResShiftUpscaler
    spec: TileSpec
    known_schedule: bool  # the schedule is the model's own (a catalog model), not assumed
    licence: str = LICENCE

    @property
    def name(self) -> str:
        return self.upscaler.name

    @property
    def summary(self) -> str:
        return describe(self.upscaler.schedule)

    @property
    def is_random(self) -> bool:
        return self.upscaler.is_random

    @property
    def steps(self) -> int:
        return self.upscaler.schedule.steps

    def tile_units(self, height: int, width: int) -> int:
        """A tile's share of the progress bar, in engine denoiser calls (a rough cost ratio): its
        steps over each 256² of its output, twice (the autoencoder works at output resolution)."""
        area = height * width * self.upscaler.scale ** 2
        return 2 * self.steps * max(1, round(area / 256 ** 2))

    def notes(self) -> list[tuple[str, str]]:
        unknown = " (the v3 model's schedule: this file is not a catalog model, so its own is not known)"
        return [("info", f"fast upscale: {self.summary}" + ("" if self.known_schedule else unknown))]

    def __call__(self, tiles: torch.Tensor, boxes: list[Box]) -> torch.Tensor:
        return self.upscaler(tiles, boxes)


def load_prestage(spec: str, device: torch.device, precision: str, raw: object = None, *, seed: int = 1234,
                  cancel: Optional[threading.Event] = None) -> ResShiftPreStage:
    """The fast upscaler of ``spec`` (``raw``: its denoiser file, read already; None for the built-in
    test network) as a pre-stage; ``seed`` draws its noise, ``cancel`` is checked before every
    network call inside a tile."""
    upscaler = load_upscaler(spec, device=device, precision=precision, seed=seed, cancel=cancel, raw=raw)
    return ResShiftPreStage(upscaler, upscaler.spec(), schedule_for(spec)[1])
