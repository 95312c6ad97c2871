"""DDNM / DDNM+ sampler: exact algebra with oracle denoisers, Eq. 19, noise, quirks, guidance."""

import math
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.errors import Cancelled
from engine.operators.base import Constraint, Observation, Operator
from engine.operators import build_operator
from engine.request import Tasks
from engine.samplers import (
    OracleDenoiser,
    ddim_eq19,
    ddpm_eq19,
    make_schedule,
    per_sample_randn,
    sample,
    seeded_generators,
)

SIZE = 32


# ---- tiny operators defined here, so these tests do not depend on engine/operators ----
class MaskOp(Operator):
    def __init__(self, mask):  # (1, 1, H, W), 1 = observed
        self.mask = mask

    def A(self, x):
        return x * self.mask

    def A_pinv(self, y):
        return y * self.mask


class AvgPool2(Operator):
    scale = 2

    def A(self, x):
        return F.avg_pool2d(x, 2)

    def A_pinv(self, y):
        return F.interpolate(y, scale_factor=2, mode="nearest")


class GrayMean(Operator):
    def __init__(self, gain=1.0):  # gain: a pretend noise gain, to see it used in Eq. 19
        self.gain = gain

    def A(self, x):
        return x.mean(dim=1, keepdim=True)

    def A_pinv(self, y):
        return y.repeat(1, 3, 1, 1)

    def noise_gain(self):
        return self.gain


def make_ops():
    g = torch.Generator().manual_seed(5)
    mask = (torch.rand(1, 1, SIZE, SIZE, generator=g) > 0.4).float()
    return {"mask": MaskOp(mask), "pool2": AvgPool2(), "gray": GrayMean()}


def image(seed, batch=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, SIZE, SIZE, generator=g) * 1.8 - 0.9


class GaussianPriorDenoiser:
    """Exact E[ε | x_t] when the data are N(0, c²) per pixel: depends on x_t, so noise matters."""

    is_random = False
    image_size = SIZE

    def __init__(self, c=0.5):
        self.c2 = c * c
        self.ab = make_schedule(1).alphas_cumprod
        self.inputs = []

    def __call__(self, x_t, t):
        self.inputs.append((x_t.clone(), t.clone()))
        a = self.ab[t].view(-1, 1, 1, 1).to(x_t.dtype)
        return torch.sqrt(1 - a) / (a * self.c2 + 1 - a) * x_t


class RecordingConstraint(Constraint):
    def __init__(self, inner):
        self.inner = inner
        self.lams = []

    def project(self, x0, lam=1.0):
        self.lams.append(lam)
        return self.inner.project(x0, lam)

    def noise_gain(self):
        return self.inner.noise_gain()


def run(denoiser, x_T, constraint, schedule, **kw):
    return list(sample(denoiser, x_T, constraint, schedule, **kw))


def noise(seed, batch=1):
    return per_sample_randn((batch, 3, SIZE, SIZE), seeded_generators([seed + i for i in range(batch)]))


# ---- exactness with the oracle ----
@pytest.mark.parametrize("form", ["ddim", "ddpm"])
@pytest.mark.parametrize("op_name", ["mask", "pool2", "gray"])
@pytest.mark.parametrize("travel", [(1, 1), (2, 2)])
def test_ddnm_with_oracle_returns_the_clean_image(form, op_name, travel):
    x_star = image(1)
    op = make_ops()[op_name]
    oracle = OracleDenoiser(x_star)
    schedule = make_schedule(12, *travel)
    steps = run(oracle, noise(0), Observation(op, op.A(x_star)), schedule, form=form, generators=seeded_generators([3]))
    assert len(steps) == schedule.num_calls == oracle.calls
    last = steps[-1]
    assert last.t_next == -1 and last.calls == last.total_calls == schedule.num_calls
    assert torch.allclose(last.x0_hat, x_star, atol=1e-4)
    assert torch.allclose(last.x_t, x_star, atol=1e-4)
    assert [s.t for s in steps] == [t for t, tn in schedule.pairs if tn < t]


