"""``python -m engine restore``: argument handling with a fake pipeline, folder mode, Ctrl-C, and
end-to-end runs with the real pipeline and the test-tiny model (once they exist)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

import engine.cli_restore as cli_restore
from engine.cli import build_parser, main
from engine.errors import Cancelled
from engine.events import FinishedEvent, LogEvent, ProgressEvent, StageEvent
from engine.request import RestoreRequest

SHARED_DATA = Path(os.environ.get("RESTORER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _photo(path: Path, size=(24, 32), icc: bool = False, mode: str = "RGB") -> Path:
    rgb = (np.random.default_rng(0).random((size[0], size[1], 3)) * 255).astype(np.uint8)
    options = {"icc_profile": ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()} if icc else {}
    Image.fromarray(rgb).convert(mode).save(path, **options)
    return path


class FakePipeline:
    """Stands in for engine.pipeline.restore: records requests, yields a few events, ×sr result."""

    def __init__(self, interrupt: bool = False, sigint: bool = False, checkpoint: bool = False):
        self.requests: list[RestoreRequest] = []
        self.checkpoint = checkpoint  # save resume state with finished windows, as the pipeline does
        self.sigint = sigint
        self.interrupt = interrupt
        self.cancel_seen = None
        self.state_seen: list[bool] = []  # whether the resume state existed when each run started

    def __call__(self, request, cancel=None):
        self.requests.append(request)
        self.state_seen.append(bool(request.resume_dir) and Path(request.resume_dir).exists())
        self.cancel_seen = cancel
        image = request.image
        yield StageEvent("restoring")
        yield LogEvent("warning", "fake model with random weights")
        for done in range(1, 4):
            if self.checkpoint and done == 2:  # the first window is finished
                _saved_state(Path(request.resume_dir[: -len(cli_restore.STATE_SUFFIX)]), finished=(0,))
            if self.interrupt and done == 2:
                raise KeyboardInterrupt
            if self.sigint and done == 2:
                signal.raise_signal(signal.SIGINT)  # the user presses Ctrl-C during the run
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled by the user")
            yield ProgressEvent(done, 3, elapsed=0.01 * done)
        s = request.tasks.sr
        result = np.repeat(np.repeat(image, s, 0), s, 1) * 0.5
        h, w = image.shape[:2]  # the report gives sizes as [width, height], as the real pipeline does
        yield FinishedEvent(result, {"input_size": [w, h], "output_size": [w * s, h * s], "denoiser_calls": 3})


@pytest.fixture
def fake(monkeypatch):
    pipeline = FakePipeline()
    monkeypatch.setattr(cli_restore, "_load_restore", lambda: pipeline)
    return pipeline


def _parse(*argv: str):
    return build_parser().parse_args(["restore", "in.png", "-o", "out.png", *argv])


# ---------------------------------------------------------------------------- parsing
def test_every_flag_reaches_the_request():
    args = _parse("--mask", "m.png", "--colorize", "--sr", "4", "--sr-kernel", "bicubic",
                  "--deblur", "gauss:1.5", "--noise", "0.05", "--model", "test-tiny", "--class", "207",
                  "--guidance", "2.5", "--steps", "7", "--travel", "10,3", "--eta", "0.5", "--seed", "9",
                  "--device", "cpu", "--precision", "bf16", "--tiling", "msr", "--no-hir", "--window", "64",
                  "--overlap", "32", "--batch", "3", "--sampler", "ddpm", "--quirk", "clip_x0",
                  "--quirk", "lambda_precedence", "--compile")
    req = cli_restore.build_request(args, np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), "st")
    t = req.tasks
    assert (t.inpaint, t.colorize, t.sr, t.sr_kernel, t.deblur, t.noise) == (True, True, 4, "bicubic",
                                                                             "gauss:1.5", 0.05)
    assert (req.model, req.class_label, req.guidance_scale, req.steps) == ("test-tiny", 207, 2.5, 7)
    assert (req.travel_length, req.travel_repeat, req.eta, req.seed) == (10, 3, 0.5, 9)
    assert (req.device, req.precision, req.tiling, req.hir, req.compile) == ("cpu", "bf16", "msr", False, True)
    assert (req.window, req.overlap, req.batch, req.sampler, req.resume_dir) == (64, 32, 3, "ddpm", "st")
    assert req.quirks.clip_x0 and req.quirks.lambda_precedence and not req.quirks.simplified_noise


def test_unset_flags_keep_request_defaults():
    req = cli_restore.build_request(_parse("--colorize"), np.zeros((4, 4, 3), np.float32))
    default = RestoreRequest(image="x")
    for name in ("model", "steps", "eta", "seed", "device", "window", "overlap", "batch", "hir", "sampler",
                 "precision", "compile"):
        assert getattr(req, name) == getattr(default, name)
    assert req.tasks.sr == 1 and not req.tasks.inpaint
    assert _parse("--colorize", "--batch", "auto", "--hir").batch == "auto"


@pytest.mark.parametrize("text, expected", [("gauss:2", "gauss:2"), ("uniform:9", "uniform:9"),
                                            ("kernel:k.png", "kernel:k.png"), ("GAUSS:0.5", "gauss:0.5")])
def test_deblur_parsing(text, expected):
    assert _parse("--deblur", text).deblur == expected


@pytest.mark.parametrize("argv, words", [
    (["--travel", "x"], "L,R"), (["--travel", "0,2"], "≥ 1"), (["--deblur", "gauss:-1"], "gauss:SIGMA"),
    (["--deblur", "box:3"], "gauss:SIGMA"), (["--sr", "0"], "≥ 1"), (["--quirk", "nope"], "invalid choice"),
    (["--batch", "many"], "whole number"), (["--precision", "fp8"], "invalid choice"),
    (["--noise", "5"], "between 0 and 1"), (["--noise", "inf"], "finite"), (["--noise", "nan"], "finite"),
    (["--eta", "2"], "between 0 and 1"), (["--guidance", "inf"], "finite"), (["--quality", "200"], "≤ 100"),
    (["--quality", "0"], "≥ 1"),
])
def test_bad_arguments_exit_2_with_message(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_info:
        main(["restore", "in.png", "-o", "out.png", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error" in err and words in err


# ---------------------------------------------------------------------- user errors -> 2
def test_missing_input_exits_2(tmp_path, capsys, fake):
    assert main(["restore", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o.png"), "--colorize"]) == 2
    assert "not found" in capsys.readouterr().err and not fake.requests


def test_wrong_size_mask_exits_2(tmp_path, capsys, fake):
    photo = _photo(tmp_path / "p.png", (24, 32))
    Image.new("L", (10, 10), 255).save(tmp_path / "m.png")
    assert main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--mask", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err
    assert "10×10" in err and "32×24" in err and not fake.requests


def test_text_file_as_model_exits_2(tmp_path, capsys, fake):
    photo = _photo(tmp_path / "p.png")
    (tmp_path / "model.pt").write_text("this is not a checkpoint\n")
    code = main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--colorize", "--model",
                 str(tmp_path / "model.pt")])
    assert code == 2
    assert "not a model checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["folder", "folder/"])
def test_a_folder_as_model_is_named_a_folder(tmp_path, capsys, monkeypatch, fake, model):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    photo = _photo(tmp_path / "p.png")
    assert main(["restore", str(photo), "-o", "o.png", "--colorize", "--model", model]) == 2
    assert "is a folder, not a model file" in capsys.readouterr().err and not fake.requests


@pytest.mark.parametrize("argv, words", [([], "nothing to do"), (["--inpaint"], "needs --mask"),
                                         (["--colorize", "-o", "out.gif"], "cannot write")])
def test_task_errors_exit_2(tmp_path, capsys, fake, argv, words):
    photo = _photo(tmp_path / "p.png")
    full = ["restore", str(photo), "-o", str(tmp_path / "o.png"), *argv]
    assert main(full) == 2
    assert words in capsys.readouterr().err and not fake.requests


@pytest.mark.parametrize("argv, words", [
    (["--window", "64"], "the overlap 128 (the default) must be smaller than the window 64: add --overlap"),
    (["--window", "64", "--overlap", "64"], "the overlap 64 must be smaller than the window 64"),
    (["--overlap", "300"], "the overlap 300 must be smaller than the window 256"),
])
def test_overlap_not_below_the_window_is_refused_with_a_hint(tmp_path, capsys, fake, argv, words):
    photo = _photo(tmp_path / "p.png")
    assert main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--colorize", *argv]) == 2
    assert words in capsys.readouterr().err and not fake.requests


def test_unreadable_image_exits_2(tmp_path, capsys, fake):
    (tmp_path / "p.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    assert main(["restore", str(tmp_path / "p.jpg"), "-o", str(tmp_path / "o.png"), "--colorize"]) == 2
    assert "error:" in capsys.readouterr().err


# ------------------------------------------------------------------------- single runs
def test_single_run_saves_result_report_and_metadata(tmp_path, capsys, fake):
    photo = _photo(tmp_path / "p.jpg", (24, 32), icc=True)
    out, report = tmp_path / "sub" / "o.jpg", tmp_path / "r.json"
    assert main(["restore", str(photo), "-o", str(out), "--sr", "2", "--model", "test-tiny",
                 "--report", str(report)]) == 0
    with Image.open(out) as im:
        assert im.size == (64, 48) and im.info.get("icc_profile") == Image.open(photo).info["icc_profile"]
    data = json.loads(report.read_text())
    assert data["output"] == str(out) and data["input"] == str(photo)
    assert data["output_size"] == [64, 48] and data["denoiser_calls"] == 3 and data["peak_rss_mb"] > 0
    err = capsys.readouterr().err
    assert "!!! WARNING: fake model with random weights !!!" in err
    assert fake.requests[0].resume_dir == str(out) + cli_restore.STATE_SUFFIX
    assert not Path(str(out) + cli_restore.STATE_SUFFIX).exists()


def test_mask_implies_inpaint_and_reaches_pipeline_as_array(tmp_path, fake):
    photo = _photo(tmp_path / "p.png", (16, 20))
    mask = np.zeros((16, 20), np.uint8)
    mask[4:8, 5:9] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--mask", str(tmp_path / "m.png"),
                 "--no-progress"]) == 0
    req = fake.requests[0]
    assert req.tasks.inpaint and req.mask.shape == (16, 20) and int((req.mask > 0).sum()) == 16


def test_ctrl_c_cancels_and_exits_130(tmp_path, capsys, monkeypatch):
    pipeline = FakePipeline(interrupt=True, checkpoint=True)
    monkeypatch.setattr(cli_restore, "_load_restore", lambda: pipeline)
    photo = _photo(tmp_path / "p.png")
    out = tmp_path / "o.png"
    assert main(["restore", str(photo), "-o", str(out), "--colorize"]) == 130
    assert pipeline.cancel_seen is not None and pipeline.cancel_seen.is_set()
    err = capsys.readouterr().err
    assert not out.exists() and "1 finished window" in err and "--resume" in err


def test_ctrl_c_before_any_window_finished_does_not_promise_kept_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli_restore, "_load_restore", lambda: FakePipeline(interrupt=True))
    assert main(["restore", str(_photo(tmp_path / "p.png")), "-o", str(tmp_path / "o.png"), "--colorize"]) == 130
    err = capsys.readouterr().err
    assert "before any window was finished" in err and "--resume" not in err


def test_ctrl_c_signal_sets_cancel_token_and_exits_130(tmp_path, capsys, monkeypatch):
    pipeline = FakePipeline(sigint=True, checkpoint=True)
    monkeypatch.setattr(cli_restore, "_load_restore", lambda: pipeline)
    photo = _photo(tmp_path / "p.png")
    handler_before = signal.getsignal(signal.SIGINT)
    assert main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--colorize"]) == 130
    assert pipeline.cancel_seen.is_set() and not (tmp_path / "o.png").exists()
    assert signal.getsignal(signal.SIGINT) is handler_before
    err = capsys.readouterr().err
    assert "cancelling" in err and "--resume" in err


# ---------------------------------------------------------------------------- folders
def test_folder_mode_continues_past_failures(tmp_path, capsys, monkeypatch):
    src, masks, dst = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    src.mkdir(), masks.mkdir()
    for name in ("a.png", "b.jpg", "c.png"):
        _photo(src / name, (16, 16))
        Image.new("L", (16, 16), 255).save(masks / (Path(name).stem + ".png"))
    Image.new("L", (8, 8), 255).save(masks / "c.png")  # wrong size for c
    (src / "notes.txt").write_text("ignored")
    pipeline = FakePipeline()
    monkeypatch.setattr(cli_restore, "_load_restore", lambda: pipeline)
    code = main(["restore", str(src), "-o", str(dst), "--mask", str(masks), "--report", str(tmp_path / "r.json")])
    assert code == 1
    assert sorted(p.name for p in dst.iterdir()) == ["a.png", "b.jpg"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert [Path(f["output"]).name for f in report["files"]] == ["a.png", "b.jpg"]
    assert len(report["failed"]) == 1 and "c.png" in report["failed"][0]["input"]
    assert "c.png" in capsys.readouterr().err and len(pipeline.requests) == 2


def test_folder_mode_all_good_and_same_folder_refused(tmp_path, fake):
    src = tmp_path / "in"
    src.mkdir()
    _photo(src / "a.png"), _photo(src / "b.png")
    assert main(["restore", str(src), "-o", str(tmp_path / "out"), "--colorize"]) == 0
    assert len(list((tmp_path / "out").iterdir())) == 2
    assert main(["restore", str(src), "-o", str(src), "--colorize"]) == 2


# -------------------------------------------------------------------- end to end (real)
def _real_pipeline_ready() -> bool:
    return importlib.util.find_spec("engine.pipeline") is not None


needs_pipeline = pytest.mark.skipif(not _real_pipeline_ready(), reason="engine.pipeline not written yet")
FAST = ["--model", "test-tiny", "--window", "64", "--device", "cpu", "--no-progress"]


def _check_report(path: Path, out: Path, in_size, out_size) -> dict:
    """Sizes are [width, height]."""
    data = json.loads(path.read_text())
    for key in ("input_size", "output_size", "consistency", "denoiser_calls", "seconds", "device",
                "peak_rss_mb", "windows", "batches", "levels", "output"):
        assert key in data, key
    assert data["output"] == str(out)
    assert list(data["input_size"]) == list(in_size) and list(data["output_size"]) == list(out_size)
    assert data["denoiser_calls"] > 0
    return data


@needs_pipeline
@pytest.mark.slow
def test_end_to_end_generated_image_sr2(tmp_path, capsys):
    photo = _photo(tmp_path / "p.png", (32, 48), icc=True)
    out, report = tmp_path / "o.png", tmp_path / "r.json"
    argv = ["restore", str(photo), "-o", str(out), "--sr", "2", "--report", str(report), "--steps", "1"]
    assert main([*argv, "--overlap", "32", "--no-hir", *FAST]) == 0
    with Image.open(out) as im, Image.open(photo) as src:
        assert im.size == (96, 64) and im.info.get("icc_profile") == src.info["icc_profile"]
    data = _check_report(report, out, (48, 32), (96, 64))
    assert data["windows"] >= 2 and data["is_random_model"] is True
    err = capsys.readouterr().err
    assert "WARNING" in err and "random weights: its output is NOT a restoration" in err and err.count("random weights") == 1


@needs_pipeline
@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "old_photos" / "abe.jpg").exists(), reason="shared test photos absent")
def test_end_to_end_real_photo_colorize_keeps_icc(tmp_path):
    photo = SHARED_DATA / "old_photos" / "abe.jpg"  # 220×276 grayscale JPEG with an RGB ICC profile
    out, report = tmp_path / "abe.jpg", tmp_path / "r.json"
    argv = ["restore", str(photo), "-o", str(out), "--colorize", "--report", str(report)]
    assert main([*argv, "--steps", "1", "--overlap", "0", "--no-hir", *FAST]) == 0
    with Image.open(photo) as src, Image.open(out) as im:
        assert im.size == src.size and im.mode == "RGB"
        assert im.info.get("icc_profile") == src.info["icc_profile"]
    _check_report(report, out, (220, 276), (220, 276))


# ------------------------------------------------------------------- saved progress
def _saved_state(target: Path, finished=(0, 1, 2)) -> Path:
    """An interrupted run's state beside ``target`` with ``finished`` windows done."""
    state = Path(str(target) + cli_restore.STATE_SUFFIX)
    state.mkdir(parents=True, exist_ok=True)
    stages = {"restore": {"finished": list(finished), "shape": [64, 64]}}
    (state / "state.json").write_text(json.dumps({"version": 1, "fingerprint": "f", "stages": stages}))
    return state


