"""Host memory: loading and preparing a photo makes no avoidable full-size copies."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from engine.image_io import load_image
from engine.request import Quirks, Tasks


# ------------------------------------------------------------------------------ no extra copies
def _encoded(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_decoding_makes_one_float_copy(channels, fmt):
    """numpy allocations (tracemalloc sees them) while decoding: the decoder's array, the encoded
    bytes and the float RGB, not the two or three float temporaries of a convert-then-expand decode.
    The JPEG carries orientation 6, so the orientation must not cost a copy either."""
    stored = (np.random.default_rng(channels).random((500, 600, 3)) * 255).astype(np.uint8)
    stored = stored[..., 0] if channels == 1 else stored
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encoded(stored, fmt, **({"exif": exif, "quality": 95} if fmt == "JPEG" else {}))
    load_image(data)  # first use imports decoder modules: not part of the measurement
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        loaded = load_image(data)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert loaded.rgb.shape == ((600, 500, 3) if fmt == "JPEG" else (500, 600, 3))
    assert peak <= 1.1 * (loaded.rgb.nbytes + stored.nbytes + len(data))


def test_photo_is_converted_in_place_and_held_once_when_padded():
    from engine.pipeline import _photo_problem

    rgb = np.random.default_rng(2).random((30, 40, 3), dtype=np.float32)
    original = rgb.copy()
    fill = np.zeros((30, 40), bool)
    fill[5:9, 5:9] = True
    base = _photo_problem(rgb, fill, Tasks(inpaint=True), torch.device("cpu"), Quirks())
    assert base.photo.data_ptr() == rgb.ctypes.data  # no copy: rgb became the photo
    torch.testing.assert_close(base.photo[0].permute(1, 2, 0), torch.from_numpy(original * 2 - 1))
    padded = base.padded(64, 64)
    unpadded = padded.cropped(30, 40)
    assert unpadded.photo.data_ptr() == padded.photo.data_ptr()  # a view of the padded photo
    assert unpadded.mask.data_ptr() == padded.mask.data_ptr()
    assert torch.equal(unpadded.photo, base.photo) and torch.equal(unpadded.mask, base.mask)


def test_norm64_matches_a_float64_norm_without_a_full_copy():
    from engine.operators.base import norm64

    a = torch.randn(1, 3, 301, 500).permute(0, 1, 3, 2)  # channels-last strides, as the pipeline has them
    b = torch.randn(1, 3, 500, 301)
    assert norm64(a, b, chunk=10_000) == pytest.approx(float(torch.linalg.vector_norm((a - b).double())), rel=1e-12)
    assert norm64(a) == pytest.approx(float(torch.linalg.vector_norm(a.double())), rel=1e-12)
    assert norm64(a[:, :1], b) == pytest.approx(float(torch.linalg.vector_norm((a[:, :1] - b).double())), rel=1e-12)
