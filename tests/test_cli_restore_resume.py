"""``python -m engine restore`` never loses work: saved progress is kept unless the user says
otherwise, originals are never overwritten, destinations are checked before any work, a failed
final write keeps the finished work for ``--resume``, and progress that cannot be saved does not
stop the run."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from PIL import Image

import engine.cli.console as cli_console
import engine.cli.restore as cli_restore
from engine.cli import main
from tests.cli_restore_helpers import FAST, FakePipeline, photo_file, saved_state


def test_saved_progress_is_never_discarded_without_resume_or_restart(tmp_path, capsys, fake):
    photo, out = photo_file(tmp_path / "p.png"), tmp_path / "o.png"
    state = saved_state(out)
    assert main(["restore", str(photo), "-o", str(out), "--colorize"]) == 2
    err = capsys.readouterr().err
    assert "3 finished window" in err and "--resume" in err and "--restart" in err
    assert (state / "state.json").is_file() and not fake.requests


def test_resume_keeps_and_restart_discards_saved_progress(tmp_path, fake):
    photo, out = photo_file(tmp_path / "p.png"), tmp_path / "o.png"
    state = saved_state(out)
    assert main(["restore", str(photo), "-o", str(out), "--colorize", "--resume"]) == 0
    saved_state(out)
    assert main(["restore", str(photo), "-o", str(out), "--colorize", "--restart"]) == 0
    assert fake.state_seen == [True, False] and not state.exists()


def test_state_without_finished_windows_is_replaced_quietly(tmp_path, fake):
    photo, out = photo_file(tmp_path / "p.png"), tmp_path / "o.png"
    saved_state(out, finished=())
    assert main(["restore", str(photo), "-o", str(out), "--colorize"]) == 0 and out.is_file()


def test_folder_mode_checks_saved_progress_before_anyphoto_file(tmp_path, capsys, fake):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    photo_file(src / "a.png"), photo_file(src / "b.png")
    saved_state(dst / "b.png", finished=(4,))
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
        photo_file(src / name)
    dst.mkdir()
    photo_file(dst / "a.png")  # finished by the earlier run
    photo_file(dst / "b.png")  # an older result, but a later run of b was interrupted
    saved_state(dst / "b.png")
    report = tmp_path / "r.json"
    assert main(["restore", str(src), "-o", str(dst), "--colorize", "--resume", "--report", str(report)]) == 0
    assert [Path(r.resume_dir).name for r in fake.requests] == ["b.png.restorer-state", "c.png.restorer-state"]
    err = capsys.readouterr().err
    assert "a.png: already restored" in err and "skipped" in err and "2 restored, 1 skipped" in err
    assert json.loads(report.read_text())["skipped"] == [str(src / "a.png")]


# ---------------------------------------------------------------- originals are kept
@pytest.mark.parametrize("victim", ["photo", "mask", "photo via symlink", "photo via report"])
def test_outputs_never_overwrite_the_photo_or_mask(tmp_path, capsys, monkeypatch, fake, victim):
    photo = photo_file(tmp_path / "p.png", (16, 20))
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


@pytest.mark.parametrize("victim", ["m.json", "m.pt"])
def test_the_report_never_overwrites_the_model_or_its_metadata(tmp_path, capsys, monkeypatch, fake, victim):
    photo_file(tmp_path / "p.png", (16, 20))
    (tmp_path / "m.pt").write_bytes(b"PK\x03\x04 weights")  # looks like a torch.save archive
    (tmp_path / "m.json").write_text('{"image_size": 32}')
    monkeypatch.chdir(tmp_path)
    assert main(["restore", "p.png", "-o", "o.png", "--colorize", "--model", "m.pt", "--report", victim]) == 2
    err = capsys.readouterr().err
    assert "never overwritten" in err and "the model" in err and not fake.requests
    assert (tmp_path / "m.json").read_text() == '{"image_size": 32}' and (tmp_path / "m.pt").read_bytes().endswith(b"weights")


def test_folder_report_never_overwrites_a_photo_of_the_folder(tmp_path, capsys, fake):
    src = tmp_path / "in"
    src.mkdir()
    photo = photo_file(src / "a.png", (16, 16))
    before = photo.read_bytes()
    assert main(["restore", str(src), "-o", str(tmp_path / "out"), "--colorize", "--report", str(photo)]) == 2
    assert "the input photo a.png" in capsys.readouterr().err and not fake.requests
    assert photo.read_bytes() == before


def test_the_report_never_replaces_the_restored_photo(tmp_path, capsys, monkeypatch, fake):
    photo_file(tmp_path / "p.png", (16, 20))
    monkeypatch.chdir(tmp_path)
    assert main(["restore", "p.png", "-o", "o.png", "--colorize", "--report", "./o.png"]) == 2  # the same file, written another way
    assert "the report o.png is also OUTPUT (o.png)" in capsys.readouterr().err and not fake.requests
    (tmp_path / "in").mkdir()
    photo_file(tmp_path / "in" / "a.bmp", (16, 16))
    assert main(["restore", "in", "-o", "out", "--colorize", "--report", "out/a.png"]) == 2
    assert "is also the output of a.bmp" in capsys.readouterr().err and not fake.requests


def test_folder_output_must_differ_from_the_mask_folder(tmp_path, capsys, fake):
    src, masks = tmp_path / "in", tmp_path / "masks"
    src.mkdir(), masks.mkdir()
    photo_file(src / "a.png", (16, 16))
    Image.new("L", (16, 16), 255).save(masks / "a.png")
    assert main(["restore", str(src), "-o", str(masks), "--mask", str(masks)]) == 2
    assert "mask folder" in capsys.readouterr().err and not fake.requests


# ------------------------------------------------------------------- destinations
@pytest.mark.parametrize("output, report, words", [
    ("blocker.png/o.png", None, "blocker.png is a file, not a folder"),
    ("blocker.png/sub/o.png", None, "blocker.png is a file, not a folder"),
    ("folder.png", None, "is a folder"),
    ("a folder ü", None, "OUTPUT a folder ü is a folder: give a file name, e.g. a folder ü/p.png"),
    ("o.png", "blocker.png/r.json", "cannot write the report"),
    ("o.png", "folder.png", "is a folder"),
    ("/proc/o.png", None, "not writable"),
])
def test_unwritable_destinations_are_refused_before_the_model_loads(tmp_path, capsys, monkeypatch, fake,
                                                                     output, report, words):
    if output.startswith("/proc") and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    monkeypatch.chdir(tmp_path)
    photo = photo_file(tmp_path / "p.png")
    photo_file(tmp_path / "blocker.png")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "a folder ü").mkdir()
    argv = ["restore", str(photo), "-o", output, "--colorize"] + (["--report", report] if report else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and not fake.requests


@pytest.mark.parametrize("output, report, words", [
    ("blocker.png", None, "is a file, not a folder"),
    ("blocker.png/out", None, "is a file, not a folder"),
    ("out", "blocker.png/r.json", "cannot write the report"),
])
def test_unwritable_folder_destinations_are_refused_before_anyphoto_file(tmp_path, capsys, monkeypatch, fake,
                                                                      output, report, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    photo_file(tmp_path / "in" / "a.png")
    photo_file(tmp_path / "blocker.png")
    argv = ["restore", "in", "-o", output, "--colorize"] + (["--report", report] if report else [])
    assert main(argv) == 2
    assert words in capsys.readouterr().err and not fake.requests


def test_a_failed_save_keeps_the_finished_work_for_resume(tmp_path, capsys, monkeypatch):
    pipeline = FakePipeline(checkpoint=True)
    monkeypatch.setattr(cli_console, "_load_restore", lambda: pipeline)
    photo, out = photo_file(tmp_path / "p.png"), tmp_path / "o.png"

    def disk_full(path, *args, **kwargs):
        raise cli_restore.InputError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(cli_restore, "save_image", disk_full)
    assert main(["restore", str(photo), "-o", str(out), "--colorize"]) == 2
    err = capsys.readouterr().err
    assert "No space left" in err and "kept in" in err and "--resume" in err
    assert cli_restore.state_dir_for(out).is_dir()
    monkeypatch.undo()
    monkeypatch.setattr(cli_console, "_load_restore", lambda: pipeline)
    assert main(["restore", str(photo), "-o", str(out), "--colorize", "--resume"]) == 0
    assert out.is_file() and not cli_restore.state_dir_for(out).exists()


def test_a_failed_report_keeps_the_finished_work_for_resume(tmp_path, capsys, monkeypatch):
    pipeline = FakePipeline(checkpoint=True)
    monkeypatch.setattr(cli_console, "_load_restore", lambda: pipeline)
    photo, out, report = photo_file(tmp_path / "p.png"), tmp_path / "o.png", tmp_path / "r.json"

    def read_only(path, report):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cli_restore, "write_report", read_only)
    assert main(["restore", str(photo), "-o", str(out), "--colorize", "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {report}: Permission denied" in err and "--resume" in err and "Traceback" not in err
    assert cli_restore.state_dir_for(out).is_dir()


@pytest.mark.slow
def test_end_to_end_resume_writes_a_result_whose_save_failed_without_redoing_it(tmp_path, monkeypatch):
    photo, out, report = photo_file(tmp_path / "p.png", (32, 48)), tmp_path / "o.png", tmp_path / "r.json"
    argv = ["restore", str(photo), "-o", str(out), "--sr", "2", "--steps", "1", "--overlap", "32", "--no-hir",
            "--report", str(report), *FAST]

    def disk_full(path, *args, **kwargs):
        raise cli_restore.InputError(f"cannot write {path}: No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(cli_restore, "save_image", disk_full)
        assert main(argv) == 2
    assert main([*argv, "--resume"]) == 0
    assert out.is_file() and json.loads(report.read_text())["denoiser_calls"] == 0


# ------------------------------------------------------------- progress that cannot be saved
def test_resume_refuses_a_state_folder_it_cannot_write_before_the_model_loads(tmp_path, capsys, fake):
    photo, out = photo_file(tmp_path / "p.png"), tmp_path / "o.png"
    cli_restore.state_dir_for(out).write_text("a file where the folder should be")
    assert main(["restore", str(photo), "-o", str(out), "--colorize", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "the saved progress" in err and "is a file, not a folder" in err and not fake.requests


@pytest.mark.slow
def test_progress_that_cannot_be_saved_mid_run_warns_and_the_result_is_written(tmp_path, capsys, monkeypatch):
    from engine.tiling import resume

    def disk_full(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(resume, "atomic_write", disk_full)
    photo, out = photo_file(tmp_path / "p.png", (32, 48)), tmp_path / "o.png"
    argv = ["restore", str(photo), "-o", str(out), "--sr", "2", "--steps", "1", "--overlap", "32", "--no-hir", *FAST]
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert err.count("cannot be saved") == 1 and "No space left on device" in err and "goes on" in err
    assert out.is_file() and not cli_restore.state_dir_for(out).exists()
