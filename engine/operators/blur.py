"""Deblurring: A = convolution with a kernel (Gaussian, uniform or the user's), exact pseudo-inverse.

Convention: true convolution, y[i, j] = Σ k[a, b] · x[i − a + ca, j − b + cb] with the kernel
centre (ca, cb) = (kh // 2, kw // 2).

* Separable kernels (Gaussian, uniform, any rank-1 user kernel) use 1-D convolution matrices with
  ``reflect`` (half-sample) or ``zero`` padding and a truncated SVD (1-D singular values below
  ``threshold`` -> 0 in A and A†, as in DDRM): exact Moore-Penrose identities.
* Other kernels use the FFT with a *circular* boundary: A = F⁻¹ K̂_t F with K̂_t = K̂ where
  |K̂| ≥ threshold and 0 elsewhere; A† = F⁻¹ K̂_t⁺ F. Circulant, hence exact; the wrap-around at
  the image border is the approximation.
* ``ddrm_taps=True`` reproduces the reference's matrix loop ``range(i − k//2, i + k//2)`` that drops
  the tap at offset +k//2 of odd kernels (default: the correct symmetric kernel).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from engine.errors import InputError
from engine.operators.base import Operator
from engine.operators.registry import register_operator
from engine.operators.separable import SeparableOperator, reflect_index


def gaussian_taps(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian with radius ceil(3σ) (at least 1)."""
    if not sigma > 0:
        raise InputError(f"the blur sigma must be > 0, got {sigma}")
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def uniform_taps(size: int) -> np.ndarray:
    if int(size) != size or size < 1:
        raise InputError(f"the box blur size must be a whole number ≥ 1, got {size}")
    return np.full(int(size), 1.0 / size)


def conv_matrix(taps: np.ndarray, n: int, padding: str = "reflect", ddrm_taps: bool = False) -> np.ndarray:
    """(n, n) matrix of 1-D convolution with ``taps`` (centre len // 2)."""
    if padding not in ("reflect", "zero"):
        raise ValueError(f"padding must be 'reflect' or 'zero', got {padding!r}")
    k = len(taps)
    c = k // 2
    out = np.zeros((n, n))
    for a, w in enumerate(taps):
        offset = c - a  # y[i] += w · x[i + offset]
        if ddrm_taps and k % 2 == 1 and offset == c:
            continue
        for i in range(n):
            j = i + offset
            if 0 <= j < n:
                out[i, j] += w
            elif padding == "reflect":
                out[i, reflect_index(j, n)] += w
    return out


class SeparableBlur(SeparableOperator):
    """Blur with kernel outer(col_taps, row_taps): rows of the image see ``col_taps``."""

    def __init__(self, vertical: np.ndarray, horizontal: np.ndarray, *, padding="reflect",
                 ddrm_taps=False, threshold=3e-2, size_hint=None):
        super().__init__(threshold=threshold, size_hint=size_hint)
        self.taps = (np.asarray(vertical, np.float64), np.asarray(horizontal, np.float64))
        self.padding, self.ddrm_taps = padding, ddrm_taps

    def axis_matrix(self, n: int, axis: int) -> np.ndarray:
        return conv_matrix(self.taps[axis], n, self.padding, self.ddrm_taps)


