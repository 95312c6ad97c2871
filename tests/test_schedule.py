"""Noise schedule, respacing and the RePaint time-travel schedule."""

import numpy as np
import pytest
import torch

from engine.samplers import jump_indices, make_schedule, respaced_timesteps


def hand_alphas_cumprod():
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def test_linear_schedule_values():
    s = make_schedule(10)
    assert s.alphas_cumprod.dtype == torch.float64 and s.alphas_cumprod.shape == (1000,)
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), hand_alphas_cumprod(), rtol=1e-12)
    betas = s.betas
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    # values quoted in the reference doc
    assert s.alpha_bar(0) == pytest.approx(0.9999)
    assert s.alpha_bar(990) == pytest.approx(4.84e-5, rel=1e-2)
    assert s.alpha_bar(999) == pytest.approx(4.04e-5, rel=1e-2)
    assert s.alpha_bar(-1) == 1.0


def test_even_spacing_matches_hq_demo():
    ts = respaced_timesteps(100, spacing="even")
    assert ts == [round(k * 999 / 99) for k in range(100)]
    assert ts[:3] == [0, 10, 20] and ts[-2:] == [989, 999]


def test_skip_spacing_matches_main_py():
    ts = respaced_timesteps(100, spacing="skip")
    assert ts == list(range(0, 1000, 10))
    s = make_schedule(100, spacing="skip")
    assert s.first_t == 990 and s.pairs[-1] == (0, -1)


def test_default_spacing_is_even_and_starts_at_999():
    s = make_schedule(100)
    assert s.spacing == "even" and s.first_t == 999 and s.pairs[0] == (999, 989)


@pytest.mark.parametrize("spacing", ["even", "skip"])
@pytest.mark.parametrize("steps", [1, 2, 3, 7, 100, 250, 999, 1000])
def test_respacing_any_step_count(steps, spacing):
    ts = respaced_timesteps(steps, spacing=spacing)
    assert len(ts) == steps and len(set(ts)) == steps
    assert ts == sorted(ts) and 0 <= ts[0] and ts[-1] <= 999
    if spacing == "even":
        assert ts[-1] == 999 and (steps == 1 or ts[0] == 0)
    s = make_schedule(steps, spacing=spacing)
    assert s.num_calls == steps and s.pairs[-1][1] == -1


@pytest.mark.parametrize("bad", [0, 1001, -3])
def test_bad_step_counts_raise(bad):
    with pytest.raises(ValueError):
        make_schedule(bad)


@pytest.mark.parametrize(
    "steps, length, repeat, calls, ups",
    [
        (100, 1, 1, 100, 0),
        (100, 2, 2, 198, 98),  # oldphoto.yml
        (100, 10, 3, 280, 180),  # hq_demo inet256
        (250, 10, 3, 730, 480),  # hq_demo face256
        (10, 1, 2, 19, 9),
        (5, 10, 3, 5, 0),  # travel longer than the schedule: none possible
    ],
)
def test_time_travel_counts(steps, length, repeat, calls, ups):
    s = make_schedule(steps, length, repeat)
    assert s.num_calls == calls and s.num_up_steps == ups
    assert len(s.pairs) == calls + ups


@pytest.mark.parametrize("steps, length, repeat", [(100, 2, 2), (100, 10, 3), (37, 4, 5), (1, 1, 1)])
def test_jump_path_self_checks(steps, length, repeat):
    path = jump_indices(steps, length, repeat)
    assert path[0] == steps - 1 and path[-1] == -1
    assert all(abs(b - a) == 1 for a, b in zip(path, path[1:]))
    assert all(-1 <= p <= steps - 1 for p in path)


def test_jump_path_matches_reference_prefix():
    assert jump_indices(100, 2, 2)[:12] == [99, 98, 97, 96, 97, 98, 97, 96, 95, 94, 95, 96]
    path = jump_indices(100, 10, 3)
    first_up = next(i for i in range(1, len(path)) if path[i] > path[i - 1])
    assert path[first_up - 1] == 80  # first travel near the top, at the largest multiple of L < T - L


def test_pairs_move_between_neighbouring_respaced_timesteps():
    s = make_schedule(50, 5, 2)
    pos = {t: k for k, t in enumerate(s.timesteps)}
    pos[-1] = -1
    for t, t_next in s.pairs:
        assert abs(pos[t] - pos[t_next]) == 1


def test_t_start_respaces_below_it():
    s = make_schedule(20, t_start=500)
    assert s.first_t == 500 and max(s.timesteps) == 500 and s.num_calls == 20
    s = make_schedule(20, 2, 2, t_start=300, spacing="skip")
    assert max(s.timesteps) <= 300 and s.pairs[-1] == (0, -1)
    with pytest.raises(ValueError):
        make_schedule(10, t_start=1000)
    with pytest.raises(ValueError):
        make_schedule(100, t_start=50)  # more steps than timesteps


def test_posterior_marginal_identities():
    s = make_schedule(100)
    for t, t_next in [(999, 989), (505, 495), (10, 0)]:
        a, a1 = s.alpha_bar(t), s.alpha_bar(t_next)
        coef1, coef2, var = s.posterior(t, t_next)
        # x_t = √a x0 + √(1-a) ε  =>  the posterior's marginal is q(x_{t_next} | x0)
        assert coef1 + coef2 * np.sqrt(a) == pytest.approx(np.sqrt(a1), rel=1e-10)
        assert coef2**2 * (1 - a) + var == pytest.approx(1 - a1, rel=1e-10)
    assert s.posterior(0, -1) == pytest.approx((1.0, 0.0, 0.0))


def test_respaced_betas_compose_to_alpha_bar():
    s = make_schedule(25)
    keep = 1.0
    ts = s.timesteps
    for lo, hi in zip(ts, ts[1:]):
        keep *= 1.0 - s.respaced_beta(lo, hi)
    assert keep == pytest.approx(s.alpha_bar(ts[-1]) / s.alpha_bar(ts[0]), rel=1e-10)