@pytest.mark.parametrize("form", ["ddim", "ddpm"])
@pytest.mark.parametrize("op_name", ["mask", "pool2", "gray"])
def test_range_from_y_null_space_from_denoiser(form, op_name):
    x_star, x_other = image(1), image(2)
    op = make_ops()[op_name]
    y = op.A(x_star)
    out = run(OracleDenoiser(x_other), noise(0), Observation(op, y), make_schedule(10), form=form,
              generators=seeded_generators([4]))[-1].x0_hat
    assert torch.allclose(op.A(out), y, atol=1e-4)
    null = lambda v: v - op.A_pinv(op.A(v))  # noqa: E731
    assert torch.allclose(null(out), null(x_other), atol=1e-4)
    assert not torch.allclose(out, x_other, atol=1e-2)


@pytest.mark.parametrize("form", ["ddim", "ddpm"])
@pytest.mark.parametrize("op_name", ["mask", "pool2", "gray"])
def test_ddnm_plus_with_noisy_y(form, op_name):
    sigma_y = 0.1
    x_star = image(1)
    op = make_ops()[op_name]
    clean = op.A(x_star)
    n = torch.randn(clean.shape, generator=torch.Generator().manual_seed(9)) * sigma_y
    cons = RecordingConstraint(Observation(op, clean + n))
    steps = run(OracleDenoiser(x_star), noise(0), cons, make_schedule(20), form=form, sigma_y=sigma_y,
                generators=seeded_generators([4]))
    lams = [s.lam for s in steps]
    assert lams == cons.lams and lams[0] == 1.0 and min(lams) < 1.0  # full trust early, less late
    for s in steps:  # the oracle's x0 is x*, so x̂0 = x* − λ A†(A x* − y) = x* + λ A† n exactly
        assert torch.allclose(s.x0_hat, x_star + s.lam * op.A_pinv(n), atol=2e-4)
    err = (op.A(steps[-1].x0_hat) - clean).pow(2).mean().sqrt().item()
    assert err <= sigma_y


# ---- Eq. 19 scalars against hand-computed values ----
AB = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))


@pytest.mark.parametrize("t_next, sigma_y, gain", [(989, 0.1, 1.0), (0, 0.1, 1.0), (0, 0.1, 2.0), (100, 0.0, 1.0)])
def test_ddim_eq19_hand_values(t_next, sigma_y, gain):
    a1 = AB[t_next]
    s, n = math.sqrt(1 - a1), math.sqrt(a1) * sigma_y * gain
    lam, gamma = ddim_eq19(a1, sigma_y, gain)
    if s >= n:
        assert lam == 1.0 and gamma == pytest.approx(math.sqrt(s * s - n * n))
    else:
        assert lam == pytest.approx(s / n) and gamma == 0.0 and lam < 1
    # main.py --simplified: sqrt(1 - a'^2), a' in the threshold, extra sqrt(1 - a') on the noise
    lam_q, gamma_q = ddim_eq19(a1, sigma_y, gain, simplified_noise=True)
    sq, nq = math.sqrt(1 - a1 * a1), a1 * sigma_y * gain
    if sq >= nq:
        assert lam_q == 1.0 and gamma_q == pytest.approx(math.sqrt(sq * sq - nq * nq) * math.sqrt(1 - a1))
    else:
        assert lam_q == pytest.approx(sq / nq) and gamma_q == 0.0
    assert ddim_eq19(AB[0], 0.1)[0] == pytest.approx(0.1, rel=1e-3)  # s = 0.01, √a'σ_y ≈ 0.09999


