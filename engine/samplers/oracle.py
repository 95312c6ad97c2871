"""An oracle denoiser: the exact ε for a known clean image, for tests and evaluation.

Given x* it returns ε = (x_t − √ᾱ_t x*) / √(1 − ᾱ_t), so the sampler's clean estimate
x0 = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t is exactly x* at every step. Sampler algebra can then be checked
to float precision without any network.
"""

from __future__ import annotations

from typing import Optional

import torch

from engine.samplers.schedule import alphas_cumprod_of, linear_betas


class OracleDenoiser:
    """Denoiser-protocol callable returning the true noise of ``x_star``.

    ``x_star``: (1 or B, 3, H, W) float in [-1, 1] (broadcast over the batch of ``x_t``).
    ``alphas_cumprod``: (1000,) float64 (default: the linear schedule).
    ``calls`` counts evaluations; ``timesteps`` keeps the ``t`` tensors it was called with
    (kept on device, no host sync).
    """

    is_random = False

    def __init__(self, x_star: torch.Tensor, alphas_cumprod: Optional[torch.Tensor] = None):
        self.x_star = x_star
        self.image_size = int(x_star.shape[-1])
        ab = alphas_cumprod if alphas_cumprod is not None else alphas_cumprod_of(linear_betas())
        self._ab = ab.to(device=x_star.device, dtype=torch.float64)
        self.calls = 0
        self.timesteps: list[torch.Tensor] = []

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t (B, 3, H, W), t (B,) int64 original timesteps -> ε (B, 3, H, W) in x_t's dtype."""
        self.calls += 1
        self.timesteps.append(t)
        ab = self._ab.to(x_t.device)[t.long()].view(-1, 1, 1, 1)
        x_star = self.x_star.to(device=x_t.device, dtype=torch.float64)
        eps = (x_t.double() - ab.sqrt() * x_star) / (1.0 - ab).sqrt()
        return eps.to(x_t.dtype)