class FFTBlur(Operator):
    """Circular 2-D convolution with a truncated-spectrum pseudo-inverse (see module doc)."""

    def __init__(self, kernel: np.ndarray, *, threshold=3e-2, ddrm_taps=False, size_hint=None):
        k = np.array(kernel, dtype=np.float64)
        if ddrm_taps:  # the reference drops the tap at offset +k//2 of odd kernels (a = 0 here)
            if k.shape[0] % 2:
                k[0, :] = 0.0
            if k.shape[1] % 2:
                k[:, 0] = 0.0
        self.kernel, self.centre = k, (k.shape[0] // 2, k.shape[1] // 2)
        self.threshold, self.size_hint = float(threshold), size_hint
        self._spectra: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, bool]] = {}
        self._tensor_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._last_size: tuple[int, int] | None = None

    def _spectrum(self, height: int, width: int):
        if (height, width) not in self._spectra:
            pad = np.zeros((height, width))
            ca, cb = self.centre
            for (a, b), w in np.ndenumerate(self.kernel):
                pad[(a - ca) % height, (b - cb) % width] += w
            full = np.fft.fft2(pad)
            keep = np.abs(full) >= self.threshold
            fwd = np.where(keep, full, 0)
            inv = np.where(keep, 1.0 / np.where(keep, full, 1), 0)
            self._spectra[(height, width)] = (fwd, inv, bool(keep.all()))
        return self._spectra[(height, width)]

    def _tensors(self, height, width, like):
        key = (height, width, like.device, like.dtype)
        if key not in self._tensor_cache:
            fwd, inv, _ = self._spectrum(height, width)
            cdt = torch.complex128 if like.dtype == torch.float64 else torch.complex64
            half = width // 2 + 1
            self._tensor_cache[key] = tuple(
                torch.as_tensor(s[:, :half], dtype=cdt).to(like.device) for s in (fwd, inv))
        self._last_size = (height, width)
        return self._tensor_cache[key]

    def _filter(self, t: torch.Tensor, which: int) -> torch.Tensor:
        height, width = t.shape[-2:]
        spectrum = self._tensors(height, width, t)[which]
        work = t if t.dtype in (torch.float32, torch.float64) else t.float()
        out = torch.fft.irfft2(torch.fft.rfft2(work) * spectrum, s=(height, width))
        return out.to(t.dtype)

    def A(self, x):
        return self._filter(x, 0)

    def A_pinv(self, y):
        return self._filter(y, 1)

    def full_range_at(self, height: int, width: int) -> bool:
        return self._spectrum(height, width)[2]

    def noise_gain(self) -> float:
        """Per-pixel std of A†n (stationary): sqrt(mean over frequencies of |K̂_t⁺|²)."""
        height, width = self.size_hint or self._last_size or (256, 256)
        inv = self._spectrum(height, width)[1]
        return float(np.sqrt(np.mean(np.abs(inv) ** 2)))


def _rank_one_factors(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    u, s, vt = np.linalg.svd(kernel)
    if len(s) > 1 and s[1] > 1e-7 * s[0]:
        return None
    col, row = u[:, 0] * math.sqrt(s[0]), vt[0] * math.sqrt(s[0])
    if col.sum() < 0:
        col, row = -col, -row
    return col, row


@register_operator("deblur")
class BlurOperator(Operator):
    """Blur by a Gaussian (``sigma``), a box (``size``) or a user ``kernel`` (2-D array, sum 1).

    ``method``: "auto" (separable SVD when the kernel is rank 1, FFT otherwise), "svd" or "fft".
    ``padding`` applies to the SVD path only. Acts on (B, C, H, W) of any size; ``restrict``
    returns the same operator, which then blurs the window alone (border pixels reflect / wrap
    inside the window instead of seeing the neighbouring image: an approximation at window edges).
    """

    def __init__(self, kernel=None, *, sigma: float | None = None, size: int | None = None,
                 padding: str = "reflect", threshold: float = 3e-2, ddrm_taps: bool = False,
                 method: str = "auto", size_hint: tuple[int, int] | None = None):
        if sum(v is not None for v in (kernel, sigma, size)) != 1:
            raise InputError("a blur needs exactly one of: kernel, sigma, size")
        if sigma is not None:
            taps, kernel2d = gaussian_taps(sigma), None
            factors = (taps, taps)
        elif size is not None:
            taps, kernel2d = uniform_taps(size), None
            factors = (taps, taps)
        else:
            if isinstance(kernel, torch.Tensor):
                kernel = kernel.detach().cpu().double().numpy()
            kernel2d = np.asarray(kernel, dtype=np.float64)
            if kernel2d.ndim != 2 or kernel2d.size == 0:
                raise InputError(f"a blur kernel must be a 2-D array, got shape {kernel2d.shape}")
            factors = _rank_one_factors(kernel2d)
        if method not in ("auto", "svd", "fft"):
            raise InputError(f"blur method must be auto, svd or fft, got {method!r}")
        if method == "svd" and factors is None:
            raise InputError("this kernel is not separable; use the FFT method")
        if method == "fft" or factors is None:
            dense = kernel2d if kernel2d is not None else np.outer(*factors)
            self.impl: Operator = FFTBlur(dense, threshold=threshold, ddrm_taps=ddrm_taps, size_hint=size_hint)
        else:
            self.impl = SeparableBlur(*factors, padding=padding, ddrm_taps=ddrm_taps,
                                      threshold=threshold, size_hint=size_hint)

    @property
    def separable(self) -> bool:
        return isinstance(self.impl, SeparableOperator)

    def A(self, x):
        return self.impl.A(x)

    def A_pinv(self, y):
        return self.impl.A_pinv(y)

    def full_range_at(self, height: int, width: int) -> bool:
        return self.impl.full_range_at(height, width)  # type: ignore[attr-defined]

    def noise_gain(self) -> float:
        return self.impl.noise_gain()
