"""The fast ×4 upscale of photo tiles with ResShift: one object that is both the tile function and
the tile layout of :func:`engine.tiling.blended.run_tiles` (so any stage runner can run it).

Per tile batch (input pixels in [0, 1]): the photo in [-1, 1] is upsampled ×4 (bicubic) and
encoded into the VQ-f4 latent y (the photo's own size), the chain of
:func:`engine.resshift.diffusion.sample_latent` runs from y with the photo as the denoiser's
condition, and the latent is decoded to the ×4 tile.

**Noise is a function of position.** Every random draw of a tile is cut from one noise field over
the whole (padded) latent canvas, made of 16×16 blocks each drawn from its own CPU generator
seeded from (seed, draw, block row, block column). A tile's noise therefore depends only on the
seed and its box: batching, resuming, and the tile layout itself do not change the numbers a
pixel gets, and neighbouring tiles agree where they overlap (so tiled runs differ from untiled
ones only by what each tile's network sees).

**Outputs are on a 1/65535 grid.** Tiles are rounded to 16-bit steps before blending, so a tile
saved for resume (as uint16) gives back exactly the value the uninterrupted run blended.
"""

from __future__ import annotations

import math
import threading
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from engine.errors import Cancelled
from engine.geometry import Box
from engine.models.wrappers import autocast_context
from engine.resshift.autoencoder import VQAutoencoder
from engine.resshift.diffusion import ResShiftSchedule, sample_latent
from engine.resshift.unet import SwinUNet
from engine.tiling.msr import window_seed

#: Side of the square noise blocks (latent pixels).
NOISE_BLOCK = 16
#: Input pixels shared by neighbouring tiles (ResShift's own chopping shares 64 of 512) and, at
#: each shared edge, input pixels given no weight (bicubic and convolution edges).
OVERLAP, MARGIN = 64, 8
#: Largest input tile side: a 256² tile is a 1024² output (the latent and the photo are 256²). With
#: the overlap of 64 it costs the least per output pixel: smaller tiles repeat more of their work in
#: the overlaps, larger ones pay more for the autoencoder's attention over the whole tile
#: (docs/resshift.md).
DEFAULT_TILE = 256
#: Device bytes per input pixel of one tile at batch 1, fp32 (dominated by the autoencoder's
#: 128- and 256-channel activations at output resolution, 16 output pixels per input pixel): 51 kB
#: measured on the CPU (docs/resshift.md), with a margin; halved for 16-bit precision (not measured).
DEVICE_BYTES_PER_PIXEL_FP32 = 60_000
#: Tile outputs are rounded to this many steps (16 bits) before blending (see the module doc).
LEVELS = 65535
#: On the CPU the tiles' activations are in the computer's memory: at most this share of what is available.
HOST_FRACTION = 0.5


def position_noise(seed: int, draw: int, top: int, left: int, height: int, width: int,
                   channels: int) -> torch.Tensor:
    """(channels, height, width) float32 standard normal noise of the field at (top, left) on the CPU."""
    b = NOISE_BLOCK
    r0, c0 = top // b, left // b
    r1, c1 = (top + height - 1) // b + 1, (left + width - 1) // b + 1
    field = torch.empty(channels, (r1 - r0) * b, (c1 - c0) * b)
    generator = torch.Generator()
    for r in range(r0, r1):
        for c in range(c0, c1):
            generator.manual_seed(window_seed(seed, draw, (r << 24) | c))
            field[:, (r - r0) * b : (r - r0 + 1) * b, (c - c0) * b : (c - c0 + 1) * b] = torch.randn(
                channels, b, b, generator=generator)
    return field[:, top - r0 * b : top - r0 * b + height, left - c0 * b : left - c0 * b + width]


