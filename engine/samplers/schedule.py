"""Noise schedule (linear β), respacing to fewer steps, and the RePaint time-travel schedule.

Everything here is plain Python / float64 CPU tensors computed once per run, so the sampler loop
reads schedule scalars as Python floats and never syncs with the device.

Respacing (``spacing``):

* ``"even"`` (default, hq_demo / guided-diffusion ``space_timesteps``): the k-th of T timesteps is
  ``round(k · t_top / (T − 1))``, so the schedule contains both ``t_top`` (999: the noisiest level,
  which matches the pure-noise start x_T best) and 0. T = 100 gives 0, 10, 20, …, 989, 999.
* ``"skip"`` (DDNM ``main.py``): multiples of ``skip = (t_top + 1) // T``; T = 100 gives
  0, 10, …, 990 (the first network call is at 990, not 999).

Time travel (RePaint ``get_schedule_jump``) works on *indices* into the respaced timesteps
(index k ↔ timesteps[k], −1 ↔ "done"): descending one index is a denoiser call, ascending one
index is a forward-noising "up" step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch

NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 1e-4
BETA_END = 0.02

Spacing = Literal["even", "skip"]


def linear_betas(num_steps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """β_t, linear from 1e-4 to 0.02, float64 CPU tensor of shape (num_steps,)."""
    return torch.linspace(BETA_START, BETA_END, num_steps, dtype=torch.float64)


def alphas_cumprod_of(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = ∏_{s≤t} (1 − β_s), float64, same shape as ``betas``."""
    return torch.cumprod(1.0 - betas.double(), dim=0)


def respaced_timesteps(steps: int, t_top: int = NUM_TRAIN_TIMESTEPS - 1, spacing: Spacing = "even") -> list[int]:
    """``steps`` original timesteps in [0, t_top], ascending and distinct (see module doc)."""
    if not 1 <= steps <= t_top + 1:
        raise ValueError(f"steps must be in 1..{t_top + 1}, got {steps}")
    if spacing == "even":
        if steps == 1:
            return [t_top]
        stride = t_top / (steps - 1)
        return [int(round(k * stride)) for k in range(steps)]
    if spacing == "skip":
        skip = (t_top + 1) // steps
        return [k * skip for k in range(steps)]
    raise ValueError(f"unknown spacing {spacing!r} (use 'even' or 'skip')")


def jump_indices(steps: int, travel_length: int = 1, travel_repeat: int = 1) -> list[int]:
    """RePaint time-travel path over schedule indices: starts at ``steps − 1``, ends at −1.

    Each index j ∈ {0, L, 2L, …} with j < steps − L gets ``r − 1`` travels: whenever the path
    has just descended to j and travels are left there, it climbs L single indices back up and
    descends again. With L = 1, r = 1 (or r = 1 for any L) the path is plain descent.
    Calls (descents) = steps + L · (number of travels).
    """
    if steps < 1 or travel_length < 1 or travel_repeat < 1:
        raise ValueError("steps, travel length and travel repeat must all be ≥ 1")
    remaining = {j: travel_repeat - 1 for j in range(0, steps - travel_length, travel_length)}
    path: list[int] = []
    t = steps
    while t >= 1:
        t -= 1
        path.append(t)
        if remaining.get(t, 0) > 0:
            remaining[t] -= 1
            for _ in range(travel_length):
                t += 1
                path.append(t)
    path.append(-1)
    _check_path(path, steps)
    return path


def _check_path(path: list[int], steps: int) -> None:
    moves = [b - a for a, b in zip(path, path[1:])]
    if any(abs(m) != 1 for m in moves):
        raise AssertionError("time-travel path must move by ±1")
    if len(path) > 1 and moves[0] != -1:
        raise AssertionError("time-travel path must start by descending")
    if path[-1] != -1 or not all(-1 <= p <= steps - 1 for p in path):
        raise AssertionError("time-travel path must stay in [-1, steps-1] and end at -1")


