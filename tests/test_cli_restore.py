"""``python -m engine restore``: argument handling with a fake pipeline, folder mode, Ctrl-C, and
end-to-end runs with the real pipeline and the test-tiny model. Never losing work (saved progress,
originals, destinations) is in test_cli_restore_resume.py."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import engine.cli.console as cli_console
import engine.cli.restore as cli_restore
from engine.cli import build_parser, main
from engine.image_io import load_mask
from engine.request import RestoreRequest
from tests.cli_restore_helpers import FAST, SHARED_DATA, FakePipeline, check_report, photo_file

def _parse(*argv: str):
    return build_parser().parse_args(["restore", "in.png", "-o", "out.png", *argv])


# ---------------------------------------------------------------------------- parsing
def test_every_flag_reaches_the_request():
    args = _parse("--mask", "m.png", "--colorize", "--sr", "4", "--sr-kernel", "bicubic",
                  "--deblur", "gauss:1.5", "--noise", "0.05", "--model", "test-tiny", "--class", "207",
                  "--guidance", "2.5", "--classifier", "my-classifier", "--steps", "7", "--travel", "10,3", "--eta", "0.5", "--seed", "9",
                  "--device", "cpu", "--precision", "bf16", "--tiling", "msr", "--no-hir", "--window", "64",
                  "--overlap", "32", "--batch", "3", "--sampler", "ddpm", "--quirk", "clip_x0",
                  "--quirk", "lambda_precedence", "--compile")
    req = cli_restore.build_request(args, np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), "st")
    t = req.tasks
    assert (t.inpaint, t.colorize, t.sr, t.sr_kernel, t.deblur, t.noise) == (True, True, 4, "bicubic",
                                                                             "gauss:1.5", 0.05)
    assert (req.model, req.class_label, req.guidance_scale, req.steps) == ("test-tiny", 207, 2.5, 7)
    assert req.classifier == "my-classifier"
    assert (req.travel_length, req.travel_repeat, req.eta, req.seed) == (10, 3, 0.5, 9)
    assert (req.device, req.precision, req.tiling, req.hir, req.compile) == ("cpu", "bf16", "msr", False, True)
    assert (req.window, req.overlap, req.batch, req.sampler, req.resume_dir) == (64, 32, 3, "ddpm", "st")
    assert req.quirks.clip_x0 and req.quirks.lambda_precedence and not req.quirks.simplified_noise


def test_unset_flags_keep_request_defaults():
    req = cli_restore.build_request(_parse("--colorize"), np.zeros((4, 4, 3), np.float32))
    default = RestoreRequest(image="x")
    for name in ("model", "classifier", "steps", "eta", "seed", "device", "window", "overlap", "batch", "hir", "sampler",
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
    photo = photo_file(tmp_path / "p.png", (24, 32))
    Image.new("L", (10, 10), 255).save(tmp_path / "m.png")
    assert main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--mask", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err
    assert "10×10" in err and "32×24" in err and not fake.requests


def test_text_file_as_model_exits_2(tmp_path, capsys, fake):
    photo = photo_file(tmp_path / "p.png")
    (tmp_path / "model.pt").write_text("this is not a checkpoint\n")
    code = main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--colorize", "--model",
                 str(tmp_path / "model.pt")])
    assert code == 2
    assert "not a model checkpoint" in capsys.readouterr().err


def test_unusable_classifier_is_refused_before_the_photo_is_read(tmp_path, capsys, fake):
    photo = photo_file(tmp_path / "p.png")
    (tmp_path / "classifier.pt").write_text("not a checkpoint\n")
    code = main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--colorize", "--guidance", "1",
                 "--classifier", str(tmp_path / "classifier.pt")])
    assert code == 2 and "classifier.pt is a text file" in capsys.readouterr().err and not fake.requests


@pytest.mark.parametrize("model", ["folder", "folder/"])
def test_a_folder_as_model_is_named_a_folder(tmp_path, capsys, monkeypatch, fake, model):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    photo = photo_file(tmp_path / "p.png")
    assert main(["restore", str(photo), "-o", "o.png", "--colorize", "--model", model]) == 2
    assert "is a folder, not a model file" in capsys.readouterr().err and not fake.requests


@pytest.mark.parametrize("model, words", [("nope", "unknown model 'nope' (known models: adm-256-uncond"),
                                          ("adm-256-uncond", "model 'adm-256-uncond' is not installed")])
def test_a_model_that_cannot_load_is_refused_before_the_photo_is_read(tmp_path, capsys, monkeypatch, fake, model,
                                                                      words):
    monkeypatch.setenv("RESTORER_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(cli_restore, "load_image", lambda *a, **k: pytest.fail("read the photo before the model"))
    photo = photo_file(tmp_path / "p.png")
    assert main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--colorize", "--model", model]) == 2
    assert words in capsys.readouterr().err and not fake.requests


def test_a_class_for_an_unconditional_model_is_named_as_the_user_gave_it(tmp_path, capsys):
    photo = photo_file(tmp_path / "p.png")
    code = main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--colorize", "--class", "3", *FAST,
                 "--overlap", "32"])
    err = capsys.readouterr().err
    assert code == 2 and "a class was given, but model test-tiny is unconditional" in err
    assert "class_label" not in err


@pytest.mark.parametrize("argv, words", [([], "nothing to do"), (["--inpaint"], "needs --mask"),
                                         (["--colorize", "-o", "out.gif"], "cannot write")])
def test_task_errors_exit_2(tmp_path, capsys, fake, argv, words):
    photo = photo_file(tmp_path / "p.png")
    full = ["restore", str(photo), "-o", str(tmp_path / "o.png"), *argv]
    assert main(full) == 2
    assert words in capsys.readouterr().err and not fake.requests


@pytest.mark.parametrize("argv, words", [
    (["--window", "64"], "the overlap 128 (the default) must be smaller than the window 64: add --overlap"),
    (["--window", "64", "--overlap", "64"], "the overlap 64 must be smaller than the window 64"),
    (["--overlap", "300"], "the overlap 300 must be smaller than the window 256"),
])
def test_overlap_not_below_the_window_is_refused_with_a_hint(tmp_path, capsys, fake, argv, words):
    photo = photo_file(tmp_path / "p.png")
    assert main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--colorize", *argv]) == 2
    assert words in capsys.readouterr().err and not fake.requests


def test_unreadable_image_exits_2(tmp_path, capsys, fake):
    (tmp_path / "p.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    assert main(["restore", str(tmp_path / "p.jpg"), "-o", str(tmp_path / "o.png"), "--colorize"]) == 2
    assert "error:" in capsys.readouterr().err


# ------------------------------------------------------------------------- single runs
def test_single_run_saves_result_report_and_metadata(tmp_path, capsys, fake):
    photo = photo_file(tmp_path / "p.jpg", (24, 32), icc=True)
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


def test_mask_implies_inpaint_and_the_pipeline_reads_photo_and_mask_itself(tmp_path, fake):
    photo = photo_file(tmp_path / "p.png", (16, 20))
    mask = np.zeros((16, 20), np.uint8)
    mask[4:8, 5:9] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--mask", str(tmp_path / "m.png"),
                 "--no-progress"]) == 0
    req = fake.requests[0]  # paths, so the run holds one copy of the pixels (the pipeline's)
    assert req.tasks.inpaint and req.image == str(photo) and req.mask == str(tmp_path / "m.png")
    assert int(load_mask(req.mask, (16, 20)).sum()) == 16


def test_a_run_that_cannot_fit_in_memory_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch, fake):
    import engine.host_memory as host_memory
    from engine.request import Tasks

    photo = photo_file(tmp_path / "p.png", (24, 32))
    pixels = 24 * 32
    enough_to_decode = pixels * (host_memory.DECODE_BYTES_PER_PIXEL + 1)
    assert enough_to_decode < pixels * host_memory.restore_bytes_per_input_pixel(Tasks(colorize=True))
    monkeypatch.setattr(host_memory, "available_bytes", lambda: enough_to_decode)
    assert main(["restore", str(photo), "-o", str(tmp_path / "o.png"), "--colorize"]) == 2
    assert "too large for this computer's memory" in capsys.readouterr().err and not fake.requests


def test_ctrl_c_cancels_and_exits_130(tmp_path, capsys, monkeypatch):
    pipeline = FakePipeline(interrupt=True, checkpoint=True)
    monkeypatch.setattr(cli_console, "_load_restore", lambda: pipeline)
    photo = photo_file(tmp_path / "p.png")
    out = tmp_path / "o.png"
    assert main(["restore", str(photo), "-o", str(out), "--colorize"]) == 130
    assert pipeline.cancel_seen is not None and pipeline.cancel_seen.is_set()
    err = capsys.readouterr().err
    assert not out.exists() and "1 finished window" in err and "--resume" in err


def test_ctrl_c_before_any_window_finished_does_not_promise_kept_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli_console, "_load_restore", lambda: FakePipeline(interrupt=True))
    assert main(["restore", str(photo_file(tmp_path / "p.png")), "-o", str(tmp_path / "o.png"), "--colorize"]) == 130
    err = capsys.readouterr().err
    assert "before any window was finished" in err and "--resume" not in err


def test_ctrl_c_signal_sets_cancel_token_and_exits_130(tmp_path, capsys, monkeypatch):
    pipeline = FakePipeline(sigint=True, checkpoint=True)
    monkeypatch.setattr(cli_console, "_load_restore", lambda: pipeline)
    photo = photo_file(tmp_path / "p.png")
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
        photo_file(src / name, (16, 16))
        Image.new("L", (16, 16), 255).save(masks / (Path(name).stem + ".png"))
    Image.new("L", (8, 8), 255).save(masks / "c.png")  # wrong size for c
    (src / "notes.txt").write_text("ignored")
    pipeline = FakePipeline()
    monkeypatch.setattr(cli_console, "_load_restore", lambda: pipeline)
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
    photo_file(src / "a.png"), photo_file(src / "b.png")
    assert main(["restore", str(src), "-o", str(tmp_path / "out"), "--colorize"]) == 0
    assert len(list((tmp_path / "out").iterdir())) == 2
    assert main(["restore", str(src), "-o", str(src), "--colorize"]) == 2


def test_folder_mode_refuses_an_output_named_like_a_photo(tmp_path, capsys, fake):
    src = tmp_path / "in"
    src.mkdir()
    photo_file(src / "a.png")
    assert main(["restore", str(src), "-o", str(tmp_path / "x.png"), "--colorize"]) == 2
    err = capsys.readouterr().err
    assert "looks like a file name" in err and f"e.g. {tmp_path / 'x'}" in err
    assert not (tmp_path / "x.png").exists() and not fake.requests
    (tmp_path / "x.png").mkdir()  # a folder that has that name already is what the user chose
    assert main(["restore", str(src), "-o", str(tmp_path / "x.png"), "--colorize"]) == 0
    assert (tmp_path / "x.png" / "a.png").is_file()


@pytest.mark.slow
def test_end_to_end_generated_image_sr2(tmp_path, capsys):
    photo = photo_file(tmp_path / "p.png", (32, 48), icc=True)
    out, report = tmp_path / "o.png", tmp_path / "r.json"
    argv = ["restore", str(photo), "-o", str(out), "--sr", "2", "--report", str(report), "--steps", "1"]
    assert main([*argv, "--overlap", "32", "--no-hir", *FAST]) == 0
    with Image.open(out) as im, Image.open(photo) as src:
        assert im.size == (96, 64) and im.info.get("icc_profile") == src.info["icc_profile"]
    data = check_report(report, out, (48, 32), (96, 64))
    assert data["windows"] >= 2 and data["is_random_model"] is True
    err = capsys.readouterr().err
    assert "WARNING" in err and "random weights: its output is NOT a restoration" in err and err.count("random weights") == 1


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
    check_report(report, out, (220, 276), (220, 276))


def test_folder_mode_writes_unsaveable_formats_as_png(tmp_path, capsys, fake):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    photo_file(src / "a.bmp"), photo_file(src / "b.BMP"), photo_file(src / "c.png")
    assert main(["restore", str(src), "-o", str(dst), "--colorize"]) == 0
    assert sorted(p.name for p in dst.iterdir()) == ["a.png", "b.png", "c.png"]
    assert capsys.readouterr().err.count("written as PNG") == 1


def test_folder_mode_refuses_two_photos_with_one_output(tmp_path, capsys, fake):
    src = tmp_path / "in"
    src.mkdir()
    photo_file(src / "a.bmp"), photo_file(src / "a.png")
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
        photo_file(src / name)
    done, interrupting = FakePipeline(), FakePipeline(interrupt=True)
    runs = iter([done, interrupting])
    monkeypatch.setattr(cli_console, "_load_restore", lambda: next(runs))
    assert main(["restore", str(src), "-o", str(dst), "--colorize", "--report", str(report)]) == 130
    data = json.loads(report.read_text())
    assert [Path(f["output"]).name for f in data["files"]] == ["a.png"]
    assert data["cancelled"] == str(src / "b.png") and "cancelled" in capsys.readouterr().err