def test_saved_progress_is_never_discarded_without_resume_or_restart(tmp_path, capsys, fake):
    photo, out = _photo(tmp_path / "p.png"), tmp_path / "o.png"
    state = _saved_state(out)
    assert main(["restore", str(photo), "-o", str(out), "--colorize"]) == 2
    err = capsys.readouterr().err
    assert "3 finished window" in err and "--resume" in err and "--restart" in err
    assert (state / "state.json").is_file() and not fake.requests


def test_resume_keeps_and_restart_discards_saved_progress(tmp_path, fake):
    photo, out = _photo(tmp_path / "p.png"), tmp_path / "o.png"
    state = _saved_state(out)
    assert main(["restore", str(photo), "-o", str(out), "--colorize", "--resume"]) == 0
    _saved_state(out)
    assert main(["restore", str(photo), "-o", str(out), "--colorize", "--restart"]) == 0
    assert fake.state_seen == [True, False] and not state.exists()


def test_state_without_finished_windows_is_replaced_quietly(tmp_path, fake):
    photo, out = _photo(tmp_path / "p.png"), tmp_path / "o.png"
    _saved_state(out, finished=())
    assert main(["restore", str(photo), "-o", str(out), "--colorize"]) == 0 and out.is_file()


def test_folder_mode_checks_saved_progress_before_any_photo(tmp_path, capsys, fake):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    _photo(src / "a.png"), _photo(src / "b.png")
    _saved_state(dst / "b.png", finished=(4,))
    assert main(["restore", str(src), "-o", str(dst), "--colorize"]) == 2
    assert "1 finished window" in capsys.readouterr().err and not fake.requests


