"""ResShift's residual-shifting diffusion: the schedule and the sampling loop, our implementation.

The forward process moves the latent of the clean photo x0 towards the latent y of the
(bicubic-upsampled) low-resolution photo: ``x_t = x0 + η_t (y − x0) + κ √η_t ε``. Sampling starts at
``x_T = y + κ √η_T ε`` and takes ``steps`` steps back with the denoiser's x0 prediction:

    x0  = f(x_t / √(κ² η_t + 1), t, photo)
    x_{t−1} = (η_{t−1}/η_t) x_t + (α_t/η_t) x0 + √(κ² η_{t−1} α_t / η_t) ε    (α_t = η_t − η_{t−1})

with no noise at the last step; the variance of the first step back is the public code's clipped
one (that of the second step). The schedule √η_t is exponential in a power-warped time:
``√η_t = √η_1 · b^{(t/(T−1))^p (T−1)}`` with ``√η_1 = min(min_noise_level/κ, min_noise_level)``
and ``b = (√η_T/√η_1)^{1/(T−1)}`` where ``√η_T = etas_end`` — the public
``get_named_eta_schedule('exponential')``. Coefficients are computed in float64 and used in float32,
as the public code does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

#: denoise(x_scaled (B, C, h, w), t (B,) int64) -> predicted x0, same shape.
Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: noise(draw) -> standard normal noise shaped like the latent; draw 0 is x_T's, draw k ≥ 1 the
#: one added after step T−k (the last step's draw is made, as in the public code, and unused).
Noise = Callable[[int], torch.Tensor]


@dataclass(frozen=True)
class ResShiftSchedule:
    """The diffusion settings of a ResShift model (its config's ``diffusion.params``). Defaults:
    the real-world ×4 model v3 (``realsr_swinunet_realesrgan256_journal.yaml``)."""

    steps: int = 4
    kappa: float = 2.0
    min_noise_level: float = 0.2
    etas_end: float = 0.99
    power: float = 0.3
    scale: int = 4  # sf: the low-resolution photo is upsampled this much before encoding

    def sqrt_etas(self) -> np.ndarray:
        """√η_t for t = 0 … steps−1 (float64)."""
        start = min(self.min_noise_level / self.kappa, self.min_noise_level)
        growth = math.exp(math.log(self.etas_end / start) / (self.steps - 1))
        warped = np.linspace(0, 1, self.steps, endpoint=True) ** self.power * (self.steps - 1)
        return np.power(np.full(self.steps, growth), warped) * start

    def coefficients(self) -> dict[str, np.ndarray]:
        """Per-step float64 arrays: ``etas``, ``input_std`` (√(κ²η_t+1): the denoiser's input is
        divided by it), ``keep`` (η_{t−1}/η_t), ``take`` (α_t/η_t), ``noise_std`` (√ of the clipped
        posterior variance) and ``prior_std`` (κ√η_t, of which x_T uses the last)."""
        sqrt_etas = self.sqrt_etas()
        etas = sqrt_etas ** 2
        prev = np.append(0.0, etas[:-1])
        alpha = etas - prev
        variance = self.kappa ** 2 * prev / etas * alpha
        clipped = np.append(variance[1], variance[1:])
        return {"etas": etas, "input_std": np.sqrt(etas * self.kappa ** 2 + 1), "keep": prev / etas,
                "take": alpha / etas, "noise_std": np.exp(0.5 * np.log(clipped)), "prior_std": self.kappa * sqrt_etas}


#: Known ResShift models' schedules (not in their weights): the catalog id -> its config's settings.
#: v1/v2 (15 steps) share the v3 network layout; a file of unknown origin gets the v3 schedule.
SCHEDULES = {
    "resshift-realsr-x4": ResShiftSchedule(),
    "resshift-realsr-x4-v2": ResShiftSchedule(steps=15, min_noise_level=0.04),
}


def sample_latent(denoise: Denoise, y: torch.Tensor, schedule: ResShiftSchedule, noise: Noise,
                  check: Optional[Callable[[], None]] = None) -> torch.Tensor:
    """Run the reverse chain from the photo's latent ``y`` (B, C, h, w) float32; returns x_0's
    latent (float32). ``check()`` runs before every denoiser call (raise there to cancel)."""
    c = {k: torch.tensor(v, dtype=torch.float32) for k, v in schedule.coefficients().items()}
    last = schedule.steps - 1
    x = y + c["prior_std"][last].item() * noise(0)
    for draw, t in enumerate(range(last, -1, -1), start=1):
        if check is not None:
            check()
        steps = torch.full((y.shape[0],), t, dtype=torch.long, device=y.device)
        x0 = denoise(x / c["input_std"][t].item(), steps).float()
        fresh = noise(draw)
        x = c["keep"][t].item() * x + c["take"][t].item() * x0
        if t > 0:
            x = x + c["noise_std"][t].item() * fresh
    return x
