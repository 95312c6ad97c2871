"""Operators that act as x -> R x Cᵀ per channel, with a truncated-SVD pseudo-inverse.

Used by bicubic SR, separable blur and their product. The 1-D matrices are built lazily for each
image size (so one operator object serves windows and whole images) and cached per size, device
and dtype. Like DDRM, 1-D singular values below ``threshold`` are set to zero *in A as well as in
A†*, so A = R_t ⊗ C_t and A† = R_t† ⊗ C_t† satisfy the Moore-Penrose identities exactly.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import torch

from engine.operators.base import Operator


class _AxisFactors:
    """Truncated 1-D matrix (n_out, n), its pseudo-inverse (n, n_out) and whether rank == n_out."""

    def __init__(self, matrix: np.ndarray, threshold: float):
        u, s, vt = np.linalg.svd(matrix, full_matrices=False)
        keep = s >= threshold
        s_kept = np.where(keep, s, 0.0)
        s_inv = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
        self.forward = (u * s_kept) @ vt
        self.pinv = (vt.T * s_inv) @ u.T
        self.full_rank = bool(keep.sum() == matrix.shape[0])


def reflect_index(j: int, n: int) -> int:
    """Half-sample symmetric reflection (…, 1, 0 | 0, 1, …, n-1 | n-1, n-2, …), as DDRM pads."""
    period = 2 * n
    j %= period
    return j if j < n else period - 1 - j


def _rows_cols(rows: torch.Tensor, t: torch.Tensor, cols_t: torch.Tensor) -> torch.Tensor:
    """rows @ t @ cols_t on the last two axes of (B, C, H, W) (einsum: far faster than a
    broadcast matmul for small images)."""
    return torch.einsum("hH,bcHw->bchw", rows, t @ cols_t)


class SeparableOperator(Operator):
    """A x = R_t x C_tᵀ on every channel of (B, C, H, W); R_t (H/scale, H), C_t (W/scale, W)."""

    def __init__(self, threshold: float = 3e-2, size_hint: tuple[int, int] | None = None):
        self.threshold = float(threshold)
        self.size_hint = size_hint
        self._axis_cache: dict[tuple[int, int], _AxisFactors] = {}
        self._tensor_cache: dict[tuple, tuple[torch.Tensor, ...]] = {}
        self._last_size: tuple[int, int] | None = None

    @abstractmethod
    def axis_matrix(self, n: int, axis: int) -> np.ndarray:
        """The untruncated 1-D operator (n // scale, n), float64, for axis 0 (rows) or 1 (columns)."""

    def _axis(self, n: int, axis: int) -> _AxisFactors:
        key = (n, axis)
        if key not in self._axis_cache:
            self._axis_cache[key] = _AxisFactors(self.axis_matrix(n, axis), self.threshold)
        return self._axis_cache[key]

    def _tensors(self, height: int, width: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        key = (height, width, like.device, like.dtype)
        if key not in self._tensor_cache:
            rows, cols = self._axis(height, 0), self._axis(width, 1)
            self._tensor_cache[key] = tuple(
                torch.as_tensor(m, dtype=like.dtype).to(like.device)
                for m in (rows.forward, rows.pinv, cols.forward.T.copy(), cols.pinv.T.copy())
            )
        self._last_size = (height, width)
        return self._tensor_cache[key]

    def A(self, x: torch.Tensor) -> torch.Tensor:
        r, _, ct, _ = self._tensors(x.shape[-2], x.shape[-1], x)
        return _rows_cols(r, x, ct)

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        height, width = y.shape[-2] * self.scale, y.shape[-1] * self.scale
        _, rp, _, cpt = self._tensors(height, width, y)
        return _rows_cols(rp, y, cpt)

    def full_range_at(self, height: int, width: int) -> bool:
        """True when no singular value was truncated for this size (then A A† = I)."""
        return self._axis(height, 0).full_rank and self._axis(width, 1).full_rank

    def noise_gain(self) -> float:
        """RMS over pixels of the std of A†n (white unit n): sqrt(‖R†‖²_F/H · ‖C†‖²_F/W).

        Evaluated for ``size_hint``, else the size last used, else 256×256.
        """
        height, width = self.size_hint or self._last_size or (256, 256)
        rows, cols = self._axis(height, 0), self._axis(width, 1)
        gain2 = (rows.pinv**2).sum() / height * (cols.pinv**2).sum() / width
        return float(np.sqrt(gain2))


class SeparableProduct(SeparableOperator):
    """``outer ∘ inner`` of two separable operators, merged into one so the pinv stays exact.

    (Blur after bicubic downscaling: the product of 1-D matrices gets its own truncated SVD.)
    """

    def __init__(self, outer: SeparableOperator, inner: SeparableOperator, size_hint=None):
        super().__init__(threshold=max(outer.threshold, inner.threshold), size_hint=size_hint)
        self.outer, self.inner = outer, inner
        self.scale = outer.scale * inner.scale

    def axis_matrix(self, n: int, axis: int) -> np.ndarray:
        inner = self.inner.axis_matrix(n, axis)
        return self.outer.axis_matrix(inner.shape[0], axis) @ inner
