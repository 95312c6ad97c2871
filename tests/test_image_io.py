"""engine.image_io: bit depth, alpha, orientation, ICC + EXIF round trips, clear errors."""

from __future__ import annotations

import io
import os

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, ImageOps

from engine.errors import InputError
from engine.image_io import (
    LoadedImage,
    apply_orientation,
    from_model_tensor,
    load_image,
    load_mask,
    save_image,
    to_model_tensor,
)


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x0110] = "Model 7"  # Model
    exif[0x0112] = orientation
    return exif


def _ramp(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


# --------------------------------------------------------------------------- bit depth
def test_16bit_rgb_png_round_trip_keeps_16_bits(tmp_path):
    src = (np.random.default_rng(1).random((20, 30, 3)) * 65535).astype(np.uint16)
    path = tmp_path / "in16.png"
    cv2.imwrite(str(path), src[..., ::-1])  # OpenCV writes BGR
    loaded = load_image(path)
    assert loaded.bit_depth == 16 and loaded.format == "PNG"
    np.testing.assert_allclose(loaded.rgb * 65535, src, atol=0.51)
    out = tmp_path / "out16.png"
    save_image(out, loaded.rgb, like=loaded)
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert back.dtype == np.uint16
    assert np.abs(back.astype(int) - src.astype(int)).max() <= 1


def test_16bit_gray_png_gives_three_equal_channels(tmp_path):
    src = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 250).astype(np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(src).save(path)  # Pillow writes I;16
    loaded = load_image(path)
    assert loaded.bit_depth == 16 and loaded.mode.startswith("I")
    assert np.array_equal(loaded.rgb[..., 0], loaded.rgb[..., 1])
    assert np.array_equal(loaded.rgb[..., 1], loaded.rgb[..., 2])
    assert np.abs(loaded.rgb[..., 0] * 65535 - src).max() <= 0.5


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_tiff_round_trip(tmp_path, channels):
    src = (np.random.default_rng(2).random((18, 22, channels)) * 65535).astype(np.uint16)
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, src, photometric="rgb", extrasamples=("unassalpha",) if channels == 4 else None)
    loaded = load_image(path)
    assert loaded.bit_depth == 16 and loaded.format == "TIFF"
    assert (loaded.alpha is not None) == (channels == 4)
    out = tmp_path / "out.tiff"
    save_image(out, loaded.rgb, like=loaded)
    back = tifffile.imread(out)
    assert back.dtype == np.uint16 and back.shape == src.shape
    assert np.abs(back.astype(int) - src.astype(int)).max() <= 1


def test_8bit_input_saved_as_16_bit_when_asked(tmp_path):
    rgb = _ramp()
    save_image(tmp_path / "a.png", rgb, bit_depth=16)
    back = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    assert load_image(tmp_path / "a.png").bit_depth == 16


# ----------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_icc_and_exif_survive_round_trip(tmp_path, suffix):
    icc = _srgb_icc()
    path = tmp_path / f"in{suffix}"
    Image.fromarray((_ramp() * 255).astype(np.uint8)).save(path, icc_profile=icc, exif=_exif())
    loaded = load_image(path)
    assert loaded.icc_profile == icc
    out = tmp_path / f"out{suffix}"
    notes = save_image(out, np.clip(loaded.rgb * 0.9, 0, 1), like=loaded)
    assert notes == []
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == icc
        exif = im.getexif()
        assert exif.get(0x010F) == "TestCam" and exif.get(0x0110) == "Model 7"


def test_icc_and_exif_survive_16bit_png(tmp_path):
    icc = _srgb_icc()
    loaded = LoadedImage(_ramp(), bit_depth=16, icc_profile=icc, exif=_exif().tobytes(), format="PNG")
    save_image(tmp_path / "o.png", loaded.rgb, like=loaded)
    with Image.open(tmp_path / "o.png") as im:
        assert im.info.get("icc_profile") == icc
        assert im.getexif().get(0x010F) == "TestCam"
    again = load_image(tmp_path / "o.png")
    assert again.bit_depth == 16 and again.icc_profile == icc


def test_tiff_keeps_icc_and_text_tags(tmp_path):
    icc = _srgb_icc()
    loaded = LoadedImage(_ramp(), bit_depth=8, icc_profile=icc, exif=_exif().tobytes(), format="TIFF")
    save_image(tmp_path / "o.tif", loaded.rgb, like=loaded)
    again = load_image(tmp_path / "o.tif")
    assert again.icc_profile == icc
    with tifffile.TiffFile(tmp_path / "o.tif") as tif:
        assert tif.pages[0].tags["Make"].value == "TestCam"