def test_resume_and_restart_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["restore", "in.png", "-o", "out.png", "--colorize", "--resume", "--restart"])
    assert exit_info.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_folder_resume_skips_finished_photos_and_continues_interrupted_ones(tmp_path, capsys, fake):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        _photo(src / name)
    dst.mkdir()
    _photo(dst / "a.png")  # finished by the earlier run
    _photo(dst / "b.png")  # an older result, but a later run of b was interrupted
    _saved_state(dst / "b.png")
    report = tmp_path / "r.json"
    assert main(["restore", str(src), "-o", str(dst), "--colorize", "--resume", "--report", str(report)]) == 0
    assert [Path(r.resume_dir).name for r in fake.requests] == ["b.png.restorer-state", "c.png.restorer-state"]
    err = capsys.readouterr().err
    assert "a.png: already restored" in err and "skipped" in err and "2 restored, 1 skipped" in err
    assert json.loads(report.read_text())["skipped"] == [str(src / "a.png")]


# ---------------------------------------------------------------- originals are kept
@pytest.mark.parametrize("victim", ["photo", "mask", "photo via symlink", "photo via report"])
def test_outputs_never_overwrite_the_photo_or_mask(tmp_path, capsys, monkeypatch, fake, victim):
    photo = _photo(tmp_path / "p.png", (16, 20))
    Image.new("L", (20, 16), 255).save(tmp_path / "m.png")
    (tmp_path / "link.png").symlink_to(photo)
    out, report = {"photo": ("./p.png", None), "mask": ("m.png", None), "photo via symlink": ("link.png", None),
                   "photo via report": ("o.png", "p.png")}[victim]
    before = {p.name: p.read_bytes() for p in (photo, tmp_path / "m.png")}
    argv = ["restore", "p.png", "-o", out, "--mask", "m.png"] + (["--report", report] if report else [])
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "never overwritten" in capsys.readouterr().err and not fake.requests
    assert before == {p.name: p.read_bytes() for p in (photo, tmp_path / "m.png")}


