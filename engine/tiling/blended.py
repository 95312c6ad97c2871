"""Run an image-to-image network over overlapping tiles of a photo of any size, and blend them.

The pre-stage networks (clean-up networks, the fast upscaler) and the damage detector work this
way: the photo stays on the host, each tile is cut out (reflected at the borders), moved to the
device, run, and added back into one host canvas with a smooth weight, so no seam shows and only
the tiles being computed are ever on the device.

Weights. Along an edge a tile shares with a neighbour, its weight is 0 for ``margin`` input pixels
(where the network sees past the tile's border, its output is unreliable), then rises as a raised
cosine over the rest of the overlap to 1; along the photo's own border it is 1. Every tile of a
row has the same vertical profile and every tile of a column the same horizontal one, so the sum of
all weights is the outer product of two 1-D sums: the canvas is the only full-size array. Where
the overlap minus the margins covers the network's receptive field, the tiled result equals the
untiled one up to float rounding.

Out of memory: a batch of tiles is split in two; a single tile that does not fit is cut into 2 × 2
overlapping sub-tiles (recursively, down to :data:`MIN_SPLIT_TILE`), blended the same way, so the
plan, the events and the resume indices never change.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Generator, Mapping, Optional, Sequence

import numpy as np
import torch

from engine.errors import Cancelled, EngineError, NumericalError, OutOfMemory
from engine.events import Event, LogEvent, PlanEvent, WindowFinished, WindowStarted
from engine.geometry import Box
from engine.tiling.memory import BUDGET_FRACTION, free_device_bytes, is_out_of_memory, release_cached_memory

#: ``fn(batch, boxes)``: (B, C_in, h, w) float32 in [0, 1] on the device, and the batch's tile boxes
#: (input pixels of the padded photo) -> (B, C_out, h·scale, w·scale) on the device.
TileFn = Callable[[torch.Tensor, list[Box]], torch.Tensor]

#: A tile is not cut smaller than this (input pixels) when it runs out of memory.
MIN_SPLIT_TILE = 16


@dataclass(frozen=True)
class TileSpec:
    """How a network is tiled. Sizes are input pixels."""

    scale: int = 1  # output pixels per input pixel
    in_channels: int = 3
    out_channels: int = 3
    tile: int = 512  # largest tile side (smaller when free device memory says so)
    overlap: int = 32  # pixels shared by neighbouring tiles
    margin: int = 0  # pixels at each shared edge that get weight 0 (the receptive field)
    multiple: int = 1  # tile sides and positions are multiples of this (edges padded by reflection)
    bytes_per_pixel: float = 0.0  # device bytes per input pixel of one tile at batch 1 (0: no planning)
    batch: int = 1  # tiles per network call at most

    def __post_init__(self) -> None:
        if self.scale < 1 or self.multiple < 1 or self.batch < 1:
            raise ValueError(f"scale, multiple and batch must be at least 1: {self}")
        if self.overlap and self.overlap <= 2 * self.margin:
            raise ValueError(f"overlap {self.overlap} must exceed twice the margin {self.margin}")
        if self.tile < self.multiple or self.tile <= self.overlap:
            raise ValueError(f"tile {self.tile} must be at least the multiple and larger than the overlap")


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _floor_to(value: int, multiple: int) -> int:
    return value // multiple * multiple


def tile_side(spec: TileSpec, device: torch.device) -> int:
    """The tile side to use: ``spec.tile``, or less where the device's free memory says so."""
    side = spec.tile
    free = free_device_bytes(device) if spec.bytes_per_pixel > 0 else None
    if free is not None:
        fits = math.isqrt(int(free * BUDGET_FRACTION / spec.bytes_per_pixel))
        side = min(side, max(_floor_to(fits, spec.multiple), spec.multiple, _ceil_to(2 * spec.overlap + 1, spec.multiple)))
    return side