@dataclass(frozen=True)
class Schedule:
    """A sampling plan in original timesteps.

    ``pairs``: list of (t, t_next); t_next < t is a denoiser step (t_next = −1 on the last one),
    t_next > t is a time-travel up-step. ``alphas_cumprod``: float64 CPU tensor (1000,).
    """

    timesteps: tuple[int, ...]  # respaced, ascending
    pairs: tuple[tuple[int, int], ...]
    alphas_cumprod: torch.Tensor = field(repr=False, compare=False)
    travel_length: int = 1
    travel_repeat: int = 1
    spacing: str = "even"
    _ab: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ab", tuple(self.alphas_cumprod.tolist()))

    @property
    def num_calls(self) -> int:
        """Denoiser evaluations the schedule makes (descending pairs)."""
        return sum(1 for t, t_next in self.pairs if t_next < t)

    @property
    def num_up_steps(self) -> int:
        return sum(1 for t, t_next in self.pairs if t_next > t)

    @property
    def first_t(self) -> int:
        """Timestep of the first denoiser call: x_T must be noised to this level."""
        return self.pairs[0][0]

    @property
    def betas(self) -> torch.Tensor:
        """The original (not respaced) β_t, float64 (1000,)."""
        ab = self.alphas_cumprod
        prev = torch.cat([ab.new_ones(1), ab[:-1]])
        return 1.0 - ab / prev

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t as a Python float; ᾱ_{−1} = 1."""
        return 1.0 if t < 0 else self._ab[t]

    def respaced_beta(self, t_from: int, t_to: int) -> float:
        """β of the respaced step between two timesteps: 1 − ᾱ_{max}/ᾱ_{min} (order-free)."""
        lo, hi = min(t_from, t_to), max(t_from, t_to)
        return 1.0 - self.alpha_bar(hi) / self.alpha_bar(lo)

    def posterior(self, t: int, t_next: int) -> tuple[float, float, float]:
        """DDPM posterior q(x_{t_next} | x_t, x0) on the respaced chain: (coef1, coef2, variance).

        mean = coef1 · x0 + coef2 · x_t. For t_next = −1: (1, 0, 0).
        """
        a, a_next = self.alpha_bar(t), self.alpha_bar(t_next)
        beta = 1.0 - a / a_next
        coef1 = beta * math.sqrt(a_next) / (1.0 - a)
        coef2 = (1.0 - a_next) * math.sqrt(1.0 - beta) / (1.0 - a)
        variance = beta * (1.0 - a_next) / (1.0 - a)
        return coef1, coef2, variance


def make_schedule(
    steps: int = 100,
    travel_length: int = 1,
    travel_repeat: int = 1,
    t_start: Optional[int] = None,
    spacing: Spacing = "even",
) -> Schedule:
    """Respaced schedule with optional RePaint time travel.

    ``steps``: denoiser steps without travel (1..t_top+1). ``t_start``: top original timestep
    (default 999); a smaller value respaces ``steps`` steps over [0, t_start] — for starting from
    a noised estimate (HiR phase 2); noise it to ``schedule.first_t`` (== t_start for "even").
    """
    t_top = NUM_TRAIN_TIMESTEPS - 1 if t_start is None else int(t_start)
    if not 0 <= t_top <= NUM_TRAIN_TIMESTEPS - 1:
        raise ValueError(f"t_start must be in 0..{NUM_TRAIN_TIMESTEPS - 1}, got {t_start}")
    timesteps = respaced_timesteps(steps, t_top, spacing)
    path = jump_indices(steps, travel_length, travel_repeat)
    as_t = [timesteps[k] if k >= 0 else -1 for k in path]
    pairs = tuple(zip(as_t, as_t[1:]))
    return Schedule(
        timesteps=tuple(timesteps),
        pairs=pairs,
        alphas_cumprod=alphas_cumprod_of(linear_betas()),
        travel_length=travel_length,
        travel_repeat=travel_repeat,
        spacing=spacing,
    )