def test_folder_output_must_differ_from_the_mask_folder(tmp_path, capsys, fake):
    src, masks = tmp_path / "in", tmp_path / "masks"
    src.mkdir(), masks.mkdir()
    _photo(src / "a.png", (16, 16))
    Image.new("L", (16, 16), 255).save(masks / "a.png")
    assert main(["restore", str(src), "-o", str(masks), "--mask", str(masks)]) == 2
    assert "mask folder" in capsys.readouterr().err and not fake.requests


# ------------------------------------------------------------------- destinations
@pytest.mark.parametrize("output, report, words", [
    ("blocker.png/o.png", None, "blocker.png is a file, not a folder"),
    ("blocker.png/sub/o.png", None, "blocker.png is a file, not a folder"),
    ("folder.png", None, "is a folder"),
    ("o.png", "blocker.png/r.json", "cannot write the report"),
    ("o.png", "folder.png", "is a folder"),
    ("/proc/o.png", None, "not writable"),
])
def test_unwritable_destinations_are_refused_before_the_model_loads(tmp_path, capsys, monkeypatch, fake,
                                                                     output, report, words):
    if output.startswith("/proc") and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    monkeypatch.chdir(tmp_path)
    photo = _photo(tmp_path / "p.png")
    _photo(tmp_path / "blocker.png")
    (tmp_path / "folder.png").mkdir()
    argv = ["restore", str(photo), "-o", output, "--colorize"] + (["--report", report] if report else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and not fake.requests


@pytest.mark.parametrize("output, report, words", [
    ("blocker.png", None, "is a file, not a folder"),
    ("blocker.png/out", None, "is a file, not a folder"),
    ("out", "blocker.png/r.json", "cannot write the report"),
])
def test_unwritable_folder_destinations_are_refused_before_any_photo(tmp_path, capsys, monkeypatch, fake,
                                                                      output, report, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    _photo(tmp_path / "in" / "a.png")
    _photo(tmp_path / "blocker.png")
    argv = ["restore", "in", "-o", output, "--colorize"] + (["--report", report] if report else [])
    assert main(argv) == 2
    assert words in capsys.readouterr().err and not fake.requests


def test_a_failed_save_keeps_the_finished_work_for_resume(tmp_path, capsys, monkeypatch):
    pipeline = FakePipeline(checkpoint=True)
    monkeypatch.setattr(cli_restore, "_load_restore", lambda: pipeline)
    photo, out = _photo(tmp_path / "p.png"), tmp_path / "o.png"

    def disk_full(path, *args, **kwargs):
        raise cli_restore.InputError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(cli_restore, "save_image", disk_full)
    assert main(["restore", str(photo), "-o", str(out), "--colorize"]) == 2
    err = capsys.readouterr().err
    assert "No space left" in err and "kept in" in err and "--resume" in err
    assert cli_restore.state_dir_for(out).is_dir()
    monkeypatch.undo()
    monkeypatch.setattr(cli_restore, "_load_restore", lambda: pipeline)
    assert main(["restore", str(photo), "-o", str(out), "--colorize", "--resume"]) == 0
    assert out.is_file() and not cli_restore.state_dir_for(out).exists()


def test_a_failed_report_keeps_the_finished_work_for_resume(tmp_path, capsys, monkeypatch):
    pipeline = FakePipeline(checkpoint=True)
    monkeypatch.setattr(cli_restore, "_load_restore", lambda: pipeline)
    photo, out, report = _photo(tmp_path / "p.png"), tmp_path / "o.png", tmp_path / "r.json"

    def read_only(path, report):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cli_restore, "write_report", read_only)
    assert main(["restore", str(photo), "-o", str(out), "--colorize", "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {report}: Permission denied" in err and "--resume" in err and "Traceback" not in err
    assert cli_restore.state_dir_for(out).is_dir()


@needs_pipeline
@pytest.mark.slow
def test_end_to_end_resume_writes_a_result_whose_save_failed_without_redoing_it(tmp_path, monkeypatch):
    photo, out, report = _photo(tmp_path / "p.png", (32, 48)), tmp_path / "o.png", tmp_path / "r.json"
    argv = ["restore", str(photo), "-o", str(out), "--sr", "2", "--steps", "1", "--overlap", "32", "--no-hir",
            "--report", str(report), *FAST]

    def disk_full(path, *args, **kwargs):
        raise cli_restore.InputError(f"cannot write {path}: No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(cli_restore, "save_image", disk_full)
        assert main(argv) == 2
    assert main([*argv, "--resume"]) == 0
    assert out.is_file() and json.loads(report.read_text())["denoiser_calls"] == 0


def test_folder_mode_writes_unsaveable_formats_as_png(tmp_path, capsys, fake):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    _photo(src / "a.bmp"), _photo(src / "b.BMP"), _photo(src / "c.png")
    assert main(["restore", str(src), "-o", str(dst), "--colorize"]) == 0
    assert sorted(p.name for p in dst.iterdir()) == ["a.png", "b.png", "c.png"]
    assert capsys.readouterr().err.count("written as PNG") == 1


def test_folder_mode_refuses_two_photos_with_one_output(tmp_path, capsys, fake):
    src = tmp_path / "in"
    src.mkdir()
    _photo(src / "a.bmp"), _photo(src / "a.png")
    assert main(["restore", str(src), "-o", str(tmp_path / "out"), "--colorize"]) == 2
    assert "a.bmp and a.png would both be written" in capsys.readouterr().err and not fake.requests


def test_ctrl_c_while_the_subcommands_load_exits_130_quietly(monkeypatch, capsys):
    import engine.cli

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.cli.importlib, "import_module", interrupted)
    assert main(["restore", "in.png", "-o", "out.png", "--colorize"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_ctrl_c_while_python_imports_the_cli_exits_130_quietly(monkeypatch, capsys):
    import runpy
    import sys

    class Interrupting:  # the user presses Ctrl-C while `python -m engine` imports engine.cli
        def find_spec(self, name, path=None, target=None):
            if name == "engine.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "engine.cli")
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("engine.__main__", run_name="__main__")
    assert exit_info.value.code == 130 and capsys.readouterr().err == "interrupted\n"


def test_a_cancelled_folder_run_reports_the_photos_finished_before_it(tmp_path, capsys, monkeypatch):
    src, dst, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.json"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        _photo(src / name)
    done, interrupting = FakePipeline(), FakePipeline(interrupt=True)
    runs = iter([done, interrupting])
    monkeypatch.setattr(cli_restore, "_load_restore", lambda: next(runs))
    assert main(["restore", str(src), "-o", str(dst), "--colorize", "--report", str(report)]) == 130
    data = json.loads(report.read_text())
    assert [Path(f["output"]).name for f in data["files"]] == ["a.png"]
    assert data["cancelled"] == str(src / "b.png") and "cancelled" in capsys.readouterr().err
