"""Large scans: a photo is decoded from its path (no copy of the file in memory), TIFF strips go
straight into the float photo, saving makes the 8/16-bit pixels and nothing else full-size, and all
of it stays lossless and readable by other programs."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, PngImagePlugin

import engine.image_io.codecs as codecs
from engine.errors import InputError
from engine.image_io import LoadedImage, load_image, save_image
from engine.image_io.codecs import _png_chunk
from engine.image_io.pixels import apply_orientation, inverse_orientation

RNG = np.random.default_rng(11)


def _scan(h: int, w: int, channels: int = 3) -> np.ndarray:
    """A 16-bit scan: smooth tones plus grain (compresses about as badly as a real one)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    tone = 0.5 + 0.3 * np.sin(x / 97 + y / 61)
    pixels = tone[..., None] + RNG.normal(0, 0.01, (h, w, channels))
    return np.round(np.clip(pixels, 0, 1) * 65535).astype(np.uint16)


def _peak(action) -> tuple[object, int]:
    """What ``action()`` returns and the most memory (tracemalloc: numpy, bytes) it held at once."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = action()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _orientation_tag(orientation: int) -> list:
    return [(274, "H", 1, orientation, True)]


# ------------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("orientation", [1, 6])
def test_a_16bit_tiff_is_decoded_strip_by_strip_into_the_float_photo(tmp_path, monkeypatch, orientation):
    """Old way: the file's bytes, tifffile's uint16 array, then the float (24 bytes a pixel here).
    Now: the float photo, and a read buffer (and its slices) and a strip at a time."""
    monkeypatch.setattr(codecs, "TIFF_READ_BYTES", 1 << 20)  # small beside the photo, as on a scan
    stored = _scan(1200, 1600)
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, stored, photometric="rgb", compression="zlib", extratags=_orientation_tag(orientation))
    load_image(tmp_path / "scan.tif")  # imports the decoders: not part of the measurement
    loaded, peak = _peak(lambda: load_image(path))
    assert loaded.bit_depth == 16 and loaded.rgb.flags.c_contiguous
    assert np.array_equal(loaded.rgb, apply_orientation(stored, orientation) / np.float32(65535))
    assert peak < loaded.rgb.nbytes + stored.nbytes // 2


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiled_tiffs_with_alpha_come_out_exact_in_every_orientation(tmp_path, orientation):
    stored = _scan(70, 90, 4)  # edge tiles are partly outside the photo
    tifffile.imwrite(tmp_path / "t.tif", stored, photometric="rgb", extrasamples=("unassalpha",), tile=(32, 32),
                     compression="zlib", extratags=_orientation_tag(orientation))
    loaded = load_image(tmp_path / "t.tif")
    upright = apply_orientation(stored, orientation) / np.float32(65535)
    assert np.array_equal(loaded.rgb, upright[..., :3]) and np.array_equal(loaded.alpha, upright[..., 3])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_inverse_orientation_undoes_each_orientation(orientation):
    stored = np.arange(5 * 7 * 2).reshape(5, 7, 2)
    back = apply_orientation(apply_orientation(stored, orientation), inverse_orientation(orientation))
    assert np.array_equal(back, stored)


def test_a_16bit_png_is_decoded_from_its_path_with_one_array_besides_the_float(tmp_path):
    """Old way: the file's bytes, OpenCV's BGR array, an RGB copy of it, then the float."""
    stored = _scan(1000, 1200)
    path = tmp_path / "scan.png"
    cv2.imwrite(str(path), stored[..., ::-1])
    load_image(path)
    loaded, peak = _peak(lambda: load_image(path))
    assert np.array_equal(loaded.rgb, stored / np.float32(65535))
    assert peak < 1.05 * (loaded.rgb.nbytes + stored.nbytes)


@pytest.mark.parametrize("source", ["path", "bytes"])
def test_an_8bit_png_decoded_from_its_path_makes_no_copy_of_the_file(tmp_path, source):
    stored = (RNG.random((600, 700, 3)) * 255).astype(np.uint8)  # noise: the file is as large as the pixels
    Image.fromarray(stored).save(tmp_path / "p.png")
    data = (tmp_path / "p.png").read_bytes()
    given = tmp_path / "p.png" if source == "path" else data
    load_image(given)
    loaded, peak = _peak(lambda: load_image(given))
    assert np.array_equal(loaded.rgb, stored / np.float32(255))
    file_copy = len(data) if source == "bytes" else 0
    assert peak < 1.05 * (loaded.rgb.nbytes + stored.nbytes) + file_copy


def test_a_16bit_png_is_not_decoded_by_pillow_to_find_its_exif(tmp_path, monkeypatch):
    """An eXIf chunk after the pixel data (allowed; Pillow decodes the whole image in 8 bits to find
    it) is found by walking the chunks: kept, and its orientation applied."""
    stored = _scan(12, 20)
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif[0x0112] = 6
    png = cv2.imencode(".png", stored[..., ::-1])[1].tobytes()
    iend = png.rindex(b"IEND") - 4
    (tmp_path / "late.png").write_bytes(png[:iend] + _png_chunk(b"eXIf", exif.tobytes()) + png[iend:])

    def no_pillow_decoding(self):
        raise AssertionError("Pillow decoded the 16-bit PNG")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_pillow_decoding)
    loaded = load_image(tmp_path / "late.png")
    assert np.array_equal(loaded.rgb, apply_orientation(stored, 6) / np.float32(65535))
    kept = Image.Exif()
    kept.load(loaded.exif)
    assert kept.get(0x010F) == "TestCam" and kept.get(0x0112) == 1


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_a_truncated_16bit_file_read_from_its_path_gives_an_input_error(tmp_path, suffix):
    save_image(tmp_path / f"whole{suffix}", _scan(300, 400) / np.float32(65535), bit_depth=16)
    data = (tmp_path / f"whole{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt|truncated|cannot decode"):
        load_image(tmp_path / f"cut{suffix}")


# ------------------------------------------------------------------------------- encoding
@pytest.mark.parametrize("suffix", [".tif", ".png"])
@pytest.mark.parametrize("alpha", [False, True])
def test_saving_16_bits_makes_the_uint16_pixels_and_nothing_else_full_size(tmp_path, suffix, alpha):
    """Old way: a clipped float copy, the uint16 pixels, an RGBA float concatenation for alpha, a BGR
    copy (PNG) and the encoded file in memory, copied again before writing."""
    pixels = _scan(1000, 1200, 4 if alpha else 3)
    rgb = pixels[..., :3] / np.float32(65535)
    alpha_channel = pixels[..., 3] / np.float32(65535) if alpha else None
    save_image(tmp_path / f"warm{suffix}", rgb[:8], bit_depth=16)
    _, peak = _peak(lambda: save_image(tmp_path / f"o{suffix}", rgb, bit_depth=16, alpha=alpha_channel))
    encoded = 0 if suffix == ".tif" else (tmp_path / f"o{suffix}").stat().st_size  # OpenCV encodes in memory
    assert peak < 1.4 * pixels.nbytes + encoded  # and bands of rows: a float copy alone would be 2 ×
    back = load_image(tmp_path / f"o{suffix}")
    assert np.array_equal(back.rgb, rgb) and (not alpha or np.array_equal(back.alpha, alpha_channel))


def test_tiffs_are_written_with_fast_deflate_and_the_predictor_and_read_back_everywhere(tmp_path):
    rgb = _scan(50, 70) / np.float32(65535)
    save_image(tmp_path / "rgb8.tif", rgb, bit_depth=8)
    save_image(tmp_path / "rgb16.tif", rgb, bit_depth=16)
    gray = np.repeat(rgb[..., :1], 3, axis=2)
    save_image(tmp_path / "gray16.tif", gray, like=LoadedImage(gray, bit_depth=16, mode="I;16"))
    with tifffile.TiffFile(tmp_path / "rgb16.tif") as tif:
        page = tif.pages[0]
        assert int(page.compression) == 8 and int(page.predictor) == 2  # Adobe deflate, horizontal differencing
        assert np.array_equal(page.asarray(), np.round(rgb * 65535).astype(np.uint16))
    with Image.open(tmp_path / "rgb8.tif") as im:  # libtiff, as in most other programs
        assert np.array_equal(np.asarray(im), np.round(rgb * 255).astype(np.uint8))
    with Image.open(tmp_path / "gray16.tif") as im:
        assert im.mode == "I;16"
        assert np.array_equal(np.asarray(im).astype(np.uint16), np.round(gray[..., 0] * 65535).astype(np.uint16))
