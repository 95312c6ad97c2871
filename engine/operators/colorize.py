"""Colorization: the observation is the gray mean of R, G, B as ONE channel."""

from __future__ import annotations

import torch

from engine.operators.base import Operator
from engine.operators.registry import register_operator


@register_operator("colorize")
class ColorizeOperator(Operator):
    """A x = (R + G + B) / 3 as (B, 1, H, W); A† y = y replicated to 3 channels.

    With a = [1/3, 1/3, 1/3] per pixel, A† = aᵀ / (a aᵀ) = [1, 1, 1]ᵀ, so replication is the exact
    Moore-Penrose pseudo-inverse and A A† = I (every gray image is in the range).
    """

    full_range = True

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        if y.shape[1] != 1:
            raise ValueError(f"a gray observation has 1 channel, got {y.shape[1]}")
        return y.expand(-1, 3, -1, -1).contiguous()

    def noise_gain(self) -> float:
        """Each output channel is a copy of the observed noise: per-pixel std 1."""
        return 1.0
