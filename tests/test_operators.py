"""The operator contract, checked for every registered operator, plus family-specific facts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.geometry import Box
from engine.operators import (
    AvgPoolSR, BatchOperator, BicubicSR, BlurOperator, ColorizeOperator, ComposedOperator,
    IdentityOperator, InpaintOperator, Observation, registered_operators,
)
from engine.operators.blur import conv_matrix, gaussian_taps
from engine.operators.downsample import bicubic_matrix, bicubic_taps


SIZES = [(48, 80), (36, 36)]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def keep_mask(b, h, w, seed=0, p=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 1, h, w, generator=g) > p).float()


def rank_one_kernel():
    col = np.array([0.1, 0.5, 0.3, 0.1])  # asymmetric and even: orientation and centre matter
    row = np.array([0.2, 0.7, 0.1])
    return np.outer(col, row)


def cross_kernel():
    k = np.zeros((5, 5))
    k[2, :] = 1.0
    k[:, 2] = 1.0
    k[1, 3] = 0.5
    return k / k.sum()


# name -> list of (case id, factory(h, w) -> operator, iterative pinv?)
EXAMPLES = {
    "inpaint": [("shared", lambda h, w: InpaintOperator(keep_mask(1, h, w)), False),
                ("per-sample", lambda h, w: InpaintOperator(keep_mask(2, h, w)), False)],
    "colorize": [("gray", lambda h, w: ColorizeOperator(), False)],
    "sr_avgpool": [("x2", lambda h, w: AvgPoolSR(2), False), ("x4", lambda h, w: AvgPoolSR(4), False)],
    "sr_bicubic": [("x2", lambda h, w: BicubicSR(2), False), ("x4", lambda h, w: BicubicSR(4), False)],
    "deblur": [
        ("gauss", lambda h, w: BlurOperator(sigma=1.2), False),
        ("uniform-zero-ddrm", lambda h, w: BlurOperator(size=5, padding="zero", ddrm_taps=True), False),
        ("rank1-kernel", lambda h, w: BlurOperator(rank_one_kernel()), False),
        ("fft-kernel", lambda h, w: BlurOperator(torch.tensor(cross_kernel())), False),
        ("gauss-fft", lambda h, w: BlurOperator(sigma=1.0, method="fft"), False),
    ],
    "denoise": [("identity", lambda h, w: IdentityOperator(), False)],
    "compose": [
        ("mask-gray-pool", lambda h, w: ComposedOperator(
            [AvgPoolSR(2), ColorizeOperator(), InpaintOperator(keep_mask(1, h // 2, w // 2))]), False),
        ("mask-gray-blur-pool", lambda h, w: ComposedOperator(
            [AvgPoolSR(2), BlurOperator(sigma=1.5), ColorizeOperator(),
             InpaintOperator(keep_mask(1, h // 2, w // 2))]), True),
    ],
    "batch": [
        ("different-masks", lambda h, w: BatchOperator(
            [InpaintOperator(keep_mask(1, h, w, seed=s)) for s in (1, 2)]), False),
        ("shared", lambda h, w: BatchOperator([ColorizeOperator()] * 2), False),
    ],
}

CASES = [pytest.param(name, factory, it, id=f"{name}-{cid}")
         for name, cases in EXAMPLES.items() for cid, factory, it in cases]


def rel_err(a, b):
    return float(torch.linalg.vector_norm((a - b).double()) / torch.linalg.vector_norm(b.double()).clamp_min(1e-30))


def test_every_registered_operator_has_an_example():
    assert set(registered_operators()) == set(EXAMPLES)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name, factory, iterative", CASES)
def test_operator_contract(name, factory, iterative, size, dtype, device):
    h, w = size
    op = factory(h, w)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, h, w, generator=g, dtype=dtype).mul(2).sub(1).to(device)
    x2 = torch.rand(2, 3, h, w, generator=g, dtype=dtype).mul(2).sub(1).to(device)
    tol = (1e-4 if iterative else 1e-10) if dtype == torch.float64 else 2e-4 if not iterative else 2e-3

    y = op.A(x)
    oh, ow = op.observation_size(h, w)
    assert y.shape[0] == 2 and y.shape[1] in (1, 3) and y.shape[-2:] == (oh, ow)
    assert y.dtype == dtype and y.device == x.device
    xp = op.A_pinv(y)
    assert xp.shape == x.shape and xp.dtype == dtype and xp.device == x.device

    assert rel_err(op.A(xp), y) < tol  # A A† A = A
    assert rel_err(op.A_pinv(op.A(xp)), xp) < tol  # A† A A† = A†
    p2 = op.A_pinv(op.A(op.A_pinv(op.A(x2))))  # A† A idempotent
    assert rel_err(p2, op.A_pinv(op.A(x2))) < tol
    y2 = op.A(x2)  # in range: A A† y = y
    assert rel_err(op.A(op.A_pinv(y2)), y2) < tol
    assert np.isfinite(op.noise_gain()) and op.noise_gain() > 0


def test_operators_are_not_trivial():
    """Guards the contract test against operators that silently became identities."""
    x = torch.rand(1, 3, 36, 36, dtype=torch.float64)
    for name, cases in EXAMPLES.items():
        if name == "denoise":
            continue
        for cid, factory, _ in cases:
            op = factory(36, 36)
            xb = x.expand(2, -1, -1, -1)
            y = op.A(xb)
            if y.shape == xb.shape:
                assert rel_err(y, xb) > 1e-3, (name, cid)


@pytest.mark.parametrize("s", [2, 3, 4])
def test_avgpool_and_replication_exact(s):
    op = AvgPoolSR(s)
    y = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    up = op.A_pinv(y)
    assert up.shape == (2, 3, 5 * s, 7 * s)
    for i in range(s):
        for j in range(s):
            assert torch.equal(up[..., i::s, j::s], y)  # every pixel of a block is the low-res value
    assert torch.allclose(op.A(up), y, atol=1e-12)
    x = torch.randn(1, 3, 2 * s, 3 * s, dtype=torch.float64)
    assert torch.allclose(op.A(x)[0, :, 1, 2], x[0, :, s:2 * s, 2 * s:3 * s].mean(dim=(-2, -1)))
    with pytest.raises(Exception, match="multiple"):
        op.A(torch.zeros(1, 3, 5 * s + 1, 5 * s))


def test_bicubic_x4_taps_match_reference():
    reference = [-0.0017, -0.011, -0.0183, -0.012, 0.0227, 0.0974, 0.1819, 0.241]  # ddnm-reference §2(b)
    taps = bicubic_taps(4)
    assert len(taps) == 16
    np.testing.assert_allclose(taps[:8], reference, atol=6e-5)
    np.testing.assert_allclose(taps[8:], reference[::-1], atol=6e-5)
    m = bicubic_matrix(64, 4)
    # row r is centred at 4r + 1.5: pixel j = 4r − 6 + i gets tap i
    np.testing.assert_allclose(m[5, 14:30], taps, atol=1e-12)
    np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-12)
    assert m[0, 0] == pytest.approx(taps[6] + taps[5])  # reflect padding: pixel −1 folds onto pixel 0
    assert m[0, 5] == pytest.approx(taps[11] + taps[0])  # pixel −6 folds onto pixel 5


def test_bicubic_downscales_a_smooth_ramp_like_area_sampling():
    x = torch.arange(32, dtype=torch.float64).view(1, 1, 1, 32).expand(1, 3, 32, 32)
    y = BicubicSR(4).A(x)
    centres = torch.arange(8, dtype=torch.float64) * 4 + 1.5
    assert torch.allclose(y[0, 0, 3, 2:6], centres[2:6], atol=1e-9)  # interior: exact on linear ramps


def test_blur_ddrm_tap_quirk_and_symmetric_default():
    taps = np.full(9, 1 / 9)
    correct = conv_matrix(taps, 30, padding="zero")
    quirk = conv_matrix(taps, 30, padding="zero", ddrm_taps=True)
    assert correct[15].sum() == pytest.approx(1.0)
    assert quirk[15].sum() == pytest.approx(8 / 9)  # the reference's 0.889 row sum
    assert quirk[15, 15 + 4] == 0 and quirk[15, 15 - 4] == pytest.approx(1 / 9)
    g = gaussian_taps(1.5)
    assert len(g) == 11 and g.sum() == pytest.approx(1.0) and np.allclose(g, g[::-1])


def test_separable_and_fft_blur_agree_inside_the_image():
    k = rank_one_kernel()
    x = torch.randn(1, 3, 32, 40, dtype=torch.float64)
    svd = BlurOperator(k, threshold=0.0)
    fft = BlurOperator(k, method="fft", threshold=0.0)
    assert svd.separable and not fft.separable
    a, b = svd.A(x), fft.A(x)
    assert torch.allclose(a[..., 4:-4, 4:-4], b[..., 4:-4, 4:-4], atol=1e-12)
    # true convolution: a centred impulse reproduces the kernel (not its mirror image)
    imp = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    imp[..., 8, 8] = 1
    out = fft.A(imp)[0, 0, 8 - 2: 8 + 2, 8 - 1: 8 + 2]
    assert torch.allclose(out, torch.tensor(k), atol=1e-12)


def test_blur_noise_gain_matches_measured_amplification():
    op = BlurOperator(sigma=1.0, size_hint=(32, 32))
    n = torch.randn(400, 1, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    measured = op.A_pinv(n).pow(2).mean().sqrt().item()
    assert op.noise_gain() > 2.0  # deblurring amplifies noise
    assert measured == pytest.approx(op.noise_gain(), rel=0.05)


def _boxes():
    return [Box(0, 0, 16, 24), Box(8, 12, 20, 16), Box(16, 40, 32, 40)]


@pytest.mark.parametrize("kind", ["mask", "gray", "avgpool", "mask-gray-pool"])
def test_restrict_matches_cropped_observation(kind):
    h, w = 48, 80
    if kind == "mask":
        op = InpaintOperator(keep_mask(2, h, w))
    elif kind == "gray":
        op = ColorizeOperator()
    elif kind == "avgpool":
        op = AvgPoolSR(4)
    else:
        op = ComposedOperator([AvgPoolSR(4), ColorizeOperator(), InpaintOperator(keep_mask(1, h // 4, w // 4))])
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    full = op.A(x)
    for box in _boxes():
        rows, cols = box.slices()
        sub = op.restrict(box)
        assert torch.allclose(sub.A(x[..., rows, cols]), op.crop_observation(full, box), atol=1e-12)
        y_box = op.crop_observation(full, box)
        assert torch.allclose(sub.A(sub.A_pinv(y_box)), y_box, atol=1e-12)
    if kind in ("avgpool", "mask-gray-pool"):
        with pytest.raises(ValueError, match="aligned"):
            op.restrict(Box(2, 0, 16, 16))


def test_batch_operator_equals_per_sample_application():
    ops = [InpaintOperator(keep_mask(1, 20, 24, seed=s)) for s in range(3)]
    batch = BatchOperator(ops)
    x = torch.randn(3, 3, 20, 24)
    expected = torch.cat([op.A(x[i:i + 1]) for i, op in enumerate(ops)])
    assert torch.equal(batch.A(x), expected)
    assert torch.equal(batch.A_pinv(expected), torch.cat([op.A_pinv(expected[i:i + 1]) for i, op in enumerate(ops)]))
    assert not torch.equal(expected[0], expected[1])  # the masks really differ
    shared = BatchOperator([ops[0]] * 3)
    assert shared.shared and torch.equal(shared.A(x), ops[0].A(x))
    with pytest.raises(ValueError):
        batch.A(x[:2])
    with pytest.raises(ValueError, match="scale"):
        BatchOperator([AvgPoolSR(2), ColorizeOperator()])


def test_observation_projection_is_consistent_for_a_composite():
    op = ComposedOperator([AvgPoolSR(2), BlurOperator(sigma=1.5), ColorizeOperator(),
                           InpaintOperator(keep_mask(1, 12, 16))])
    x_true = torch.randn(1, 3, 24, 32, dtype=torch.float64)
    c = Observation(op, op.A(x_true))
    x0 = torch.randn(1, 3, 24, 32, dtype=torch.float64)
    assert c.residual(x0) > 0.1
    assert c.residual(c.project(x0)) < 1e-5
    assert c.residual(x_true) == 0.0