@pytest.mark.parametrize("t, t_next, sigma_y", [(999, 989, 0.1), (10, 0, 0.1), (10, 0, 0.001), (505, 495, 0.5)])
def test_ddpm_eq19_hand_values(t, t_next, sigma_y):
    a, a1 = AB[t], AB[t_next]
    beta = 1 - a / a1
    sigma_t = math.sqrt(beta * (1 - a1) / (1 - a))
    a_t = beta * math.sqrt(a1) / (1 - a)
    coef1, _, var = make_schedule(100).posterior(t, t_next)
    assert coef1 == pytest.approx(a_t) and var == pytest.approx(sigma_t**2)
    lam, gamma = ddpm_eq19(sigma_t, a_t, sigma_y)
    lam_q, gamma_q = ddpm_eq19(sigma_t, a_t, sigma_y, lambda_precedence=True)
    if sigma_t >= a_t * sigma_y:
        assert lam == lam_q == 1.0 and gamma == pytest.approx(sigma_t**2 - (a_t * sigma_y) ** 2) == gamma_q
    else:
        assert lam == pytest.approx(sigma_t / (a_t * sigma_y)) and gamma == 0.0
        assert lam_q == pytest.approx(sigma_t / a_t * sigma_y) and lam_q != pytest.approx(lam)


