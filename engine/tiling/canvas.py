"""The compact host canvas finished windows are written to.

Pixels are stored as ``uint16`` (H, W, 3) in [0, 1] (step 1/65535 ≈ 1.5e-5: finer than float16
near 1.0, half the size of float32), together with a ``bool`` (H, W) map of written pixels. The
full-size image therefore costs 6 bytes per pixel on the host and nothing on the device: windows
read their known pixels from here and write only their new pixels back.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from engine.geometry import Box

_MAX = 65535.0


class Canvas:
    """``pixels`` (H, W, 3) uint16 and ``written`` (H, W) bool, on the host."""

    def __init__(self, height: int, width: int, pixels: Optional[np.ndarray] = None, written: Optional[np.ndarray] = None):
        self.height, self.width = int(height), int(width)
        self.pixels = pixels if pixels is not None else np.zeros((height, width, 3), np.uint16)
        self.written = written if written is not None else np.zeros((height, width), bool)
        if self.pixels.shape != (height, width, 3) or self.pixels.dtype != np.uint16:
            raise ValueError(f"canvas pixels must be uint16 ({height}, {width}, 3), got {self.pixels.dtype} {self.pixels.shape}")

    # -- reading --------------------------------------------------------------------------------
    def known(self, boxes: list[Box], device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """For each box: mask (B, 1, h, w) 1 = already written, values (B, 3, h, w) in [-1, 1]."""
        masks, values = [], []
        for box in boxes:
            rows, cols = box.slices()
            masks.append(torch.from_numpy(self.written[rows, cols].astype(np.float32))[None])
            values.append(torch.from_numpy(self.pixels[rows, cols].astype(np.float32)).permute(2, 0, 1))
        mask = torch.stack(masks).to(device=device, dtype=dtype)
        vals = torch.stack(values).to(device=device, dtype=dtype)
        return mask, vals * (2.0 / _MAX) - 1.0

    def region(self, box: Box) -> np.ndarray:
        """(h, w, 3) float32 in [0, 1] copy of a box."""
        rows, cols = box.slices()
        return self.pixels[rows, cols].astype(np.float32) / _MAX

    def to_float(self, height: Optional[int] = None, width: Optional[int] = None) -> np.ndarray:
        """The top-left ``height × width`` part as float32 (H, W, 3) in [0, 1] (the final result)."""
        h = self.height if height is None else height
        w = self.width if width is None else width
        out = np.empty((h, w, 3), np.float32)
        step = 256  # convert in row bands: no second full-size temporary
        for r in range(0, h, step):
            np.multiply(self.pixels[r : min(r + step, h), :w], 1.0 / _MAX, out=out[r : r + step], casting="unsafe")
        return out

    def to_tensor(self) -> torch.Tensor:
        """(1, 3, H, W) float32 in [-1, 1] on the host (used for the small HiR phase-1 canvas)."""
        return torch.from_numpy(self.to_float()).permute(2, 0, 1)[None] * 2.0 - 1.0

    # -- writing --------------------------------------------------------------------------------
    def write(self, box: Box, x: torch.Tensor) -> None:
        """Store the not-yet-written pixels of window ``x`` (3, h, w) in [-1, 1] at ``box``."""
        rows, cols = box.slices()
        new = ~self.written[rows, cols]
        if not new.any():
            return
        quantised = quantise(x)
        target = self.pixels[rows, cols]
        target[new] = quantised[new]
        self.written[rows, cols] = True


def quantise(x: torch.Tensor) -> np.ndarray:
    """(3, h, w) in [-1, 1] (any device) -> (h, w, 3) uint16 in [0, 65535], clipped."""
    v = ((x.detach().float().clamp(-1, 1) + 1.0) * (_MAX / 2.0)).round()
    return v.to(torch.int32).permute(1, 2, 0).cpu().numpy().astype(np.uint16)


def to_unit_float(x: torch.Tensor) -> np.ndarray:
    """(3, h, w) in [-1, 1] -> (h, w, 3) float32 in [0, 1] on the host (events, previews)."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 0.5).permute(1, 2, 0).cpu().numpy()