def _positions(length: int, side: int, overlap: int, multiple: int) -> list[int]:
    """Starts of tiles of ``side`` covering [0, length): stride side − overlap, the last snapped."""
    if side >= length:
        return [0]
    stride = max(multiple, _floor_to(side - overlap, multiple))
    starts = list(range(0, length - side, stride))
    return starts + [length - side]


def padded_size(height: int, width: int, spec: TileSpec, side: Optional[int] = None) -> tuple[int, int, int, int]:
    """(padded height, padded width, tile height, tile width) for a photo of height × width."""
    side = side or spec.tile
    hp, wp = _ceil_to(height, spec.multiple), _ceil_to(width, spec.multiple)
    return hp, wp, min(side, hp), min(side, wp)


def plan_tiles(height: int, width: int, spec: TileSpec, side: Optional[int] = None) -> list[Box]:
    """Tiles (input pixels of the padded photo) in raster order; the last row and column snap to
    the border, so every tile has the same size."""
    hp, wp, th, tw = padded_size(height, width, spec, side)
    overlap = _ceil_to(spec.overlap, spec.multiple) if spec.overlap else 0
    return [Box(top, left, th, tw) for top in _positions(hp, th, overlap, spec.multiple)
            for left in _positions(wp, tw, overlap, spec.multiple)]


def _ramp(length: int, start_zero: int, rise: int, at_start: bool) -> np.ndarray:
    """A 1-D weight of ``length``: 0 for ``start_zero`` then a raised cosine over ``rise`` to 1
    (mirrored when not ``at_start``)."""
    w = np.ones(length, np.float32)
    if rise > 0 or start_zero > 0:
        t = (np.arange(length, dtype=np.float32) - start_zero + 0.5) / max(rise, 1)
        ramp = np.where(t <= 0, 0.0, np.where(t >= 1, 1.0, 0.5 - 0.5 * np.cos(np.pi * np.clip(t, 0, 1))))
        w = ramp.astype(np.float32) if at_start else ramp[::-1].astype(np.float32)
    return w


class _Profiles:
    """The 1-D weights of each tile row and column, and their sums over the canvas."""

    def __init__(self, starts: Sequence[int], side: int, length: int, spec: TileSpec) -> None:
        s = spec.scale
        zero, rise = spec.margin * s, max(0, (spec.overlap - 2 * spec.margin) * s)
        self.profile: dict[int, np.ndarray] = {}
        self.total = np.zeros(length * s, np.float32)
        for start in starts:
            w = np.ones(side * s, np.float32)
            if start > 0:
                w *= _ramp(side * s, zero, rise, at_start=True)
            if start + side < length:
                w *= _ramp(side * s, zero, rise, at_start=False)
            self.profile[start] = w
            self.total[start * s : (start + side) * s] += w


class _Canvas:
    """The weighted sum of the tiles on the host, with the separable weights."""

    def __init__(self, boxes: Sequence[Box], hp: int, wp: int, spec: TileSpec) -> None:
        self.spec, self.boxes = spec, list(boxes)
        th, tw = self.boxes[0].height, self.boxes[0].width
        self.rows = _Profiles(sorted({b.top for b in boxes}), th, hp, spec)
        self.cols = _Profiles(sorted({b.left for b in boxes}), tw, wp, spec)
        self.acc = np.zeros((hp * spec.scale, wp * spec.scale, spec.out_channels), np.float32)
        self.added: list[int] = []

    def weight(self, box: Box) -> np.ndarray:
        return np.outer(self.rows.profile[box.top], self.cols.profile[box.left])

    def add(self, index: int, out: np.ndarray) -> None:
        box = self.boxes[index].scaled(self.spec.scale)
        rows, cols = box.slices()
        self.acc[rows, cols] += out * self.weight(self.boxes[index])[..., None]
        self.added.append(index)

    def region(self, index: int, raw: np.ndarray) -> np.ndarray:
        """The blended result so far inside tile ``index`` (its own output where nothing is yet)."""
        box = self.boxes[index]
        out_box = box.scaled(self.spec.scale)
        weight = np.zeros((out_box.height, out_box.width), np.float32)
        for j in self.added:
            other = self.boxes[j]
            if other.intersects(box):
                o = other.scaled(self.spec.scale)
                t, l = max(o.top, out_box.top), max(o.left, out_box.left)
                b, r = min(o.bottom, out_box.bottom), min(o.right, out_box.right)
                weight[t - out_box.top : b - out_box.top, l - out_box.left : r - out_box.left] += \
                    self.weight(other)[t - o.top : b - o.top, l - o.left : r - o.left]
        rows, cols = out_box.slices()
        blended = self.acc[rows, cols] / np.maximum(weight, 1e-12)[..., None]
        return np.where(weight[..., None] > 1e-6, blended, raw).astype(np.float32)

    def result(self, height: int, width: int) -> np.ndarray:
        """Divide by the weights in place and crop: (height·s, width·s, C_out)."""
        total = np.maximum(self.rows.total, 1e-12)
        for top in range(0, self.acc.shape[0], 256):  # in bands: no full-size temporary
            band = self.acc[top : top + 256]
            band /= total[top : top + 256, None, None]
            band /= np.maximum(self.cols.total, 1e-12)[None, :, None]
        return self.acc[: height * self.spec.scale, : width * self.spec.scale]


