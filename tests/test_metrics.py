"""PSNR / SSIM / consistency against closed forms and scikit-image."""

import math

import numpy as np
import pytest
import torch

from engine.evaluation.metrics import consistency, gaussian_window, psnr, ssim

skimage_metrics = pytest.importorskip("skimage.metrics")


def _ref_ssim(a, b, channel_axis=-1):
    return skimage_metrics.structural_similarity(
        a, b, data_range=1.0, channel_axis=channel_axis, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )


def test_psnr_identical_is_inf():
    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    assert psnr(img, img) == math.inf


def test_psnr_known_value_on_constructed_pair():
    a = np.zeros((8, 8, 3), np.float64)
    b = a.copy()
    b[:4] = 0.1  # half the pixels off by 0.1 -> MSE = 0.005 -> PSNR = 10 log10(1/0.005)
    assert psnr(b, a) == pytest.approx(10 * math.log10(1 / 0.005), abs=1e-9)
    assert psnr(b, a) == pytest.approx(23.0103, abs=1e-4)


def test_psnr_accepts_torch_chw_and_rejects_shape_mismatch():
    a = torch.rand(3, 10, 12)
    b = a.clamp(0, 1) * 0.5
    assert psnr(a, b, channels_first=True) == pytest.approx(psnr(a.permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy()))
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))


def test_gaussian_window_is_normalised_and_symmetric():
    w = gaussian_window()
    assert w.shape == (11, 11)
    assert float(w.sum()) == pytest.approx(1.0)
    assert torch.allclose(w, w.T) and torch.allclose(w, w.flip(0))


@pytest.mark.parametrize("noise", [0.02, 0.1, 0.3])
def test_ssim_matches_skimage_colour(noise):
    rng = np.random.default_rng(1)
    a = rng.random((48, 40, 3))
    b = np.clip(a + noise * rng.standard_normal(a.shape), 0, 1)
    assert abs(ssim(b, a) - _ref_ssim(b, a)) < 1e-3


def test_ssim_matches_skimage_on_structured_gray_and_shifted_images():
    y, x = np.mgrid[0:64, 0:64] / 63.0
    a = 0.5 + 0.4 * np.sin(6 * x) * np.cos(4 * y)
    b = np.roll(a, 3, axis=1) * 0.9 + 0.05
    ours = ssim(b, a)
    ref = skimage_metrics.structural_similarity(b, a, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert abs(ours - ref) < 1e-3
    assert ours < 0.99  # really different images score below 1


def test_ssim_identical_is_one_and_small_images_rejected():
    a = np.random.default_rng(2).random((20, 20, 3))
    assert ssim(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))


def test_consistency_is_relative_residual():
    y = torch.ones(1, 3, 4, 4)
    assert consistency(y, y) == 0.0
    assert consistency(y * 1.1, y) == pytest.approx(0.1, rel=1e-6)