def test_exif_orientation_6_applied_and_reset(tmp_path):
    h, w = 12, 20
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[0, 0] = (255, 0, 0)  # red top-left of the stored (unrotated) image
    path = tmp_path / "rot.jpg"
    Image.fromarray(pixels).save(path, exif=_exif(6), quality=100, subsampling=0)
    loaded = load_image(path)
    assert loaded.size == (w, h)  # rotated 90° clockwise: stored top-left ends top-right
    y, x = np.unravel_index(np.argmax(loaded.rgb[..., 0] - loaded.rgb[..., 1]), loaded.size)
    assert y <= 1 and x >= h - 2
    exif = Image.Exif()
    exif.load(loaded.exif)
    assert exif.get(0x0112) == 1 and exif.get(0x010F) == "TestCam"
    save_image(tmp_path / "out.jpg", loaded.rgb, like=loaded)
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.size == (h, w) and im.getexif().get(0x0112) == 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(orientation):
    stored = (np.random.default_rng(orientation).random((5, 7, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(im))
    assert np.array_equal(apply_orientation(stored, orientation), expected)


def test_gray_icc_not_embedded_in_rgb_output(tmp_path):
    gray_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    gray_icc = gray_icc[:16] + b"GRAY" + gray_icc[20:]
    loaded = LoadedImage(_ramp(), icc_profile=gray_icc, format="JPEG")
    notes = save_image(tmp_path / "o.jpg", loaded.rgb, like=loaded)
    assert any("colour profile" in n for n in notes)
    with Image.open(tmp_path / "o.jpg") as im:
        assert "icc_profile" not in im.info


# -------------------------------------------------------------------------------- modes
def test_rgba_alpha_preserved_and_resized(tmp_path):
    rgba = (np.random.default_rng(3).random((16, 16, 4)) * 255).astype(np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 16, dtype=np.uint8)[None, :]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.alpha is not None and loaded.alpha.shape == (16, 16)
    save_image(tmp_path / "same.png", loaded.rgb, like=loaded)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "same.png"))[..., 3], rgba[..., 3])
    big = np.repeat(np.repeat(loaded.rgb, 2, 0), 2, 1)  # ×2 "upscaled" result
    save_image(tmp_path / "big.png", big, like=loaded)
    with Image.open(tmp_path / "big.png") as im:
        assert im.mode == "RGBA" and im.size == (32, 32)
        alpha = np.asarray(im)[..., 3].astype(int)
    assert alpha[:, 0].max() <= 10 and alpha[:, -1].min() >= 245
    assert np.all(np.diff(alpha[0]) >= 0)  # bilinear: ramp stays monotone
    notes = save_image(tmp_path / "flat.jpg", loaded.rgb, like=loaded)
    assert any("alpha" in n for n in notes)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "1"])
def test_grayscale_and_palette_modes(tmp_path, mode):
    base = Image.fromarray((_ramp(12, 14) * 255).astype(np.uint8)).convert(mode)
    base.save(tmp_path / "m.png")
    loaded = load_image(tmp_path / "m.png")
    assert loaded.rgb.shape == (12, 14, 3) and loaded.rgb.dtype == np.float32
    assert loaded.mode == mode
    expected = np.asarray(base.convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_allclose(loaded.rgb, expected, atol=1e-6)
    assert (loaded.alpha is not None) == (mode == "LA")
    if mode in ("L", "LA", "1"):
        assert np.array_equal(loaded.rgb[..., 0], loaded.rgb[..., 2])


def test_array_and_bytes_sources():
    arr = (_ramp(8, 9) * 65535).astype(np.uint16)
    loaded = load_image(arr)
    assert loaded.bit_depth == 16 and loaded.mode == "array"
    buf = io.BytesIO()
    Image.fromarray((_ramp(8, 9) * 255).astype(np.uint8)).save(buf, "PNG")
    assert load_image(buf.getvalue()).size == (8, 9)
    assert load_image(np.zeros((4, 5), np.float32)).rgb.shape == (4, 5, 3)


# ------------------------------------------------------------------------------- errors
def test_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "notes.png").write_text("hello, not an image")
    with pytest.raises(InputError, match="not an image"):
        load_image(tmp_path / "notes.png")
    with pytest.raises(InputError, match="folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF"])
