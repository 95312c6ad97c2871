"""Parity switches (reference quirks) and classifier guidance in the DDNM sampler."""

import math

import pytest
import torch

from engine.operators.base import Observation
from engine.request import Quirks
from engine.samplers import (
    OracleDenoiser,
    ddim_eq19,
    make_schedule,
    per_sample_randn,
    seeded_generators,
)

from tests.test_ddnm_sampler import AB, GaussianPriorDenoiser, MaskOp, SIZE, image, make_ops, noise, run


# ---- parity switches ----
def unobserved():
    """A constraint that constrains nothing (empty mask): x̂0 = x0."""
    op = MaskOp(torch.zeros(1, 1, SIZE, SIZE))
    return Observation(op, torch.zeros(1, 3, SIZE, SIZE))


def test_simplified_noise_quirk_scales_the_injected_noise():
    sched = make_schedule(10)
    t_next = sched.pairs[-2][1]  # a late step, where the quirk injects much less noise
    a1 = AB[t_next]
    assert ddim_eq19(a1, 0.0)[1] == pytest.approx(math.sqrt(1 - a1))
    assert ddim_eq19(a1, 0.0, simplified_noise=True)[1] == pytest.approx(math.sqrt(1 - a1 * a1) * math.sqrt(1 - a1))
    x_star = image(1)

    def second_to_last(quirks):
        steps = run(OracleDenoiser(x_star), noise(0), unobserved(), sched, eta=1.0, quirks=quirks,
                    generators=seeded_generators([1]))
        return steps[-2]

    plain, quirky = second_to_last(Quirks()), second_to_last(Quirks(simplified_noise=True))
    dev_plain = (plain.x_t - math.sqrt(a1) * x_star).std().item()
    dev_quirk = (quirky.x_t - math.sqrt(a1) * x_star).std().item()
    assert dev_quirk / dev_plain == pytest.approx(math.sqrt(1 - a1 * a1), rel=1e-3)


def test_lambda_precedence_quirk_changes_lambda_in_ddpm():
    op = make_ops()["gray"]
    x_star = image(1)
    sched = make_schedule(10)

    def lams(quirks):
        return [s.lam for s in run(OracleDenoiser(x_star), noise(0), Observation(op, op.A(x_star)), sched,
                                   form="ddpm", sigma_y=0.2, quirks=quirks, generators=seeded_generators([1]))]

    plain, quirky = lams(Quirks()), lams(Quirks(lambda_precedence=True))
    changed = [i for i, (p, q) in enumerate(zip(plain, quirky)) if p != q]
    assert changed
    for i in changed:
        t, t_next = [pr for pr in sched.pairs if pr[1] < pr[0]][i]
        coef1, _, var = sched.posterior(t, t_next)
        assert quirky[i] == pytest.approx(math.sqrt(var) / coef1 * 0.2)
        assert plain[i] == pytest.approx(math.sqrt(var) / (coef1 * 0.2))


@pytest.mark.parametrize("form", ["ddim", "ddpm"])
def test_clip_x0_quirk_clamps_the_estimate(form):
    x_star = image(1) * 2.0  # reaches outside [-1, 1]
    sched = make_schedule(5)

    def out(quirks):
        return run(OracleDenoiser(x_star), noise(0), unobserved(), sched, form=form, quirks=quirks,
                   generators=seeded_generators([1]))[-1].x0_hat

    assert torch.allclose(out(Quirks()), x_star, atol=1e-4)
    assert torch.allclose(out(Quirks(clip_x0=True)), x_star.clamp(-1, 1), atol=1e-4)


@pytest.mark.parametrize("from_x0", [False, True])
def test_time_travel_up_steps(from_x0):
    """Up-steps: forward chain with the respaced β (default) or re-noise of the raw x0 (main.py)."""
    sched = make_schedule(6, 1, 2)
    den = GaussianPriorDenoiser()
    quirks = Quirks(travel_from_x0=from_x0)
    steps = run(den, noise(0), unobserved(), sched, eta=0.0, quirks=quirks, generators=seeded_generators([3]))
    replay = seeded_generators([3])  # η = 0: the only draws are the up-steps'
    down = 0
    for t, t_next in sched.pairs:
        if t_next < t:
            down += 1
            continue
        prev = steps[down - 1]
        z = per_sample_randn(prev.x_t.shape, replay)
        if from_x0:
            a = AB[t_next]
            x_in_prev, t_prev = den.inputs[down - 1]  # the raw x0 of the last denoiser call
            eps_prev = GaussianPriorDenoiser()(x_in_prev, t_prev)
            a_prev = AB[prev.t]
            raw_x0 = (x_in_prev - math.sqrt(1 - a_prev) * eps_prev) / math.sqrt(a_prev)
            expect = math.sqrt(a) * raw_x0 + math.sqrt(1 - a) * z
        else:
            beta = 1 - AB[t_next] / AB[t]
            expect = math.sqrt(1 - beta) * prev.x_t + math.sqrt(beta) * z
        assert torch.allclose(den.inputs[down][0], expect, atol=1e-5)
    assert sched.num_up_steps == 5  # one travel at each index 0..4


# ---- classifier guidance ----
@pytest.mark.parametrize("form", ["ddim", "ddpm"])
def test_constant_guidance_shifts_the_result_up(form):
    calls = []

    def guidance(x_t, t):
        calls.append((x_t, t))
        return torch.full_like(x_t, 0.5)

    sched = make_schedule(10)

    def final(g):
        den = GaussianPriorDenoiser()
        steps = run(den, noise(0), unobserved(), sched, form=form, guidance=g, generators=seeded_generators([2]))
        return den, steps[-1].x0_hat

    _, plain = final(None)
    den, guided = final(guidance)
    assert (guided - plain).mean().item() > 0.05
    assert len(calls) == sched.num_calls
    for (gx, gt), (dx, dt) in zip(calls, den.inputs):  # gradient taken at x_t, same t as the denoiser
        assert torch.equal(gx, dx) and torch.equal(gt, dt)


def test_ddim_guidance_is_an_eps_shift():
    """One step from t: ε ← ε − √(1−ᾱ_t) g, so x0 moves by (1−ᾱ_t) g / √ᾱ_t."""
    x_star = image(1)
    sched = make_schedule(1)  # single step 999 -> -1
    a = AB[999]
    plain = run(OracleDenoiser(x_star), noise(0), unobserved(), sched)[-1].x0_hat
    guided = run(OracleDenoiser(x_star), noise(0), unobserved(), sched,
                 guidance=lambda x, t: torch.full_like(x, 1e-3))[-1].x0_hat
    assert torch.allclose(guided - plain, torch.full_like(plain, (1 - a) * 1e-3 / math.sqrt(a)), atol=1e-3)


