"""``restore --cleanup MODEL --fidelity F`` (two stages, engine/cleanup) and ``evaluate --task real``
from the command line: options, refusals, an end-to-end run on an old photo, folder mode."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import engine.cli.restore as cli_restore
from engine.cli import build_parser, main
from engine.models.tiny import build_tiny, tiny_adm_config
from tests.cleanup_helpers import compact, save, smooth_photo
from tests.cli_restore_helpers import FAST as TINY, SHARED_DATA, photo_file

FAST = [*TINY, "--overlap", "32"]

OLD_PHOTOS = SHARED_DATA / "old_photos"


@pytest.fixture
def cleanup_file(tmp_path):
    return save(compact(1), tmp_path / "random_cleanup.pth")


def test_the_options_reach_the_request(cleanup_file):
    args = build_parser().parse_args(["restore", "in.png", "-o", "out.png", "--cleanup", str(cleanup_file),
                                      "--fidelity", "0.3", "--warm-start", "--colorize", "--sr", "2"])
    req = cli_restore.build_request(args, np.zeros((4, 4, 3), np.float32))
    assert (req.cleanup, req.fidelity, req.warm_start, req.tasks.colorize, req.tasks.sr) == (
        str(cleanup_file), 0.3, True, True, 2)
    plain = cli_restore.build_request(build_parser().parse_args(["restore", "in.png", "-o", "o.png", "--colorize"]),
                                      np.zeros((4, 4, 3), np.float32))
    assert plain.cleanup is None and plain.fidelity == 0.5 and not plain.warm_start  # RestoreRequest's defaults


@pytest.mark.parametrize("extra, message", [
    (["--fidelity", "0.5", "--colorize"], "--fidelity belongs to the second stage of a two-stage run: add --cleanup"),
    (["--warm-start", "--fidelity", "1", "--colorize"], "--fidelity and --warm-start belong to the second stage"),
    (["--cleanup", "CLEAN", "--noise", "0.1"], "--cleanup removes noise and blur .* leave out --noise"),
    (["--cleanup", "CLEAN", "--deblur", "gauss:2"], "leave out --deblur"),
    (["--cleanup", "nowhere.pth"], "model file not found: nowhere.pth"),
])
def test_bad_combinations_are_refused_before_anything_runs(tmp_path, capsys, cleanup_file, extra, message):
    photo = photo_file(tmp_path / "in.png")
    extra = [str(cleanup_file) if e == "CLEAN" else e for e in extra]
    assert main(["restore", str(photo), "-o", str(tmp_path / "out.png"), *FAST, *extra]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out.png").exists()


def test_a_diffusion_checkpoint_given_as_the_cleanup_model_is_named(tmp_path, capsys):
    adm = tmp_path / "adm.pt"
    torch.save(build_tiny(tiny_adm_config()).state_dict(), adm)
    photo = photo_file(tmp_path / "in.png")
    assert main(["restore", str(photo), "-o", str(tmp_path / "out.png"), *FAST, "--cleanup", str(adm)]) == 2
    err = capsys.readouterr().err
    assert "adm.pt is a diffusion model" in err and "not a clean-up network" in err


@pytest.mark.slow
def test_an_old_photo_in_two_stages_end_to_end(tmp_path, capsys, cleanup_file):
    photos = sorted(OLD_PHOTOS.glob("*.jpg")) if OLD_PHOTOS.is_dir() else []
    if not photos:
        pytest.skip("../shared/data/old_photos is not here")
    source = min(photos, key=lambda p: p.stat().st_size)
    out, report = tmp_path / "restored.png", tmp_path / "report.json"
    argv = ["restore", str(source), "-o", str(out), "--cleanup", str(cleanup_file), "--fidelity", "0.5",
            "--mask", str(mask_for(source, tmp_path)), "--sr", "2", "--steps", "1", "--tiling", "none",
            "--report", str(report), *FAST]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "stage 1 (clean-up network)" in err and "stage 1: RealESRGAN Compact, ×1 (random_cleanup.pth" in err
    data = json.loads(report.read_text())
    w, h = Image.open(source).size
    assert Image.open(out).size == (2 * w, 2 * h) and data["output_size"] == [2 * w, 2 * h]
    assert data["cleanup"]["model"] == "random_cleanup.pth" and data["cleanup"]["tiles"] >= 1
    assert data["fidelity"] == 0.5 and data["soft_observation"]["k"] == 4 and data["consistency"] is not None
    assert not (tmp_path / "restored.png.restorer-state").exists()  # a finished job leaves no state


def mask_for(photo, folder):
    w, h = Image.open(photo).size
    mask = np.zeros((h, w), np.uint8)
    mask[h // 3 : h // 3 + 8, w // 4 : w // 2] = 255  # a scratch
    path = folder / "mask.png"
    Image.fromarray(mask).save(path)
    return path


def test_a_folder_in_two_stages(tmp_path, cleanup_file):
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((smooth_photo(20, 28, seed=i) * 255).astype(np.uint8)).save(folder / f"scan{i}.png")
    out = tmp_path / "restored"
    argv = ["restore", str(folder), "-o", str(out), "--cleanup", str(cleanup_file), "--fidelity", "1", *FAST]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["scan0.png", "scan1.png"]


def test_evaluate_real_reports_degraded_stage_1_and_both_stages(tmp_path, capsys, cleanup_file):
    data = tmp_path / "clean"
    data.mkdir()
    Image.fromarray((smooth_photo(48, 48) * 255).astype(np.uint8)).save(data / "a.png")
    report = tmp_path / "real.json"
    argv = ["evaluate", "--data", str(data), "--task", "real", "--cleanup", str(cleanup_file), "--model", "oracle",
            "--size", "32", "--steps", "3", "--fidelity", "0.5", "1", "--real-scale", "2", "--device", "cpu",
            "--report", str(report)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    for row in ("degraded (bicubic)", "stage 1 alone", "F=0.50", "F=1.00"):
        assert row in table
    doc = json.loads(report.read_text())
    rows = {r["variant"]: r for r in doc["results"]}
    assert rows["degraded (bicubic)"]["degradation"]["scale"] == 2
    assert 40 <= rows["F=1.00"]["degradation"]["jpeg_quality"] <= 80
    assert rows["F=1.00"]["consistency"] < 1e-3  # fidelity 1: exactly the ×2 soft observation
    assert main(["evaluate", "--data", str(data), "--task", "real", "--size", "32"]) == 2  # needs --cleanup


def test_the_realistic_degradation_is_reproducible():
    from engine.evaluation.real import degrade_real

    clean = smooth_photo(32, 32)
    a, params = degrade_real(clean, 2, seed=5)
    b, _ = degrade_real(clean, 2, seed=5)
    c, other = degrade_real(clean, 2, seed=6)
    assert np.array_equal(a, b) and a.shape == (16, 16, 3) and params != other and not np.array_equal(a, c)
    assert 0.5 <= params["blur_sigma"] <= 1.5 and 2 / 255 <= params["noise_sigma"] <= 8 / 255


def test_resume_keeps_and_reuses_a_finished_stage_1(tmp_path, capsys, cleanup_file):
    """An interrupted two-stage job: without --resume the CLI refuses to start over its saved work;
    with --resume stage 1 is not run again."""
    import threading

    from engine.errors import Cancelled
    from engine.events import WindowFinished
    from engine.pipeline import restore

    photo = tmp_path / "scan.png"
    Image.fromarray((smooth_photo(96, 128) * 255).astype(np.uint8)).save(photo)  # several stage-2 windows
    out = tmp_path / "out.png"
    argv = ["restore", str(photo), "-o", str(out), "--cleanup", str(cleanup_file), "--steps", "1", *FAST]
    args = build_parser().parse_args(argv)
    request = cli_restore.build_request(args, str(photo), resume_dir=str(cli_restore.state_dir_for(out)))
    cancel = threading.Event()
    with pytest.raises(Cancelled):  # the job stops in stage 2, after stage 1 finished
        for event in restore(request, cancel):
            if isinstance(event, WindowFinished) and event.stage == "restore":
                cancel.set()
    assert main(argv) == 2 and "add --resume to continue it" in capsys.readouterr().err
    report = tmp_path / "r.json"
    assert main([*argv, "--resume", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["cleanup"]["tiles_computed"] == 0 and data["cleanup"]["tiles_resumed"] == data["cleanup"]["tiles"]
    assert "stage 1 was finished by an earlier run" in capsys.readouterr().err