def test_truncated_file_gives_input_error(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray((_ramp(64, 64) * 255).astype(np.uint8)).save(buf, fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError):
        load_image(path)


def test_decompression_bomb_guard(tmp_path):
    Image.new("L", (400, 300)).save(tmp_path / "big.png")
    with pytest.raises(InputError, match="too large"):
        load_image(tmp_path / "big.png", max_pixels=100_000)
    assert load_image(tmp_path / "big.png", max_pixels=120_000).size == (300, 400)


def test_save_is_atomic_and_rejects_unknown_extension(tmp_path, monkeypatch):
    target = tmp_path / "photo.png"
    target.write_bytes(b"original")
    with pytest.raises(InputError, match="extension"):
        save_image(tmp_path / "x.gif2", _ramp())

    def power_cut(*args):
        raise RuntimeError("power cut")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(RuntimeError, match="power cut"):
        save_image(target, _ramp())
    monkeypatch.undo()
    assert target.read_bytes() == b"original"
    assert [p.name for p in tmp_path.iterdir()] == ["photo.png"]  # no temp file left behind


# --------------------------------------------------------------------------------- masks
def test_load_mask_rules_and_size_check(tmp_path):
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 3:7] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", (10, 12))
    assert mask.dtype == np.bool_ and mask.sum() == 12 and mask[3, 4]
    strokes = np.zeros((10, 12, 4), np.uint8)
    strokes[1, 1] = (0, 0, 0, 255)  # a black stroke on a transparent layer
    Image.fromarray(strokes, "RGBA").save(tmp_path / "s.png")
    assert load_mask(tmp_path / "s.png", (10, 12)).sum() == 1
    with pytest.raises(InputError, match=r"12×10.*20×30"):
        load_mask(tmp_path / "m.png", (30, 20))


# ------------------------------------------------------------------------------- tensors
def test_model_tensor_round_trip():
    rgb = _ramp(6, 7)
    x = to_model_tensor(rgb)
    assert x.shape == (1, 3, 6, 7) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert torch.allclose(x[0, :, 2, 3], torch.from_numpy(rgb[2, 3]) * 2 - 1)
    np.testing.assert_allclose(from_model_tensor(x), rgb, atol=1e-6)
    assert from_model_tensor(torch.full((1, 3, 2, 2), 5.0)).max() == 1.0
    with pytest.raises(InputError):
        to_model_tensor(rgb[..., 0])


@pytest.mark.parametrize("kind", ["float32", "planar16", "miniswhite"])
def test_tiff_layouts_pillow_cannot_open(tmp_path, kind):
    rng = np.random.default_rng(5)
    path = tmp_path / "t.tif"
    if kind == "float32":
        expected = rng.random((6, 7, 3), dtype=np.float32)
        tifffile.imwrite(path, expected, photometric="rgb")
    elif kind == "planar16":
        planes = (rng.random((3, 6, 7)) * 65535).astype(np.uint16)
        tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate")
        expected = planes.transpose(1, 2, 0) / 65535.0
    else:
        gray = (rng.random((6, 7)) * 255).astype(np.uint8)
        tifffile.imwrite(path, gray, photometric="miniswhite")
        expected = np.repeat(((255 - gray) / 255.0)[..., None], 3, axis=2)
    loaded = load_image(path)
    assert loaded.rgb.shape == (6, 7, 3)
    np.testing.assert_allclose(loaded.rgb, expected, atol=1e-5)
    assert loaded.bit_depth == (8 if kind == "miniswhite" else 16)


def test_noisy_image_saves_as_high_quality_jpeg(tmp_path):
    noise = np.random.default_rng(7).random((120, 100, 3), dtype=np.float32)  # worst case for the encoder
    save_image(tmp_path / "n.jpg", noise, quality=95)
    assert load_image(tmp_path / "n.jpg").size == (120, 100)


