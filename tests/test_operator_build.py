"""build_operator: every task combination the app offers, parsing errors, and real-photo observations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import InputError
from engine.operators import (
    AvgPoolSR, ColorizeOperator, ComposedOperator, IdentityOperator, InpaintOperator,
    build_operator, initial_estimate, parse_deblur, photo_to_observation,
)
from engine.operators.separable import SeparableProduct
from engine.request import Quirks, Tasks

H_IN, W_IN = 12, 20


def user_mask(h=H_IN, w=W_IN):
    """(1, 1, h, w) with 1 = fill: a block plus scattered pixels, so pooled blocks are partial."""
    m = torch.zeros(1, 1, h, w, dtype=torch.float64)
    m[..., 3:7, 5:11] = 1
    m[..., ::5, ::3] = 1
    return m


def tasks_for(subset, sr_kernel="avgpool", deblur="gauss:1.5"):
    return Tasks(inpaint="mask" in subset, colorize="gray" in subset,
                 sr=2 if "pool" in subset else 1, sr_kernel=sr_kernel,
                 deblur=deblur if "blur" in subset else None)


SUBSETS = [s for n in range(1, 5) for s in itertools.combinations(["mask", "gray", "pool", "blur"], n)]



def rel_err(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("subset", SUBSETS, ids="+".join)
def test_composite_identities_for_every_task_subset(subset):
    tasks = tasks_for(subset)
    h, w = H_IN * tasks.sr, W_IN * tasks.sr
    op = build_operator(tasks, height=h, width=w, mask=user_mask(), device="cpu", dtype=torch.float64)
    parts = op.parts() if isinstance(op, ComposedOperator) else [op]
    assert len(parts) == len(subset)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    y = op.A(x)
    assert y.shape == (2, 1 if "gray" in subset else 3, H_IN, W_IN)
    tol = 1e-5 if {"mask", "blur"} <= set(subset) else 1e-10  # CGLS-based only for mask after blur
    xp = op.A_pinv(y)
    assert rel_err(op.A(xp), y) < tol
    assert rel_err(op.A_pinv(op.A(xp)), xp) < tol
    if "mask" in subset:  # masked observation pixels really are zero and are not invented by A†
        assert torch.all(y[..., 3:7, 5:11] == 0)


def test_mask_gray_pool_pinv_is_moore_penrose_with_partial_blocks():
    """Mask in low-res observation space: A† = pool† gray† M, with A†A an orthogonal projection."""
    op = build_operator(Tasks(inpaint=True, colorize=True, sr=2), height=2 * H_IN, width=2 * W_IN,
                        mask=user_mask(), device="cpu", dtype=torch.float64)
    a, b = torch.randn(2, 1, 3, 2 * H_IN, 2 * W_IN, dtype=torch.float64)
    pa, pb = op.A_pinv(op.A(a)), op.A_pinv(op.A(b))
    assert torch.dot(pa.flatten(), b.flatten()).item() == pytest.approx(torch.dot(a.flatten(), pb.flatten()).item())


def test_bicubic_and_separable_blur_are_merged_into_one_exact_operator():
    tasks = Tasks(sr=2, sr_kernel="bicubic", deblur="gauss:1.0", colorize=True)
    op = build_operator(tasks, height=24, width=40, mask=None, device="cpu", dtype=torch.float64)
    assert isinstance(op.parts()[0], SeparableProduct)
    x = torch.randn(1, 3, 24, 40, dtype=torch.float64)
    y = op.A(x)
    assert y.shape == (1, 1, 12, 20)
    assert rel_err(op.A(op.A_pinv(y)), y) < 1e-10


def test_denoise_only_is_identity_and_mask_without_inpaint_is_ignored():
    op = build_operator(Tasks(noise=0.05), height=8, width=8, mask=user_mask(8, 8), device="cpu")
    assert isinstance(op, IdentityOperator)
    op = build_operator(Tasks(colorize=True), height=8, width=8, mask=user_mask(8, 8), device="cpu")
    assert isinstance(op, ColorizeOperator)


def test_user_mask_is_converted_to_a_keep_mask():
    op = build_operator(Tasks(inpaint=True), height=H_IN, width=W_IN, mask=user_mask(), device="cpu")
    assert isinstance(op, InpaintOperator)
    assert torch.equal(op.keep.double(), 1 - user_mask())


@pytest.mark.parametrize("tasks, kwargs, message", [
    (Tasks(), {}, "nothing to do"),
    (Tasks(deblur="gauss:abc"), {}, "number"),
    (Tasks(deblur="gauss:-1"), {}, "> 0"),
    (Tasks(deblur="gauss"), {}, "gauss:SIGMA"),
    (Tasks(deblur="uniform:2.5"), {}, "whole number"),
    (Tasks(deblur="uniform:0"), {}, "≥ 1"),
    (Tasks(deblur="motion:3"), {}, "unknown blur kind"),
    (Tasks(deblur="kernel:/nonexistent/k.npy"), {}, "not found"),
    (Tasks(inpaint=True), {"mask": None}, "needs a mask"),
    (Tasks(inpaint=True), {"mask": torch.zeros(1, 1, 5, 5)}, "mask must be"),
    (Tasks(sr=2), {"height": 25}, "multiple"),
])
def test_build_operator_errors(tasks, kwargs, message):
    args = dict(height=24, width=24, mask=None, device="cpu")
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        build_operator(tasks, **args)


def test_kernel_files_npy_and_image(tmp_path):
    k = np.array([[0, 1, 0], [2, 4, 2], [0, 1, 3]], dtype=np.float64)
    np.save(tmp_path / "k.npy", k)
    Image.fromarray((k * 50).astype(np.uint8)).save(tmp_path / "k.png")
    for name in ("k.npy", "k.png"):
        blur = parse_deblur(f"kernel:{tmp_path / name}")
        assert not blur.separable
        np.testing.assert_allclose(blur.impl.kernel, k / k.sum(), atol=1e-12)
    np.save(tmp_path / "bad.npy", np.ones(3))
    with pytest.raises(InputError, match="2-D"):
        parse_deblur(f"kernel:{tmp_path / 'bad.npy'}")
    np.save(tmp_path / "zero.npy", np.zeros((3, 3)))
    with pytest.raises(InputError, match="positive sum"):
        parse_deblur(f"kernel:{tmp_path / 'zero.npy'}")


def test_ddrm_quirk_reaches_the_blur():
    plain = parse_deblur("uniform:9")
    quirk = parse_deblur("uniform:9", quirks=Quirks(ddrm_kernel_taps=True))
    x = torch.ones(1, 1, 30, 30, dtype=torch.float64)
    assert plain.impl.axis_matrix(30, 0)[15].sum() == pytest.approx(1.0)
    assert quirk.impl.axis_matrix(30, 0)[15].sum() == pytest.approx(8 / 9)
    assert not torch.allclose(plain.A(x), quirk.A(x))


@pytest.mark.parametrize("subset", SUBSETS, ids="+".join)
def test_photo_to_observation_is_in_range_and_shaped_like_A(subset):
    tasks = tasks_for(subset)
    g = torch.Generator().manual_seed(5)
    photo = torch.rand(1, 3, H_IN, W_IN, generator=g, dtype=torch.float64) * 2 - 1
    y = photo_to_observation(tasks, photo, user_mask())
    op = build_operator(tasks, height=H_IN * tasks.sr, width=W_IN * tasks.sr, mask=user_mask(),
                        device="cpu", dtype=torch.float64)
    assert y.shape == op.A(torch.zeros(1, 3, H_IN * tasks.sr, W_IN * tasks.sr, dtype=torch.float64)).shape
    tol = 1e-5 if {"mask", "blur"} <= set(subset) else 1e-10
    assert rel_err(op.A(initial_estimate(op, y)), y) < tol
    if "blur" not in subset:  # nothing to project away: y is the photo (gray / masked as ticked)
        expected = photo.mean(1, keepdim=True) if "gray" in subset else photo
        if "mask" in subset:
            expected = expected * (1 - user_mask())
        assert torch.allclose(y, expected, atol=1e-12)
    assert initial_estimate(op, y).shape == (1, 3, H_IN * tasks.sr, W_IN * tasks.sr)


def test_photo_to_observation_with_an_operator_uses_its_mask():
    op = build_operator(Tasks(inpaint=True, sr=2), height=2 * H_IN, width=2 * W_IN, mask=user_mask(),
                        device="cpu", dtype=torch.float64)
    photo = torch.rand(1, 3, H_IN, W_IN, dtype=torch.float64)
    y = photo_to_observation(op, photo)
    assert torch.allclose(y, photo * (1 - user_mask()))
    up = initial_estimate(op, y)
    assert torch.allclose(AvgPoolSR(2).A(up), y)
