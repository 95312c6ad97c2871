"""DDNM / DDNM+ as one generator function over a denoiser callable and a Constraint.

Two step forms (images are (B, 3, H, W) in [-1, 1]; a = ᾱ_t, a' = ᾱ_{t_next}, a' = 1 at the end):

``form="ddim"`` (DDRM/DDIM η form, DDNM main.py)::

    x0   = (x_t − √(1−a) ε) / √a
    s    = √(1−a');  n = √a' σ_y g          (g = constraint.noise_gain())
    λ    = 1 if s ≥ n else s / n             (paper Eq. 19)
    x̂0  = constraint.project(x0, λ)
    γ    = √(s² − (λ n)²)                    (std; = s when σ_y = 0, 0 when λ < 1)
    x'   = √a' x̂0 + γ (η z + √(1−η²) ε)

``form="ddpm"`` (hq_demo posterior form; η unused)::

    σ_t = √β̃_t,  a_t = coef1,  n = a_t σ_y g
    λ   = 1 if σ_t ≥ n else σ_t / n,   γ = σ_t² − (λ n)²   (a variance)
    x'  = coef1 x̂0 + coef2 x_t (+ γ ∇log p) + √γ z          (no noise on the last step)

Time-travel up-steps: forward chain q(x_t' | x_t) with the respaced β (default), or
``quirks.travel_from_x0``: re-noise the last raw x0 (main.py). Every random draw for sample i
comes from ``generators[i]``. No host syncs inside the loop: every schedule scalar is a Python
float computed before the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Optional, Sequence, Union

import torch

from engine.errors import Cancelled
from engine.operators.base import Constraint
from engine.request import Quirks
from engine.samplers.noise import per_sample_randn
from engine.samplers.schedule import Schedule

Form = Literal["ddim", "ddpm"]
GuidanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SamplerStep:
    """One denoiser call's outcome.

    ``x_t``: the sample after the step, at level ``t_next`` (B, 3, H, W); ``x0_hat``: the corrected
    clean estimate (B, 3, H, W) in about [-1, 1] — on the last step (t_next == −1) it is the
    result. ``calls``: denoiser evaluations so far; ``total_calls``: for the whole schedule.
    ``lam``: the DDNM+ correction strength λ used at this step.
    """

    t: int
    t_next: int
    x_t: torch.Tensor
    x0_hat: torch.Tensor
    calls: int
    total_calls: int
    lam: float = 1.0

    @property
    def is_last(self) -> bool:
        return self.t_next < 0


def ddim_eq19(alpha_bar_next: float, sigma_y: float, gain: float = 1.0, simplified_noise: bool = False) -> tuple[float, float]:
    """(λ, γ) of Eq. 19 in the DDIM η form; γ is the std multiplying (η z + √(1−η²) ε).

    ``simplified_noise`` reproduces main.py --simplified: s = √(1 − a'²), the threshold uses a'
    (not √a'), and the noise term is additionally scaled by √(1−a').
    """
    a1 = alpha_bar_next
    if simplified_noise:
        s, c = math.sqrt(max(1.0 - a1 * a1, 0.0)), a1
    else:
        s, c = math.sqrt(max(1.0 - a1, 0.0)), math.sqrt(a1)
    noise = c * sigma_y * gain
    if s >= noise:
        lam, gamma = 1.0, math.sqrt(max(s * s - noise * noise, 0.0))
    else:
        lam, gamma = s / noise, 0.0
    if simplified_noise:
        gamma *= math.sqrt(max(1.0 - a1, 0.0))
    return lam, gamma


def ddpm_eq19(sigma_t: float, a_t: float, sigma_y: float, gain: float = 1.0, lambda_precedence: bool = False) -> tuple[float, float]:
    """(λ, γ) of Eq. 19 in the DDPM posterior form; γ is a variance.

    ``lambda_precedence`` reproduces hq_demo's λ = σ_t / a_t · σ_y (γ = 0 in that branch, as there).
    """
    noise = a_t * sigma_y * gain
    if sigma_t >= noise:
        return 1.0, max(sigma_t * sigma_t - noise * noise, 0.0)
    lam = sigma_t / a_t * (sigma_y * gain) if lambda_precedence else sigma_t / noise
    return lam, 0.0


@dataclass(frozen=True)
class _StepPlan:
    """Python-float scalars for one schedule pair (no tensors: nothing to read back)."""

    t: int
    t_next: int
    up: bool
    sqrt_a: float = 1.0  # √ᾱ_t
    sqrt_1ma: float = 0.0  # √(1−ᾱ_t)
    lam: float = 1.0
    gamma: float = 0.0  # ddim: noise std; ddpm: variance
    x0_coef: float = 1.0  # ddim: √ᾱ_{t_next}; ddpm: coef1
    xt_coef: float = 0.0  # ddpm: coef2
    travel_keep: float = 1.0  # up-step: x' = keep·x + add·z  (or keep·x0 + add·z)
    travel_add: float = 0.0


def _plan(schedule: Schedule, form: str, sigma_y: float, gain: float, quirks: Quirks) -> list[_StepPlan]:
    plans = []
    for t, t_next in schedule.pairs:
        if t_next > t:
            if quirks.travel_from_x0:
                a = schedule.alpha_bar(t_next)
                keep, add = math.sqrt(a), math.sqrt(1.0 - a)
            else:
                beta = schedule.respaced_beta(t, t_next)
                keep, add = math.sqrt(1.0 - beta), math.sqrt(beta)
            plans.append(_StepPlan(t, t_next, True, travel_keep=keep, travel_add=add))
            continue
        a, a1 = schedule.alpha_bar(t), schedule.alpha_bar(t_next)
        common = dict(sqrt_a=math.sqrt(a), sqrt_1ma=math.sqrt(1.0 - a))
        if form == "ddim":
            lam, gamma = ddim_eq19(a1, sigma_y, gain, quirks.simplified_noise)
            plans.append(_StepPlan(t, t_next, False, lam=lam, gamma=gamma, x0_coef=math.sqrt(a1), **common))
        else:
            coef1, coef2, variance = schedule.posterior(t, t_next)
            lam, gamma = ddpm_eq19(math.sqrt(variance), coef1, sigma_y, gain, quirks.lambda_precedence)
            if t_next < 0:
                gamma = 0.0
            plans.append(_StepPlan(t, t_next, False, lam=lam, gamma=gamma, x0_coef=coef1, xt_coef=coef2, **common))
    return plans


def sample(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x_T: torch.Tensor,
    constraint: Constraint,
    schedule: Schedule,
    *,
    eta: float = 0.85,
    sigma_y: float = 0.0,
    form: Form = "ddim",
    generators: Union[None, torch.Generator, Sequence[torch.Generator]] = None,
    guidance: Optional[GuidanceFn] = None,
    quirks: Quirks = Quirks(),
    cancel: Optional[Any] = None,
) -> Iterator[SamplerStep]:
    """Run DDNM (σ_y = 0) or DDNM+ (σ_y > 0); yield one :class:`SamplerStep` per denoiser call.

    ``x_T``: (B, 3, H, W) start sample at level ``schedule.first_t`` (pure noise from the top, or
    a noised estimate). ``sigma_y``: observation noise std in model units ([-1, 1] range).
    ``generators``: one ``torch.Generator`` per batch sample (or a single one) for all draws.
    ``guidance(x_t, t)``: scale · ∇ log p(c | x_t, t); ddim form: ε ← ε − √(1−ᾱ_t)·g, ddpm form:
    mean += γ·g. ``cancel``: object with ``is_set()``; checked before every denoiser call, raising
    :class:`engine.errors.Cancelled`. The result is the last step's ``x0_hat``.
    """
    if form not in ("ddim", "ddpm"):
        raise ValueError(f"unknown sampler form {form!r} (use 'ddim' or 'ddpm')")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if sigma_y < 0:
        raise ValueError(f"sigma_y must be ≥ 0, got {sigma_y}")
    batch = x_T.shape[0]
    if generators is not None and not isinstance(generators, torch.Generator):
        if len(generators) not in (1, batch):
            raise ValueError(f"need one generator per batch sample: got {len(generators)} for batch {batch}")
    gain = float(constraint.noise_gain())
    plans = _plan(schedule, form, float(sigma_y), gain, quirks)
    total = schedule.num_calls
    eta_z, eta_eps = float(eta), math.sqrt(max(1.0 - float(eta) ** 2, 0.0))
    device, dtype = x_T.device, x_T.dtype

    def randn() -> torch.Tensor:
        return per_sample_randn(x.shape, generators, device, dtype)

    x = x_T
    last_x0: Optional[torch.Tensor] = None
    calls = 0
    for p in plans:
        if p.up:
            base = last_x0 if quirks.travel_from_x0 and last_x0 is not None else x
            x = p.travel_keep * base + p.travel_add * randn()
            continue
        if cancel is not None and cancel.is_set():
            raise Cancelled("restoration cancelled")
        t_batch = torch.full((batch,), p.t, dtype=torch.long, device=device)
        with torch.no_grad():
            eps = denoiser(x, t_batch)
        calls += 1
        grad = guidance(x, t_batch).detach() if guidance is not None else None
        with torch.no_grad():
            if grad is not None and form == "ddim":
                eps = eps - p.sqrt_1ma * grad
            x0 = (x - p.sqrt_1ma * eps) / p.sqrt_a
            if quirks.clip_x0:
                x0 = x0.clamp(-1.0, 1.0)
            last_x0 = x0
            x0_hat = constraint.project(x0, p.lam)
            if form == "ddim":
                x_next = p.x0_coef * x0_hat
                if p.gamma > 0.0:
                    mix = eta_eps * eps
                    if eta_z > 0.0:
                        mix = mix + eta_z * randn()
                    x_next = x_next + p.gamma * mix
            else:
                x_next = p.x0_coef * x0_hat + p.xt_coef * x
                if grad is not None and p.gamma > 0.0:
                    x_next = x_next + p.gamma * grad
                if p.gamma > 0.0:
                    x_next = x_next + math.sqrt(p.gamma) * randn()
        x = x_next
        yield SamplerStep(p.t, p.t_next, x, x0_hat, calls, total, p.lam)
