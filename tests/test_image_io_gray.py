"""Gray photos are saved gray: the kind of file the user gave (8/16 bits, alpha, ICC, EXIF), not RGB,
as long as the result is exactly gray; colour (colorized, or a colour input) stays RGB."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from engine.image_io import LoadedImage, load_image, save_image

RNG = np.random.default_rng(7)
GRAY8 = (RNG.random((20, 26)) * 255).astype(np.uint8)
GRAY16 = (RNG.random((20, 26)) * 65535).astype(np.uint16)
ALPHA8 = np.tile(np.linspace(0, 255, 26).astype(np.uint8), (20, 1))
ALPHA16 = np.tile(np.linspace(0, 65535, 26).astype(np.uint16), (20, 1))


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    return exif.tobytes()


def _icc(space: bytes) -> bytes:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return icc[:16] + space + icc[20:]


def _write_input(path, kind: str):
    """A gray file of ``kind``; returns its gray pixels and alpha (or None) as stored."""
    if kind == "png8":
        Image.fromarray(GRAY8).save(path, exif=_exif())
        return GRAY8, None
    if kind == "png16":
        Image.fromarray(GRAY16).save(path)  # Pillow writes I;16
        return GRAY16, None
    if kind == "jpeg":
        Image.fromarray(GRAY8).save(path, quality=95, exif=_exif())
        with Image.open(path) as im:
            return np.asarray(im), None
    if kind == "la_png":
        Image.fromarray(np.dstack([GRAY8, ALPHA8]), "LA").save(path)
        return GRAY8, ALPHA8
    if kind == "tiff16":
        tifffile.imwrite(path, GRAY16, photometric="minisblack")
        return GRAY16, None
    if kind == "tiff16_alpha":
        tifffile.imwrite(path, np.dstack([GRAY16, ALPHA16]), photometric="minisblack", extrasamples=("unassalpha",))
        return GRAY16, ALPHA16
    raise AssertionError(kind)


def _read_back(path):
    """(gray, alpha or None) as stored in a written gray file; fails on an RGB file."""
    if path.suffix == ".tif":
        stored = tifffile.imread(path)
        with tifffile.TiffFile(path) as tif:
            assert int(tif.pages[0].photometric) == 1  # MINISBLACK
    elif path.suffix == ".jpg":
        with Image.open(path) as im:
            assert im.mode == "L"
            stored = np.asarray(im)
    else:
        assert path.read_bytes()[25] in (0, 4)  # IHDR colour type: gray, gray + alpha
        stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if stored.ndim == 3:  # OpenCV gives gray+alpha as BGRA
            stored = stored[..., [0, 3]]
    return (stored, None) if stored.ndim == 2 else (stored[..., 0], stored[..., 1])


@pytest.mark.parametrize("kind, suffix", [("png8", ".png"), ("png16", ".png"), ("jpeg", ".jpg"),
                                          ("la_png", ".png"), ("tiff16", ".tif"), ("tiff16_alpha", ".tif")])
def test_gray_files_round_trip_gray(tmp_path, kind, suffix):
    gray, alpha = _write_input(tmp_path / f"in{suffix}", kind)
    loaded = load_image(tmp_path / f"in{suffix}")
    out = tmp_path / f"out{suffix}"
    assert save_image(out, loaded.rgb, like=loaded) == []
    stored, stored_alpha = _read_back(out)
    assert stored.dtype == gray.dtype
    if kind == "jpeg":  # lossy: re-encoded, close
        assert np.abs(stored.astype(int) - gray).mean() < 2
    else:
        assert np.array_equal(stored, gray)
    assert (stored_alpha is None) == (alpha is None)
    if alpha is not None:
        assert np.array_equal(stored_alpha, alpha)
    again = load_image(out)
    assert again.mode == loaded.mode and again.bit_depth == loaded.bit_depth
    if kind in ("png8", "jpeg"):
        with Image.open(out) as im:
            assert im.getexif().get(0x010F) == "TestCam"


def test_16bit_gray_alpha_png_is_written_with_16_bits(tmp_path):
    like = LoadedImage(np.zeros((1, 1, 3), np.float32), alpha=ALPHA16 / 65535.0, bit_depth=16, mode="LA",
                       exif=_exif(), format="PNG")
    save_image(tmp_path / "o.png", np.repeat((GRAY16 / 65535.0)[..., None], 3, axis=2), like=like)
    assert (tmp_path / "o.png").read_bytes()[24] == 16  # IHDR bit depth
    gray, alpha = _read_back(tmp_path / "o.png")
    assert np.array_equal(gray, GRAY16) and np.array_equal(alpha, ALPHA16)
    with Image.open(tmp_path / "o.png") as im:
        assert im.getexif().get(0x010F) == "TestCam"
    again = load_image(tmp_path / "o.png")  # and read back as what it is (Pillow would say RGBA)
    assert again.mode == "LA" and again.bit_depth == 16 and np.array_equal(np.round(again.alpha * 65535), ALPHA16)
    assert np.array_equal(np.round(again.rgb * 65535), np.dstack([GRAY16] * 3))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_a_gray_profile_is_kept_in_a_gray_file_and_an_rgb_one_is_not(tmp_path, suffix):
    pixels = np.repeat((GRAY8 / 255.0)[..., None], 3, axis=2)
    gray = LoadedImage(pixels, mode="L", icc_profile=_icc(b"GRAY"), format="PNG")
    assert save_image(tmp_path / f"g{suffix}", pixels, like=gray) == []
    assert load_image(tmp_path / f"g{suffix}").icc_profile == _icc(b"GRAY")
    rgb_profile = LoadedImage(pixels, mode="L", icc_profile=_icc(b"RGB "), format="PNG")
    notes = save_image(tmp_path / f"r{suffix}", pixels, like=rgb_profile)
    assert any("RGB colour profile" in note and "gray" in note for note in notes)
    again = load_image(tmp_path / f"r{suffix}")
    assert again.icc_profile is None and again.mode == "L"


def test_colour_input_stays_rgb_even_when_the_result_is_gray(tmp_path):
    Image.fromarray(np.dstack([GRAY8] * 3)).save(tmp_path / "in.png")  # gray pixels in an RGB file
    loaded = load_image(tmp_path / "in.png")
    save_image(tmp_path / "out.png", loaded.rgb, like=loaded)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "RGB"


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg"])
def test_a_colorized_result_of_a_gray_input_stays_rgb(tmp_path, suffix):
    Image.fromarray(GRAY8).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    colorized = loaded.rgb.copy()
    colorized[5, 7, 0] += 2 / 255  # one pixel is not gray
    notes = save_image(tmp_path / f"out{suffix}", colorized, like=loaded)
    assert notes == []
    assert load_image(tmp_path / f"out{suffix}").mode == "RGB"


def test_webp_cannot_hold_gray_and_stays_rgb(tmp_path):
    Image.fromarray(GRAY8).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    assert save_image(tmp_path / "out.webp", loaded.rgb, like=loaded) == []
    assert load_image(tmp_path / "out.webp").mode == "RGB"


# ------------------------------------------------------------------------ the CLI reaches it
@pytest.mark.parametrize("colorize", [False, True])
def test_cli_restores_a_16bit_gray_png_into_a_16bit_gray_png(tmp_path, colorize):
    import json

    from engine.cli import main
    from tests.cli_restore_helpers import FAST

    Image.fromarray(GRAY16[:16, :20]).save(tmp_path / "in.png")
    out, report = tmp_path / "out.png", tmp_path / "r.json"
    argv = ["restore", str(tmp_path / "in.png"), "-o", str(out), "--sr", "2", "--report", str(report),
            "--steps", "1", "--overlap", "32", "--no-hir", *FAST]
    assert main([*argv, *(["--colorize"] if colorize else [])]) == 0
    assert json.loads(report.read_text())["monochrome"] is not colorize
    again = load_image(out)
    assert again.size == (32, 40) and again.bit_depth == 16
    assert again.mode == ("RGB" if colorize else "I;16")