@pytest.mark.parametrize("form", ["ddim", "ddpm"])
def test_step_update_matches_hand_formula(form):
    """Rebuild every x_{t'} from x̂0, x_t, ε and the same noise draws (η = 1: no ε term in ddim)."""
    sigma_y, gain_op = 0.05, GrayMean(gain=2.0)
    x_star = image(1)
    y = gain_op.A(x_star) + 0.05 * torch.randn(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    den = GaussianPriorDenoiser()
    sched = make_schedule(15)
    steps = run(den, noise(0), Observation(gain_op, y), sched, form=form, eta=1.0, sigma_y=sigma_y,
                generators=seeded_generators([7]))
    replay = seeded_generators([7])
    saw_partial = False
    for (x_in, _), s in zip(den.inputs, steps):
        a1 = AB[s.t_next] if s.t_next >= 0 else 1.0
        if form == "ddim":
            sq, n = math.sqrt(1 - a1), math.sqrt(a1) * sigma_y * 2.0
            lam = 1.0 if sq >= n else sq / n
            std = math.sqrt(max(sq * sq - (lam * n) ** 2, 0.0))
            expect = math.sqrt(a1) * s.x0_hat
            if std > 0:
                expect = expect + std * per_sample_randn(x_in.shape, replay)
        else:
            coef1, coef2, var = sched.posterior(s.t, s.t_next)
            n = coef1 * sigma_y * 2.0
            lam = 1.0 if math.sqrt(var) >= n else math.sqrt(var) / n
            gvar = max(var - (lam * n) ** 2, 0.0) if lam == 1.0 else 0.0
            expect = coef1 * s.x0_hat + coef2 * x_in
            if gvar > 0:
                expect = expect + math.sqrt(gvar) * per_sample_randn(x_in.shape, replay)
        saw_partial |= 0 < lam < 1
        assert s.lam == pytest.approx(lam)
        assert torch.allclose(s.x_t, expect, atol=1e-5)
    assert saw_partial


# ---- randomness, batching, cancellation ----
@pytest.mark.parametrize("form", ["ddim", "ddpm"])
def test_batch_equals_single_runs_with_per_sample_generators(form):
    op = make_ops()["pool2"]
    x_star = image(3, batch=3)
    x_T = noise(10, batch=3)
    sched = make_schedule(8, 2, 2)
    batched = run(GaussianPriorDenoiser(), x_T, Observation(op, op.A(x_star)), sched, form=form,
                  sigma_y=0.05, generators=seeded_generators([1, 2, 3]))
    for i in range(3):
        single = run(GaussianPriorDenoiser(), x_T[i:i + 1], Observation(op, op.A(x_star[i:i + 1])), sched, form=form,
                     sigma_y=0.05, generators=seeded_generators([i + 1]))
        for b, s in zip(batched, single):
            assert torch.allclose(b.x_t[i:i + 1], s.x_t, atol=1e-6)
            assert torch.allclose(b.x0_hat[i:i + 1], s.x0_hat, atol=1e-6)


def test_fixed_seed_is_deterministic_and_seed_matters():
    op = make_ops()["mask"]
    x_star = image(1)
    cons = Observation(op, op.A(x_star))
    sched = make_schedule(10, 2, 2)

    def final(seed):
        return run(GaussianPriorDenoiser(), noise(0), cons, sched, generators=seeded_generators([seed]))[-1].x0_hat

    assert torch.equal(final(5), final(5))
    assert not torch.allclose(final(5), final(6))


def test_per_sample_randn_draws_sample_i_from_generator_i():
    batch = per_sample_randn((3, 2, 4, 4), seeded_generators([7, 8, 9]))
    for i, seed in enumerate([7, 8, 9]):
        assert torch.equal(batch[i], torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(seed)))
    single = per_sample_randn((3, 2), torch.Generator().manual_seed(1))
    assert torch.equal(single, torch.randn(3, 2, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError):
        per_sample_randn((3, 2), seeded_generators([1, 2]))


def test_cancel_raises_before_the_next_call():
    op = make_ops()["gray"]
    oracle = OracleDenoiser(image(1))
    cancel = threading.Event()
    gen = sample(oracle, noise(0), Observation(op, op.A(image(1))), make_schedule(10), cancel=cancel,
                 generators=seeded_generators([0]))
    for _ in range(3):
        next(gen)
    cancel.set()
    with pytest.raises(Cancelled):
        next(gen)
    assert oracle.calls == 3
    oracle2 = OracleDenoiser(image(1))  # already cancelled: not a single call
    with pytest.raises(Cancelled):
        run(oracle2, noise(0), Observation(op, op.A(image(1))), make_schedule(10), cancel=cancel)
    assert oracle2.calls == 0


def test_bad_arguments_raise():
    op = make_ops()["gray"]
    cons = Observation(op, op.A(image(1)))
    with pytest.raises(ValueError):
        run(OracleDenoiser(image(1)), noise(0, 2), cons, make_schedule(3), generators=seeded_generators([1, 2, 3]))
    with pytest.raises(ValueError):
        run(OracleDenoiser(image(1)), noise(0), cons, make_schedule(3), form="euler")


# ---- every task the app offers, through the real operators ----
TASKS = {
    "inpaint": Tasks(inpaint=True),
    "colorize": Tasks(colorize=True),
    "sr2-avgpool": Tasks(sr=2),
    "sr2-bicubic": Tasks(sr=2, sr_kernel="bicubic"),
    "deblur-gauss": Tasks(deblur="gauss:1.2"),
    "deblur-uniform": Tasks(deblur="uniform:3"),
    "denoise": Tasks(noise=0.05),
    "old-photo": Tasks(inpaint=True, colorize=True, sr=2),
}


@pytest.mark.parametrize("name", sorted(TASKS))
@pytest.mark.parametrize("form", ["ddim", "ddpm"])
def test_oracle_ddnm_returns_the_clean_image_for_every_task(name, form):
    """Noiseless DDNM with the true ε returns x* exactly; with another image's ε the range part
    still comes from y (A x̂ = y)."""
    tasks = TASKS[name]
    mask = (torch.rand(1, 1, SIZE // tasks.sr, SIZE // tasks.sr, generator=torch.Generator().manual_seed(5)) > 0.6)
    op = build_operator(tasks, height=SIZE, width=SIZE, mask=mask.float(), device=torch.device("cpu"))
    x_star, x_other = image(1), image(2)
    y = op.A(x_star)
    exact = run(OracleDenoiser(x_star), noise(0), Observation(op, y), make_schedule(10), form=form,
                generators=seeded_generators([4]))[-1].x0_hat
    assert torch.allclose(exact, x_star, atol=1e-4)
    out = run(OracleDenoiser(x_other), noise(0), Observation(op, y), make_schedule(10, 2, 2), form=form,
              generators=seeded_generators([4]))[-1].x0_hat
    assert torch.allclose(op.A(out), y, atol=1e-4)
