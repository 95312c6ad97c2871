"""Mask files: white on black, transparent stroke layers, and 0/1 label maps (as many tools export)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.image_io import load_mask

SIZE = (10, 12)


def _labels(dtype=np.uint8) -> np.ndarray:
    m = np.zeros(SIZE, dtype)
    m[2:5, 3:7] = 1
    return m


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "RGBA"])
def test_a_png_of_zeros_and_ones_is_a_label_mask(tmp_path, mode):
    labels = _labels(np.uint16 if mode == "I;16" else np.uint8)
    if mode in ("RGB", "RGBA"):  # labels in the colour channels; RGBA: fully opaque
        pixels = np.dstack([labels] * 3 + ([np.full(SIZE, 255, np.uint8)] if mode == "RGBA" else []))
        Image.fromarray(pixels, mode).save(tmp_path / "m.png")
    else:
        Image.fromarray(labels).save(tmp_path / "m.png")  # uint16 -> a 16-bit gray PNG (I;16)
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == mode and np.atleast_3d(np.asarray(im))[..., :3].max() == 1
    mask = load_mask(tmp_path / "m.png", SIZE)
    assert np.array_equal(mask, labels == 1)


def test_a_16bit_tiff_of_zeros_and_ones_is_a_label_mask(tmp_path):
    Image.fromarray(_labels(np.uint16)).save(tmp_path / "m.tif")
    assert np.array_equal(load_mask(tmp_path / "m.tif", SIZE), _labels() == 1)


def test_values_of_one_among_other_values_are_near_black_not_labels(tmp_path):
    m = _labels() * 255
    m[0, 0] = m[9, 11] = 1  # a stray near-black pixel (e.g. from a lossy round trip) is not filled
    Image.fromarray(m).save(tmp_path / "m.png")
    assert np.array_equal(load_mask(tmp_path / "m.png", SIZE), m == 255)


def test_ones_in_a_jpeg_are_noise_around_black(tmp_path):
    Image.fromarray(_labels()).save(tmp_path / "m.jpg", quality=100)
    with Image.open(tmp_path / "m.jpg") as im:
        assert np.asarray(im).max() == 1
    assert not load_mask(tmp_path / "m.jpg", SIZE).any()


def test_an_opaque_alpha_leaves_the_colour_to_decide(tmp_path):
    rgba = np.zeros(SIZE + (4,), np.uint8)
    rgba[..., 3] = 255
    rgba[2:5, 3:7, :3] = 255  # white on black in an opaque RGBA file
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    assert np.array_equal(load_mask(tmp_path / "m.png", SIZE), _labels() == 1)


def test_the_gui_imports_label_masks_by_the_same_rule(tmp_path):
    from gui.files import ops as file_ops

    Image.fromarray(_labels()).save(tmp_path / "m.png")
    imported = file_ops.load_mask_file(str(tmp_path / "m.png"), (20, 24))  # scaled ×2 to the photo
    expected = np.repeat(np.repeat(_labels() * 255, 2, 0), 2, 1)
    assert imported.file_size == SIZE and np.array_equal(imported.mask, expected)
