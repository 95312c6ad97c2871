"""``python -m engine detect`` and ``restore --mask auto``, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli import main
from engine.detection import detect_damage
from engine.detection.synthetic import DamageSpec, add_damage
from engine.image_io import load_image, load_mask
from engine.models.tiny import build_tiny, tiny_adm_config
from tests.test_damage_detection import smooth_photo

FAST = ["--model", "test-tiny", "--window", "64", "--overlap", "32", "--device", "cpu", "--no-progress", "--steps", "1"]


def damaged_file(path, seed: int = 0, size=(120, 160), tear: bool = True):
    damaged = add_damage(smooth_photo(*size, seed), seed, DamageSpec(torn_corner=tear))
    Image.fromarray(np.round(damaged.image * 255).astype(np.uint8)).save(path)
    return path, damaged


def clean_file(path, seed: int = 0, size=(96, 128)):
    Image.fromarray(np.round(smooth_photo(*size, seed) * 255).astype(np.uint8)).save(path)
    return path


def test_detect_writes_the_proposed_mask(tmp_path, capsys):
    photo, damaged = damaged_file(tmp_path / "scan.jpg")
    out = tmp_path / "mask.png"
    assert main(["detect", str(photo), "-o", str(out), "--no-progress"]) == 0
    mask = load_mask(out, (120, 160))
    expected = detect_damage(load_image(photo).rgb).mask()
    assert np.array_equal(mask, expected) and mask.any()
    assert (mask & damaged.mask).sum() > 0.6 * damaged.mask.sum()
    assert "of the photo marked as damage" in capsys.readouterr().err
    assert main(["detect", str(photo), "-o", str(out), "--sensitivity", "0.2", "--no-progress"]) == 0
    assert load_mask(out, (120, 160)).sum() < mask.sum()


def test_detect_a_folder_then_restore_it_with_those_masks(tmp_path):
    photos, masks, restored = tmp_path / "scans", tmp_path / "masks", tmp_path / "restored"
    photos.mkdir()
    damaged_file(photos / "a.png", 1, (64, 80))
    damaged_file(photos / "b.jpg", 2, (64, 80))
    assert main(["detect", str(photos), "-o", str(masks), "--no-progress"]) == 0
    assert sorted(p.name for p in masks.iterdir()) == ["a.png", "b.png"]
    assert main(["restore", str(photos), "-o", str(restored), "--mask", str(masks), *FAST]) == 0
    assert sorted(p.name for p in restored.iterdir()) == ["a.png", "b.jpg"]


def test_detect_refuses_bad_requests_in_one_line(tmp_path, capsys):
    photo = clean_file(tmp_path / "p.png")
    for argv, message in (
        (["-o", str(tmp_path / "m.jpg")], "use .png or .tif"),
        (["-o", str(photo)], "is the photo"),
        (["-o", str(tmp_path / "m.png"), "--detector", str(photo)], "p.png is a PNG image, not a model checkpoint"),
        (["-o", str(tmp_path / "m.png"), "--detector", "nothing-like-this"], "unknown model 'nothing-like-this'"),
    ):
        assert main(["detect", str(photo), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    prior = tmp_path / "prior.pt"
    torch.save(build_tiny(tiny_adm_config()).state_dict(), prior)
    assert main(["detect", str(photo), "-o", str(tmp_path / "m.png"), "--detector", str(prior)]) == 2
    assert "prior.pt is a diffusion model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["detect", str(photo), "-o", str(tmp_path / "m.png"), "--sensitivity", "1.5"])
    assert not (tmp_path / "m.png").exists()


def test_restore_with_mask_auto_fills_the_damage_it_finds(tmp_path):
    photo, damaged = damaged_file(tmp_path / "scan.png", 3, (64, 96), tear=False)
    out, report = tmp_path / "out.png", tmp_path / "report.json"
    assert main(["restore", str(photo), "-o", str(out), "--mask", "auto", "--report", str(report), *FAST]) == 0
    before, after = load_image(photo).rgb, load_image(out).rgb
    changed = np.abs(after - before).max(axis=2) > 2 / 255
    found = detect_damage(before).mask()
    assert found.any() and changed[found].mean() > 0.5  # the detected damage was filled
    assert not changed[~found].any()  # nothing else was touched
    assert json.loads(report.read_text())["output_size"] == [96, 64]


def test_mask_auto_without_damage_says_so(tmp_path, capsys):
    photo = clean_file(tmp_path / "clean.png", size=(64, 64))
    assert main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--mask", "auto", *FAST]) == 2
    assert "no damage was found" in capsys.readouterr().err and not (tmp_path / "o.png").exists()
    assert main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--mask", "auto", "--colorize", *FAST]) == 0
    assert "no damage was found, so nothing is filled" in capsys.readouterr().err


def test_mask_auto_in_folder_mode(tmp_path):
    photos, restored = tmp_path / "scans", tmp_path / "restored"
    photos.mkdir()
    damaged_file(photos / "a.png", 4, (64, 64), tear=False)
    assert main(["restore", str(photos), "-o", str(restored), "--mask", "auto", *FAST]) == 0
    assert (restored / "a.png").is_file()


def test_evaluate_detector_prints_the_quality_table(tmp_path, capsys):
    photos = tmp_path / "clean"
    photos.mkdir()
    for i in range(2):
        clean_file(photos / f"p{i}.png", seed=i, size=(96, 128))
    report = tmp_path / "quality.json"
    assert main(["evaluate", "--detector", "builtin", "--data", str(photos), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "| builtin | 2 |" in out and "precision" in out and "Sensitivity 0.6" in out
    summary = json.loads(report.read_text())["summaries"][0]
    assert summary["images"] == 2 and 0 < summary["recall"] <= 1 and summary["clean_marked_mean"] < 0.01
    assert main(["evaluate", "--data", str(photos)]) == 2
    assert "give --task (restoration) or --detector" in capsys.readouterr().err


def test_a_folder_whose_masks_would_clash_or_replace_a_photo_is_refused(tmp_path, capsys):
    photos = tmp_path / "in"
    photos.mkdir()
    clean_file(photos / "a.png")
    clean_file(photos / "a.jpg")
    assert main(["detect", str(photos), "-o", str(tmp_path / "out")]) == 2
    assert "give each its own name" in capsys.readouterr().err
    assert main(["detect", str(photos), "-o", str(photos)]) == 2
    assert "never overwritten" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_ctrl_c_during_detection_writes_no_mask(tmp_path, capsys, monkeypatch):
    import signal

    import engine.detection as detection

    photo = clean_file(tmp_path / "p.png")
    real = detection.detect

    def interrupted(image, detector="builtin", *, cancel=None, **kwargs):
        signal.raise_signal(signal.SIGINT)  # the user presses Ctrl-C: cancel is set, the tiles stop
        yield from real(image, detector, cancel=cancel, **kwargs)

    monkeypatch.setattr(detection, "detect", interrupted)
    assert main(["detect", str(photo), "-o", str(tmp_path / "m.png"), "--no-progress"]) == 130
    assert "cancelled: no mask was written" in capsys.readouterr().err and not (tmp_path / "m.png").exists()