class ResShiftUpscaler:
    """``upscaler(tiles, boxes)``: (B, 3, h, w) float32 [0, 1] on the device + the tiles' boxes
    (input pixels) -> (B, 3, 4h, 4w) float32 [0, 1] on the device; ``upscaler.spec()`` is its
    :class:`~engine.tiling.blended.TileSpec`. ``cancel`` is checked before each network call."""

    scale = 4
    in_channels = out_channels = 3

    def __init__(self, unet: SwinUNet, autoencoder: VQAutoencoder, schedule: ResShiftSchedule, *,
                 device: torch.device, precision: str = "fp32", seed: int = 1234,
                 cancel: Optional[threading.Event] = None, is_random: bool = False, name: str = ""):
        factor = autoencoder.config.factor
        if factor != schedule.scale or factor != self.scale:
            raise ValueError(f"ResShift here upscales ×{self.scale}: the autoencoder is f{factor}, "
                             f"the schedule ×{schedule.scale}")
        self.unet, self.autoencoder, self.schedule = unet, autoencoder, schedule
        self.device, self.precision, self.seed, self.cancel = device, precision, seed, cancel
        self.is_random, self.name = is_random, name

    @property
    def multiple(self) -> int:
        """Input tile sides must be multiples of this (the latent has the input's size)."""
        return self.unet.config.size_multiple

    def device_bytes_per_pixel(self) -> float:
        return DEVICE_BYTES_PER_PIXEL_FP32 / (1 if self.precision == "fp32" else 2)

    def spec(self, tile: Optional[int] = None, batch: int = 1):
        """The tile layout: ``tile`` (default :data:`DEFAULT_TILE`, and on the CPU no more than
        half the available memory holds) a multiple of :attr:`multiple`; overlap and margins shrink
        with small tiles. ``run_tiles`` makes the tile smaller where free device memory says so."""
        from engine.tiling.blended import TileSpec

        m = self.multiple
        tile = tile or DEFAULT_TILE
        if self.device.type == "cpu":
            from engine.host_memory import available_bytes

            free = available_bytes()
            if free is not None:
                tile = min(tile, math.isqrt(int(free * HOST_FRACTION / self.device_bytes_per_pixel())))
        tile = max(m, tile // m * m)
        overlap = min(OVERLAP, tile // 2)
        return TileSpec(scale=self.scale, in_channels=3, out_channels=3, tile=tile, overlap=overlap,
                        margin=min(MARGIN, overlap // 4), multiple=m, bytes_per_pixel=self.device_bytes_per_pixel(),
                        batch=batch)

    def _check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled")

    def _noise(self, boxes: Sequence[Box], height: int, width: int):
        channels = self.unet.config.latent_channels

        def draw(k: int) -> torch.Tensor:
            parts = [position_noise(self.seed, k, box.top, box.left, height, width, channels) for box in boxes]
            return torch.stack(parts).to(self.device)

        return draw

    def __call__(self, tiles: torch.Tensor, boxes: Sequence[Box]) -> torch.Tensor:
        self._check()
        photo = tiles.to(self.device, torch.float32) * 2 - 1
        height, width = photo.shape[-2:]
        dtype = next(self.unet.parameters()).dtype
        with torch.no_grad(), autocast_context(self.device, self.precision):
            upsampled = F.interpolate(photo, scale_factor=self.scale, mode="bicubic")
            y = self.autoencoder.encode(upsampled.to(dtype)).float()
            del upsampled

            def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return self.unet(x.to(dtype), t, photo.to(dtype))

            latent = sample_latent(denoise, y, self.schedule, self._noise(boxes, height, width), self._check)
            self._check()
            out = self.autoencoder.decode(latent.to(dtype)).float()
        out = out.clamp_(-1, 1).add_(1).mul_(LEVELS / 2).round_().div_(LEVELS)
        return out


def describe(schedule: ResShiftSchedule) -> str:
    """For the log: "ResShift ×4 in 4 steps"."""
    return f"ResShift ×{schedule.scale} in {schedule.steps} steps"


def quantized(raw: np.ndarray) -> np.ndarray:
    """A tile output (values on the 1/65535 grid) as uint16, for the resume folder."""
    return np.rint(raw * LEVELS).astype(np.uint16)


def from_quantized(stored: np.ndarray) -> np.ndarray:
    return stored.astype(np.float32) / np.float32(LEVELS)
