"""The fidelity ↔ realness control: the one place it is turned into stage-2 settings.

Stage 2 restores with the cleaned photo x1 as a *soft* observation: A = avgpool_k (composed with the
user's mask, gray and upscale operators), y = A(x1), DDNM+ with noise level σ_y. Everything finer
than k pixels of x1 is left to the diffusion prior; σ_y lets even the k-pixel averages drift
towards what the prior finds likely. One number F in [0, 1] sets both:

======  ====  ======  ======================  =====================================================
F       k     σ_y     warm start t (fast)     what it gives
======  ====  ======  ======================  =====================================================
1.0     1     0       (stage 2 skipped)       x1 exactly (plus the other tasks: fill, colorize, ×s)
0.75    2     0       250                     x1's 2×2 averages kept exactly; fine grain redrawn
0.5     4     0       400                     x1's 4×4 averages kept exactly; detail redrawn
0.25    8     0.025   550                     x1's 8×8 averages, loosely; most texture redrawn
0.0     16    0.1     700                     x1's 16×16 averages and colours, loosely
======  ====  ======  ======================  =====================================================

k = 2^round(4·(1−F)) (a power of two, so the pooling nests with the upscale factors and the
windows). σ_y = 0.1·(1 − 2F)² below F = 0.5 and 0 above (pixel units, Tasks.noise): from 0.5 to 1
the result agrees with y = A(x1) to float precision and only k changes; the realness half lets the
averages themselves go. (With σ_y > 0, DDNM+ stops correcting at the last steps, so a prior
that knew the truth exactly would return it whatever k is: measured with an oracle, docs/two-stage.md.)
The warm start (the fast preset) starts stage 2 from x1 noised to t = 100 + 600·(1−F), with
proportionally fewer steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from engine.errors import InputError

#: Pooling block at F = 0 is 2^MAX_LEVEL.
MAX_LEVEL = 4
#: σ_y (pixel units) at F = 0.
MAX_SIGMA = 0.1
#: Warm-start timestep at F = 1 and its growth towards F = 0.
START_T_MIN, START_T_SPAN = 100, 600
NUM_TIMESTEPS = 1000


@dataclass(frozen=True)
class SoftObservation:
    """Stage 2's settings for one fidelity value."""

    fidelity: float
    k: int  # average-pooling block of x1 that stage 2 must keep
    sigma_y: float  # DDNM+ noise level of y, [0, 1] pixel units (Tasks.noise)
    start_t: Optional[int] = None  # warm start: stage 2 starts from x1 noised to this timestep

    def steps(self, steps: int) -> int:
        """Denoiser steps of a stage 2 that starts at ``start_t``: proportionally fewer."""
        if self.start_t is None:
            return steps
        return max(1, math.ceil(steps * (self.start_t + 1) / NUM_TIMESTEPS))


def check_fidelity(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise InputError(f"fidelity must be a number between 0 (realness) and 1 (the cleaned photo), got {value!r}")
    return float(value)


def soft_observation(fidelity: float, warm_start: bool = False) -> SoftObservation:
    """Stage 2's (k, σ_y, start) for a fidelity F in [0, 1] (see the module doc)."""
    f = check_fidelity(fidelity)
    u = 1.0 - f
    k = 2 ** int(round(MAX_LEVEL * u))
    sigma = round(MAX_SIGMA * max(0.0, 1.0 - 2.0 * f) ** 2, 6)
    start = int(round(START_T_MIN + START_T_SPAN * u)) if warm_start else None
    return SoftObservation(f, k, sigma, start)
