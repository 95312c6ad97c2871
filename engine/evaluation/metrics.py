"""Image quality metrics on [0, 1] images: PSNR, SSIM (Wang et al. 2004) and data consistency.

Images are numpy arrays or torch tensors, (H, W), (H, W, C) or (C, H, W)/(B, C, H, W) when
``channels_first=True``, with values in [0, 1]. Colour SSIM is the mean of the per-channel
SSIMs (as ``skimage.metrics.structural_similarity(..., channel_axis=-1)`` computes it).
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = Union[np.ndarray, torch.Tensor]

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _to_chw64(image: ArrayLike, channels_first: bool) -> torch.Tensor:
    """Any supported layout -> (C, H, W) float64 CPU tensor."""
    t = torch.from_numpy(np.asarray(image)) if not isinstance(image, torch.Tensor) else image
    t = t.detach().to("cpu", torch.float64)
    if t.ndim == 2:
        return t.unsqueeze(0)
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {t.shape[0]}")
        t = t[0]
        channels_first = True
    if t.ndim != 3:
        raise ValueError(f"expected an image of 2 or 3 dimensions, got shape {tuple(t.shape)}")
    return t if channels_first else t.permute(2, 0, 1)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")


def mse(image: ArrayLike, reference: ArrayLike, *, channels_first: bool = False) -> float:
    """Mean squared error between two [0, 1] images of the same shape."""
    a, b = _to_chw64(image, channels_first), _to_chw64(reference, channels_first)
    _check_pair(a, b)
    return float(((a - b) ** 2).mean())


def psnr(image: ArrayLike, reference: ArrayLike, *, data_range: float = 1.0, channels_first: bool = False) -> float:
    """Peak signal-to-noise ratio in dB, 10·log10(range² / MSE); ``inf`` for identical images."""
    err = mse(image, reference, channels_first=channels_first)
    if err == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / err)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 2-D Gaussian, (size, size) float64, summing to 1."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_map(
    image: ArrayLike,
    reference: ArrayLike,
    *,
    data_range: float = 1.0,
    channels_first: bool = False,
    window: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
) -> torch.Tensor:
    """Per-pixel SSIM, (C, H − window + 1, W − window + 1) float64, over the fully covered pixels.

    Local statistics use the Gaussian window with population (1/N-style, weights summing to 1)
    variances, C1 = (K1·L)², C2 = (K2·L)². Only positions where the whole window lies inside
    the image are kept, which equals skimage's reflect-filter-then-crop result exactly.
    """
    a, b = _to_chw64(image, channels_first), _to_chw64(reference, channels_first)
    _check_pair(a, b)
    if min(a.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}×{window} pixels, got {tuple(a.shape[-2:])}")
    channels = a.shape[0]
    kernel = gaussian_window(window, sigma).expand(channels, 1, window, window)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x.unsqueeze(0), kernel, groups=channels)[0]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return num / den


def ssim(image: ArrayLike, reference: ArrayLike, *, data_range: float = 1.0, channels_first: bool = False) -> float:
    """Mean SSIM in [-1, 1] (1 for identical images); colour images average their channels."""
    return float(ssim_map(image, reference, data_range=data_range, channels_first=channels_first).mean())


def consistency(observed: torch.Tensor, target: torch.Tensor) -> float:
    """Relative data inconsistency ‖A x − y‖ / ‖y‖ given ``observed`` = A x and ``target`` = y.

    Both are tensors of the same shape in model space ([-1, 1]); 0 means perfectly consistent.
    """
    diff = torch.linalg.vector_norm((observed - target).double())
    ref = torch.linalg.vector_norm(target.double()).clamp_min(1e-12)
    return float(diff / ref)