@pytest.mark.parametrize("decoder", ["default", "pillow"])
@pytest.mark.parametrize("compression", [None, "tiff_lzw", "tiff_adobe_deflate"])
@pytest.mark.parametrize("orientation", [3, 6])
def test_tiff_orientation_is_applied_exactly_once(tmp_path, monkeypatch, decoder, compression, orientation):
    """Pillow turns TIFFs upright itself (libtiff for LZW/deflate, which tifffile cannot read
    without imagecodecs); tifffile does not. Either way the photo must come out upright once."""
    import engine.image_io.codecs as codecs

    if decoder == "pillow":  # as when tifffile cannot decode the compression
        monkeypatch.setattr(codecs, "decode_tiff", lambda data, check_size=None: None)
    stored = (np.random.default_rng(orientation).random((10, 16, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "scan.tif"
    Image.fromarray(stored).save(path, exif=exif, **({"compression": compression} if compression else {}))
    loaded = load_image(path)
    assert np.array_equal(np.round(loaded.rgb * 255).astype(np.uint8), apply_orientation(stored, orientation))
    if loaded.exif is not None:
        again = Image.Exif()
        again.load(loaded.exif)
        assert again.get(0x0112, 1) == 1


def test_16bit_rgb_lzw_tiff_keeps_16_bits(tmp_path):
    """The usual 48-bit scanner file: Pillow would reduce it to 8 bits; tifffile + imagecodecs do not."""
    src = (np.random.default_rng(8).random((9, 11, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "scan.tif", src, photometric="rgb", compression="lzw", predictor=True)
    loaded = load_image(tmp_path / "scan.tif")
    assert loaded.bit_depth == 16
    np.testing.assert_allclose(loaded.rgb * 65535, src, atol=0.51)


_LAYOUT_TAGS = (256, 257, 258, 259, 262, 273, 277, 278, 279, 284)  # size, bits, compression, strips, ...


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_tiff_layout_tags_do_not_follow_the_pixels(tmp_path, suffix):
    """A TIFF's own structure (ImageWidth, BitsPerSample, StripOffsets, ...) is not EXIF of the photo."""
    src = (np.random.default_rng(9).random((64, 96, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "scan.tif", src, photometric="rgb", extratags=[
        (271, "s", 0, "ScanCo", True), (272, "s", 0, "Flatbed 9", True), (315, "s", 0, "Ann", True),
        (274, "H", 1, 6, True)])
    loaded = load_image(tmp_path / "scan.tif")
    assert loaded.size == (96, 64)
    big = np.repeat(np.repeat(loaded.rgb, 2, 0), 2, 1)  # a ×2 result: 128×192
    save_image(tmp_path / f"out{suffix}", big, like=loaded)
    with Image.open(tmp_path / f"out{suffix}") as im:
        assert im.size == (128, 192)
        exif = im.getexif()
        assert exif.get(0x010F) == "ScanCo" and exif.get(0x0110) == "Flatbed 9" and exif.get(0x013B) == "Ann"
        assert exif.get(0x0112, 1) == 1
        if suffix != ".tif":  # a written TIFF has its own (correct) layout tags
            assert not [tag for tag in _LAYOUT_TAGS if tag in exif]


def test_exif_and_gps_sub_ifds_are_kept_without_their_size_tags(tmp_path):
    exif = _exif(3)
    exif.get_ifd(0x8769).update({0x9003: "1968:05:04 10:00:00", 0xA002: 32, 0xA003: 24})  # date, size
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 24.0)})
    Image.fromarray((_ramp() * 255).astype(np.uint8)).save(tmp_path / "in.jpg", exif=exif)
    loaded = load_image(tmp_path / "in.jpg")
    save_image(tmp_path / "out.jpg", np.repeat(np.repeat(loaded.rgb, 2, 0), 2, 1), like=loaded)
    with Image.open(tmp_path / "out.jpg") as im:
        out = im.getexif()
        sub, gps = out.get_ifd(0x8769), out.get_ifd(0x8825)
    assert out.get(0x010F) == "TestCam" and out.get(0x0112) == 1
    assert sub.get(0x9003) == "1968:05:04 10:00:00" and 0xA002 not in sub and 0xA003 not in sub
    assert gps.get(1) == "N"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
@pytest.mark.parametrize("channels", [0, 3])
def test_integer_zero_one_masks_fill_where_nonzero(dtype, channels):
    m = np.zeros((10, 12), dtype)
    m[2:5, 3:7] = 1
    if channels:
        m = np.repeat(m[..., None], channels, axis=2)
    mask = load_mask(m, (10, 12))
    assert mask.dtype == np.bool_ and mask.sum() == 12 and mask[3, 4]


@pytest.mark.parametrize("top, dtype", [(255, np.uint8), (65535, np.uint16), (255, np.int64)])
def test_integer_white_on_black_masks_still_work(top, dtype):
    m = np.zeros((10, 12), dtype)
    m[2:5, 3:7] = top
    m[0, 0] = 1  # a stray near-black pixel is not filled
    mask = load_mask(m, (10, 12))
    assert mask.sum() == 12 and not mask[0, 0]
