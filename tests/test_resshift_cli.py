"""The fast upscale from the command line: ``restore --sr N --model resshift-realsr-x4`` with files in
the official layout (random weights at the tiny configuration), a damaged file refused in one line,
and ``models download`` showing a non-commercial licence and asking for it to be accepted."""

from __future__ import annotations

import functools
import http.server
import json
import threading

import pytest
from PIL import Image

from engine.cli import main
from engine.models import catalog as cat
from tests.cli_restore_helpers import photo_file
from tests.resshift_helpers import UNET_FILE, write_files


@pytest.fixture
def models(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    write_files(folder)
    monkeypatch.setenv("RESTORER_MODELS_DIR", str(folder))
    monkeypatch.delenv("RESTORER_MODEL_CATALOG", raising=False)
    cat.set_models_dir(None)
    return folder


def _restore(capsys, tmp_path, *argv):
    source = photo_file(tmp_path / "in.png", size=(20, 28))
    code = main(["restore", str(source), "-o", str(tmp_path / "out.png"), "--device", "cpu", "--precision", "fp32",
                 "--no-progress", "--report", str(tmp_path / "report.json"), *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("sr, resize", [(4, None), (2, "area ×2/4")])
def test_restore_with_the_fast_upscaler(models, tmp_path, capsys, sr, resize):
    code, err = _restore(capsys, tmp_path, "--sr", str(sr), "--model", "resshift-realsr-x4")
    assert code == 0, err
    assert Image.open(tmp_path / "out.png").size == (28 * sr, 20 * sr)
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["upscaler"], report["upscaler_steps"], report["resize"]) == ("resshift-realsr-x4", 4, resize)
    assert "fast upscale: ResShift ×4 in 4 steps" in err
    assert not (tmp_path / "out.png.restorer-state").exists()  # the finished job's tiles are removed


def test_fill_after_the_fast_upscale_from_the_command_line(models, tmp_path, capsys):
    mask = tmp_path / "mask.png"
    Image.new("L", (28, 20)).save(mask)
    Image.new("L", (6, 5), 255).save(tmp_path / "dot.png")
    m = Image.open(mask)
    m.paste(Image.open(tmp_path / "dot.png"), (10, 8))
    m.save(mask)
    code, err = _restore(capsys, tmp_path, "--sr", "4", "--upscaler", "resshift-realsr-x4", "--model", "test-tiny",
                         "--mask", str(mask), "--steps", "2", "--window", "64", "--overlap", "32")
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["upscaler"], report["model"]) == ("resshift-realsr-x4", "test-tiny")
    assert report["output_size"] == [112, 80]


def test_a_damaged_denoiser_file_is_refused_in_one_line(models, tmp_path, capsys):
    path = models / UNET_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    code, err = _restore(capsys, tmp_path, "--sr", "4", "--model", "resshift-realsr-x4")
    assert code == 2
    assert "could not be read as a model checkpoint" in err and "truncated" in err
    assert len(err.strip().splitlines()[-1:]) == 1 and "Traceback" not in err


def test_the_fast_upscaler_without_its_autoencoder_says_how_to_get_it(models, tmp_path, capsys):
    (models / "autoencoder_vq_f4.pth").unlink()
    code, err = _restore(capsys, tmp_path, "--sr", "4", "--model", "resshift-realsr-x4")
    assert code == 2 and "needs its autoencoder: run `python -m engine models download resshift-vq-f4`" in err


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    root = tmp_path / "www"
    root.mkdir()
    (root / "nc.pt").write_bytes(b"x" * 5000)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    catalog = tmp_path / "models.json"
    catalog.write_text(json.dumps({"models": [{
        "id": "nc", "display_name": "NC model", "purpose": "fast upscale", "file_name": "nc.pt",
        "architecture": "resshift-unet", "urls": [f"http://127.0.0.1:{httpd.server_address[1]}/nc.pt"],
        "licence": "S-Lab License 1.0 (non-commercial)", "licence_confirmation": True}]}))
    monkeypatch.setenv("RESTORER_MODEL_CATALOG", str(catalog))
    yield tmp_path / "models"
    httpd.shutdown()
    httpd.server_close()


def test_a_non_commercial_model_is_downloaded_only_once_its_licence_is_accepted(server, capsys, monkeypatch):
    code = main(["models", "download", "nc", "--models-dir", str(server)])
    out, err = capsys.readouterr()
    assert code == 2 and not (server / "nc.pt").exists()
    assert "NC model comes under the S-Lab License 1.0 (non-commercial)" in err and "non-commercial use only" in err
    assert "add --accept-licence" in err

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)  # asked at a terminal: "no" keeps it off the disk
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["models", "download", "nc", "--models-dir", str(server)]) == 2
    assert not (server / "nc.pt").exists() and "licence was not accepted" in capsys.readouterr().err

    code = main(["models", "download", "nc", "--models-dir", str(server), "--accept-licence"])
    out, err = capsys.readouterr()
    assert code == 0 and (server / "nc.pt").exists() and "non-commercial use only" in err


def test_a_denoiser_file_runs_with_its_autoencoder_beside_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RESTORER_MODELS_DIR", str(tmp_path / "empty-models"))
    unet, _ = write_files(tmp_path / "downloads")
    code, err = _restore(capsys, tmp_path, "--sr", "4", "--model", str(unet))
    assert code == 0, err
    assert json.loads((tmp_path / "report.json").read_text())["upscaler"] == str(unet)
    assert "ResShift ×4 in 4 steps" in err  # the official file name gives the catalog model's schedule


def test_imported_files_keep_the_schedule_of_the_model_they_are(tmp_path, monkeypatch, capsys):
    """A real official file takes its catalog id (same name, plausible size); the tiny test files are
    far smaller, so they become models of their own, and still get their model's schedule."""
    from engine.resshift.load import schedule_for

    monkeypatch.delenv("RESTORER_MODEL_CATALOG", raising=False)
    unet, autoencoder = write_files(tmp_path / "downloads")
    unet = unet.rename(unet.with_name("resshift_realsrx4_s15_v2.pth"))
    models = tmp_path / "models"
    monkeypatch.setenv("RESTORER_MODELS_DIR", str(models))
    assert main(["models", "import", str(unet), "--id", "my-v2"]) == 0
    assert main(["models", "import", str(autoencoder)]) == 0
    out = capsys.readouterr().out
    assert "ResShift denoiser (Swin-UNet)" in out and "ResShift VQ-f4 autoencoder" in out
    schedule, known = schedule_for("my-v2")
    assert (schedule.steps, schedule.min_noise_level, known) == (15, 0.04, True)
    assert schedule_for(str(unet))[0].steps == 15
    assert schedule_for(str(tmp_path / "renamed.pth")) == (schedule_for("resshift-realsr-x4")[0], False)
    code, err = _restore(capsys, tmp_path, "--sr", "4", "--model", "my-v2")  # finds the imported autoencoder
    assert code == 0, err
    assert "ResShift ×4 in 15 steps" in err
