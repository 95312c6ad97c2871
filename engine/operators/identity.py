"""Denoising: A = I (the photo's noise is handled by DDNM+ through σ_y)."""

from __future__ import annotations

import torch

from engine.operators.base import Operator
from engine.operators.registry import register_operator


@register_operator("denoise")
class IdentityOperator(Operator):
    """A = A† = I on (B, 3, H, W)."""

    full_range = True

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        return y
