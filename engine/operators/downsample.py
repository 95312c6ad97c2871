"""Super-resolution operators: s×s average pooling (any integer s) and DDRM-style bicubic."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from engine.errors import InputError
from engine.geometry import Box
from engine.operators.base import Operator
from engine.operators.registry import register_operator
from engine.operators.separable import SeparableOperator, reflect_index


def _check_divisible(n: int, scale: int, what: str) -> None:
    if n % scale:
        raise InputError(f"image {what} {n} is not a multiple of the upscale factor {scale}")


@register_operator("sr_avgpool")
class AvgPoolSR(Operator):
    """A = s×s average pooling, A† = nearest replication of each low-res pixel into an s×s block.

    Rows of A are orthogonal with norm 1/s, so A† = s² Aᵀ = replication is the exact Moore-Penrose
    pseudo-inverse and A A† = I. Input (B, C, H, W) with H, W multiples of s -> (B, C, H/s, W/s).
    """

    full_range = True

    def __init__(self, scale: int):
        if int(scale) != scale or scale < 1:
            raise InputError(f"the upscale factor must be a whole number ≥ 1, got {scale}")
        self.scale = int(scale)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        _check_divisible(x.shape[-2], self.scale, "height")
        _check_divisible(x.shape[-1], self.scale, "width")
        return F.avg_pool2d(x, self.scale) if self.scale > 1 else x

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        s = self.scale
        return y.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1) if s > 1 else y

    def noise_gain(self) -> float:
        """Replication copies the noise: per-pixel std 1."""
        return 1.0

    def restrict(self, box: Box) -> "AvgPoolSR":
        box.divided(self.scale)  # raises ValueError when the window is not aligned to the blocks
        return self


def bicubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter ``a`` (support [-2, 2])."""
    ax = np.abs(x)
    near = ((a + 2) * ax - (a + 3)) * ax * ax + 1
    far = a * (((ax - 5) * ax + 8) * ax - 4)
    return np.where(ax <= 1, near, np.where(ax < 2, far, 0.0))


def bicubic_taps(scale: int) -> np.ndarray:
    """The 4·s normalised taps of DDRM's SRConv: x_i = (i − 2s + 0.5)/s for i in 0..4s−1."""
    x = (np.arange(4 * scale) - 2 * scale + 0.5) / scale
    w = bicubic(x)
    return w / w.sum()


def bicubic_matrix(n: int, scale: int) -> np.ndarray:
    """1-D bicubic downscaling matrix (n/s, n): stride s, reflect padding, rows sum to 1.

    Low-res pixel r is centred at c = r·s + (s − 1)/2 and pixel j gets weight W((j − c)/s). For
    even s this is exactly DDRM's SRConv matrix (taps of :func:`bicubic_taps`); for odd s DDRM's
    centre is half a pixel off and we use the true block centre instead.
    """
    _check_divisible(n, scale, "size")
    out = np.zeros((n // scale, n))
    for r in range(n // scale):
        centre = r * scale + (scale - 1) / 2
        js = np.arange(math.floor(centre - 2 * scale) + 1, math.ceil(centre + 2 * scale))
        w = bicubic((js - centre) / scale)
        w /= w.sum()
        for j, wj in zip(js, w):
            out[r, reflect_index(int(j), n)] += wj
    return out


@register_operator("sr_bicubic")
class BicubicSR(SeparableOperator):
    """Separable bicubic (a = −0.5) downscaling by s with a truncated-SVD pseudo-inverse.

    Works on any H, W divisible by s (matrices built per size and cached). ``restrict`` returns the
    same operator, which then acts on the window alone: the window's border rows use reflected
    window pixels instead of the neighbouring image pixels the full-image operator would see (an
    approximation confined to a 2·s-pixel band at window edges).
    """

    def __init__(self, scale: int, threshold: float = 3e-2, size_hint: tuple[int, int] | None = None):
        super().__init__(threshold=threshold, size_hint=size_hint)
        if int(scale) != scale or scale < 2:
            raise InputError(f"bicubic downscaling needs a whole factor ≥ 2, got {scale}")
        self.scale = int(scale)

    def axis_matrix(self, n: int, axis: int) -> np.ndarray:
        return bicubic_matrix(n, self.scale)

    def restrict(self, box: Box) -> "BicubicSR":
        box.divided(self.scale)
        return self
