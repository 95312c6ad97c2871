"""Host memory: photos too large for the computer are refused up front, and loading and preparing a
photo makes no avoidable full-size copies."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import engine.host_memory as host_memory
from engine.errors import InputError
from engine.image_io import load_image
from engine.request import Quirks, RestoreRequest, Tasks


@pytest.fixture
def available(monkeypatch):
    """Pretend the computer has this many bytes available."""

    def set_available(n: int) -> None:
        monkeypatch.setattr(host_memory, "available_bytes", lambda: n)

    return set_available


def test_check_fits_names_the_megapixels_and_the_memory():
    host_memory.check_fits(4000, 3000, 32, available=int(1e9))  # 0.38 GB: fits
    with pytest.raises(InputError) as info:
        host_memory.check_fits(20000, 20000, 58, available=int(16e9))
    assert str(info.value) == ("the image is too large for this computer's memory: 20000×20000 = 400 megapixels "
                               "needs about 23.2 GB, but only 16 GB is available")


def test_unknown_available_memory_refuses_nothing(monkeypatch):
    monkeypatch.setattr(host_memory, "available_bytes", lambda: None)
    host_memory.check_fits(100_000, 100_000, 100)


@pytest.mark.parametrize("kind", ["png", "float-tiff"])
def test_load_image_refuses_before_decoding(tmp_path, available, kind):
    """A truncated file proves it: decoding it would fail with 'corrupt', the size check comes first."""
    path = tmp_path / f"big.{'png' if kind == 'png' else 'tif'}"
    pixels = np.random.default_rng(0).random((1000, 3000, 3), dtype=np.float32)
    if kind == "png":
        Image.fromarray((pixels * 255).astype(np.uint8)).save(path)
    else:  # a TIFF Pillow cannot open: the tifffile path has the same guard
        tifffile.imwrite(path, pixels, photometric="rgb")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    available(50_000_000)  # 3 MP × 28 bytes = 84 MB needed
    with pytest.raises(InputError, match=r"3000×1000 = 3 megapixels needs about 0.084 GB, but only 0.05 GB"):
        load_image(path)
    available(10**12)
    with pytest.raises(InputError, match="corrupt|truncated|cannot decode"):
        load_image(path)


def test_restore_refuses_a_photo_its_tasks_cannot_fit(available):
    from engine.pipeline import run_to_completion

    photo = np.random.default_rng(1).random((800, 1000, 3), dtype=np.float32)
    available(100_000_000)  # decoding 0.8 MP fits (26 MB); ×2 super-resolution needs 188 B/px = 150 MB
    assert load_image(photo).size == (800, 1000)
    request = RestoreRequest(image=photo, tasks=Tasks(sr=2), model="test-tiny", steps=1, device="cpu")
    with pytest.raises(InputError, match=r"1000×800 = 1 megapixels needs about 0.15 GB"):
        run_to_completion(request)


def test_restore_needs_follow_the_tasks():
    need = host_memory.restore_bytes_per_input_pixel
    assert need(Tasks(colorize=True)) < need(Tasks(inpaint=True)) < need(Tasks(sr=2)) < need(Tasks(sr=4))


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
