"""CGLS for the pseudo-inverse of a mask applied after a non-surjective operator."""

from __future__ import annotations

from typing import Callable

import torch

Linear = Callable[[torch.Tensor], torch.Tensor]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample inner product, shape (B, 1, 1, 1)."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.dim() - 1)))


def cgls(T: Linear, Tt: Linear, b: torch.Tensor, *, max_iter: int = 100, tol: float = 1e-7) -> torch.Tensor:
    """Minimum-norm least-squares solution w of ‖T w − b‖ for every batch sample (w0 = 0).

    Starting from zero keeps the iterates in range(Tᵀ), so the limit is T⁺ b. Stops when every
    sample's normal-equation residual ‖Tᵀ(b − T w)‖ falls below ``tol`` times its start value.
    """
    w = torch.zeros_like(b)
    r = b.clone()
    s = Tt(r)
    p = s.clone()
    gamma = _dot(s, s)
    stop = gamma.clamp_min(torch.finfo(b.dtype).tiny) * tol**2
    for _ in range(max_iter):
        if bool((gamma <= stop).all()):
            break
        q = T(p)
        qq = _dot(q, q)
        alpha = torch.where(qq > 0, gamma / qq.clamp_min(torch.finfo(b.dtype).tiny), torch.zeros_like(qq))
        w = w + alpha * p
        r = r - alpha * q
        s = Tt(r)
        gamma_new = _dot(s, s)
        beta = torch.where(gamma > 0, gamma_new / gamma.clamp_min(torch.finfo(b.dtype).tiny), torch.zeros_like(gamma))
        p = s + beta * p
        gamma = gamma_new
    return w