def _reflect(indices: np.ndarray, length: int) -> np.ndarray:
    """Indices reflected into [0, length) (symmetric, edge pixel not repeated)."""
    if length == 1:
        return np.zeros_like(indices)
    period = 2 * (length - 1)
    i = np.mod(indices, period)
    return np.where(i >= length, period - i, i)


def _crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The tile's pixels, reflected past the photo's border: (C, h, w) float32."""
    h, w = image.shape[:2]
    rows = _reflect(np.arange(box.top, box.bottom), h)
    cols = _reflect(np.arange(box.left, box.right), w)
    if box.bottom <= h and box.right <= w:
        tile = image[box.top : box.bottom, box.left : box.right]
    else:
        tile = image[rows][:, cols]
    return np.ascontiguousarray(np.moveaxis(tile, -1, 0), dtype=np.float32)


def _call(fn: TileFn, tiles: list[np.ndarray], boxes: list[Box], spec: TileSpec,
          device: torch.device) -> list[np.ndarray]:
    """Run ``fn`` on a batch; outputs (h·s, w·s, C_out) float32 on the host."""
    x = torch.from_numpy(np.stack(tiles)).to(device)
    with torch.inference_mode():
        y = fn(x, boxes)
    h, w = tiles[0].shape[-2:]
    expected = (len(tiles), spec.out_channels, h * spec.scale, w * spec.scale)
    if tuple(y.shape) != expected:
        raise EngineError(f"the network returned a {tuple(y.shape)} tile where {expected} was expected")
    y = y.float()
    if not bool(torch.isfinite(y).all()):
        raise NumericalError("the network produced invalid values (NaN or infinity); the model file may be "
                             "damaged: check it under Models (verify), or choose fp32 precision")
    return list(y.permute(0, 2, 3, 1).cpu().numpy())


def _compute_tile(fn: TileFn, tile: np.ndarray, box: Box, spec: TileSpec, device: torch.device,
                  cancel) -> np.ndarray:
    """One tile; out of memory, 2 × 2 overlapping sub-tiles blended the same way."""
    try:
        return _call(fn, [tile], [box], spec, device)[0]
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is an out-of-memory we can split
        if not is_out_of_memory(exc):
            raise
        release_cached_memory(device)
        half = _ceil_to(max(box.height, box.width) // 2 + spec.overlap, spec.multiple)
        if half >= max(box.height, box.width) or half < max(MIN_SPLIT_TILE, 2 * spec.overlap + 1):
            raise OutOfMemory("the device ran out of memory on the smallest tile; try the CPU or a lower "
                              "precision, or close other programs using the GPU") from exc
    image = np.moveaxis(tile, 0, -1)
    sub = dataclasses.replace(spec, tile=half, batch=1)
    boxes = plan_tiles(box.height, box.width, sub)
    canvas = _Canvas(boxes, box.height, box.width, sub)
    for i, b in enumerate(boxes):
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        sub_box = Box(box.top + b.top, box.left + b.left, b.height, b.width)  # where it lies in the photo
        out = _compute_tile(fn, _crop(image, b), sub_box, sub, device, cancel)
        canvas.add(i, out)
    return canvas.result(box.height, box.width)


def run_tiles(fn: TileFn, image: np.ndarray, spec: TileSpec, *, device: torch.device, cancel=None,
              stage: str = "cleanup", progress=None, done: Optional[Mapping[int, np.ndarray]] = None,
              on_tile: Optional[Callable[[int, np.ndarray], None]] = None,
              scale_to_output: float = 1.0, units_per_tile: int = 1) -> Generator[Event, None, np.ndarray]:
    """Run ``fn`` over blended tiles of ``image`` (H, W, C_in) float32 on the host; return the
    (H·scale, W·scale, C_out) float32 result (``result = yield from run_tiles(...)``).

    Yields a :class:`PlanEvent` (boxes in this stage's output pixels; ``scale_to_output`` maps them
    to the final output), :class:`WindowStarted` / :class:`WindowFinished` per tile (pixels: the
    blended result so far in that tile) and, with ``progress`` (an ``engine.tiling.msr.Progress``
    whose ``total`` the caller set), a progress event after each tile, which counts
    ``units_per_tile`` (a tile's share of the run's progress bar). ``done``: raw outputs of
    tiles finished by an earlier run (resume), not recomputed; ``on_tile(index, output)`` after
    each computed tile. ``cancel`` (a ``threading.Event``) is checked before every network call.
    """
    if image.ndim != 3 or image.shape[2] != spec.in_channels:
        raise EngineError(f"expected an (H, W, {spec.in_channels}) image, got shape {image.shape}")
    height, width = image.shape[:2]
    side = tile_side(spec, device)
    hp, wp, _, _ = padded_size(height, width, spec, side)
    boxes = plan_tiles(height, width, spec, side)
    canvas = _Canvas(boxes, hp, wp, spec)
    s = spec.scale
    out_boxes = tuple(b.scaled(s) for b in boxes)
    yield PlanEvent((hp * s, wp * s), out_boxes, tuple(0 for _ in boxes), stage, scale_to_output, tiles=True)
    done = dict(done or {})
    for i in sorted(done):
        canvas.add(i, done[i])
    for i in sorted(done):
        yield WindowFinished(i, out_boxes[i], canvas.region(i, done[i]), stage, scale_to_output, resumed=True)
    todo = [i for i in range(len(boxes)) if i not in done]
    batch = spec.batch
    while todo:
        chunk, todo = todo[:batch], todo[batch:]
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        for i in chunk:
            yield WindowStarted(i, out_boxes[i], stage)
        tiles = [_crop(image, boxes[i]) for i in chunk]
        try:
            outs = _call(fn, tiles, [boxes[i] for i in chunk], spec, device) if len(chunk) > 1 else \
                [_compute_tile(fn, tiles[0], boxes[chunk[0]], spec, device, cancel)]
        except Exception as exc:  # noqa: BLE001 - a batch that does not fit is split in two
            if len(chunk) == 1 or not is_out_of_memory(exc):
                raise
            release_cached_memory(device)
            batch = max(1, len(chunk) // 2)
            todo = chunk + todo
            yield LogEvent("warning", f"out of memory with {len(chunk)} tiles at once; retrying {batch} at a time")
            continue
        for i, out in zip(chunk, outs):
            canvas.add(i, out)
            if on_tile is not None:
                on_tile(i, out)
            yield WindowFinished(i, out_boxes[i], canvas.region(i, out), stage, scale_to_output)
        if progress is not None:
            progress.done += len(chunk) * units_per_tile
            progress.batches += 1
            yield progress.event()
    return canvas.result(height, width)
