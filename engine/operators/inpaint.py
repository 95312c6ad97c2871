"""Inpainting: A = M ⊙ x with a keep-mask M (1 = known pixel, 0 = missing)."""

from __future__ import annotations

import torch

from engine.geometry import Box
from engine.operators.base import Operator
from engine.operators.registry import register_operator


@register_operator("inpaint")
class InpaintOperator(Operator):
    """A x = M ⊙ x, A† y = M ⊙ y (M is an orthogonal projection, so A† = A exactly).

    ``keep`` is (B or 1, 1, H, W), 1 where the pixel is known. Values are rounded to {0, 1} so the
    operator stays a projection. The mask broadcasts over channels, so the same operator works on
    3-channel images and on 1-channel (gray) observations.
    """

    full_range = False

    def __init__(self, keep: torch.Tensor):
        if keep.dim() != 4 or keep.shape[1] != 1:
            raise ValueError(f"keep mask must be (B or 1, 1, H, W), got {tuple(keep.shape)}")
        self.keep = (keep > 0.5).to(keep.dtype if keep.is_floating_point() else torch.float32)

    def _mask_for(self, t: torch.Tensor) -> torch.Tensor:
        if self.keep.shape[-2:] != t.shape[-2:]:
            raise ValueError(f"mask is {tuple(self.keep.shape[-2:])} but the image is {tuple(t.shape[-2:])}")
        return self.keep.to(device=t.device, dtype=t.dtype)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._mask_for(x)

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        return y * self._mask_for(y)

    def noise_gain(self) -> float:
        """Known pixels carry the observation noise unchanged (gain 1); missing ones carry none."""
        return 1.0

    def restrict(self, box: Box) -> "InpaintOperator":
        rows, cols = box.slices()
        return InpaintOperator(self.keep[..., rows, cols])
