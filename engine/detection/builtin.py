"""The built-in damage detector: image processing only, no model file.

It looks at the photo at an analysis resolution whose shorter side is at most
:data:`WORK_SHORT_SIDE` (a larger photo is reduced first, so the detector's own memory does not
grow with the photo: only the full-size scores it returns do), in overlapping tiles run by the
blended tile runner (so a panorama is bounded too), and adds the tears found on a small view of
the whole photo. See :mod:`engine.detection.thin_damage` and :mod:`engine.detection.tears`.
"""

from __future__ import annotations

import threading
from typing import Generator, Optional

import cv2
import numpy as np
import torch

from engine.detection.tears import tear_scores
from engine.detection.thin_damage import BORDER, thin_damage_scores
from engine.events import Event
from engine.geometry import Box
from engine.tiling.blended import TileSpec, plan_tiles, run_tiles

#: The shorter side of the analysis resolution at most (photos are reduced to it, never enlarged).
WORK_SHORT_SIDE = 1024
#: Tiles of the analysis: their overlap, less the zero-weight margins, covers what one pixel's
#: score depends on (the crowding window of 12 % of the shorter side reaches ~62 px each way).
TILE, OVERLAP, MARGIN = 1024, 320, 32


def working_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of the analysis resolution for a photo of height × width."""
    f = min(1.0, WORK_SHORT_SIDE / max(1, min(height, width)))
    return max(1, round(height * f)), max(1, round(width * f))


def tile_spec(channels: int) -> TileSpec:
    return TileSpec(in_channels=channels, out_channels=1, tile=TILE, overlap=OVERLAP, margin=MARGIN, multiple=2)


def tile_count(height: int, width: int, channels: int = 3) -> int:
    """How many tiles the analysis of a height × width photo takes (for the progress total)."""
    return len(plan_tiles(*working_size(height, width), tile_spec(channels)))


def builtin_scores(image: np.ndarray, *, cancel: Optional[threading.Event] = None, progress=None,
                   stage: str = "detect") -> Generator[Event, None, np.ndarray]:
    """Damage scores (H, W) float32 in [0, 1] at the ANALYSIS resolution (see :func:`working_size`)
    of ``image`` (H, W, 3) or (H, W, 1) float32 [0, 1]; yields the tile runner's events."""
    height, width = image.shape[:2]
    work_h, work_w = working_size(height, width)
    work = image if (work_h, work_w) == (height, width) else cv2.resize(
        image, (work_w, work_h), interpolation=cv2.INTER_AREA)
    if work.ndim == 2:
        work = work[..., None]
    short = min(work_h, work_w)
    spec = tile_spec(work.shape[2])

    def score_tiles(batch: torch.Tensor, boxes: list[Box]) -> torch.Tensor:
        outs = []
        for tile, box in zip(batch, boxes):
            pixels = tile.permute(1, 2, 0).cpu().numpy()
            pixels = pixels[..., 0] if pixels.shape[2] == 1 else pixels
            border = (BORDER if box.top == 0 else 0, BORDER + max(0, box.bottom - work_h) if box.bottom >= work_h else 0,
                      BORDER if box.left == 0 else 0, BORDER + max(0, box.right - work_w) if box.right >= work_w else 0)
            outs.append(torch.from_numpy(thin_damage_scores(pixels, short, border))[None])
        return torch.stack(outs).to(batch.device)

    scores = yield from run_tiles(score_tiles, work, spec, device=torch.device("cpu"), cancel=cancel,
                                  stage=stage, progress=progress, scale_to_output=width / work_w)
    scores = scores[..., 0]
    np.maximum(scores, tear_scores(work[..., 0] if work.shape[2] == 1 else work), out=scores)
    return scores
