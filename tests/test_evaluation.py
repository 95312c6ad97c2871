"""Generated masks and the evaluation runner (oracle = exact, test-tiny = finite numbers + baselines)."""

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from engine.errors import InputError
from engine.evaluation.masks import box_mask, make_mask, stroke_mask


def _shared_data() -> Path:
    env = os.environ.get("RESTORER_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


KODAK = _shared_data() / "kodak"


# ----------------------------------------------------------------------------- masks


@pytest.mark.parametrize("make", [box_mask, stroke_mask])
def test_generated_masks_are_seeded_binary_and_partial(make):
    a, b, c = make(64, 48, 3), make(64, 48, 3), make(64, 48, 4)
    assert a.shape == (64, 48) and a.dtype == np.float32
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0.01 < a.mean() < 0.8


def test_make_mask_from_file_resizes_and_thresholds(tmp_path):
    from PIL import Image

    pix = np.zeros((10, 20), np.uint8)
    pix[:, 10:] = 255
    Image.fromarray(pix).save(tmp_path / "m.png")
    mask = make_mask(str(tmp_path / "m.png"), 20, 40)
    assert mask.shape == (20, 40)
    assert mask[:, :20].max() == 0 and mask[:, 20:].min() == 1


def test_make_mask_rejects_unknown_and_empty(tmp_path):
    from PIL import Image

    with pytest.raises(InputError):
        make_mask("no-such-thing", 8, 8)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(InputError, match="no pixels"):
        make_mask(str(tmp_path / "empty.png"), 8, 8)


# ----------------------------------------------------------------------------- runner

needs_kodak = pytest.mark.skipif(not (KODAK / "01.png").is_file(), reason="shared Kodak photos not available")


def _config(**kw):
    from engine.evaluation.evaluate import EvalConfig

    base = dict(data=str(KODAK), tasks=("sr4",), model="oracle", limit=2, size=64, window=64, steps=4, device="cpu")
    base.update(kw)
    return EvalConfig(**base)


@needs_kodak
def test_oracle_restores_noiseless_tasks_exactly():
    """The oracle's x0 is the clean image at every step, so the result equals it up to the
    pipeline's 16-bit canvas (an error of one 1/65535 step everywhere would still be 96 dB)."""
    from engine.evaluation.evaluate import evaluate

    results = list(evaluate(_config(tasks=("inpaint", "colorize", "sr4", "deblur", "old-photo"))))
    assert len(results) == 10 and {r.image for r in results} == {"01.png", "02.png"}
    for r in results:
        assert r.psnr > 96.3 and r.ssim == pytest.approx(1.0, abs=1e-9), (r.task, r.psnr)
        assert r.consistency < 1e-5
        assert math.isfinite(r.baseline_psnr) and r.baseline_psnr < 40  # the degraded input is really degraded
        assert (r.bicubic_psnr is not None) == (r.task in ("sr4", "old-photo"))
    assert sum(r.psnr == math.inf for r in results) >= 5  # most are bit-identical


@needs_kodak
def test_test_tiny_gives_finite_numbers_with_bicubic_baseline(tmp_path):
    from engine.evaluation.evaluate import evaluate, format_table, write_report

    config = _config(model="test-tiny", tasks=("sr4",), steps=2)
    results = list(evaluate(config))
    assert len(results) == 2
    for r in results:
        values = [r.psnr, r.ssim, r.consistency, r.baseline_psnr, r.bicubic_psnr, r.bicubic_ssim]
        assert all(v is not None and math.isfinite(v) for v in values)
        assert r.seconds > 0 and r.report.get("is_random_model") is True
        assert 15 < r.bicubic_psnr < 40  # a real upscale of a real photo, beside the restoration
    doc = json.loads(write_report(tmp_path / "r.json", config, results).read_text())
    assert len(doc["results"]) == 2 and doc["mean"]["sr4"]["images"] == 2
    assert doc["mean"]["sr4"]["bicubic_psnr"] == pytest.approx(np.mean([r.bicubic_psnr for r in results]))
    csv_text = write_report(tmp_path / "r.csv", config, results).read_text().splitlines()
    assert csv_text[0].startswith("image,task,psnr,ssim") and len(csv_text) == 3
    assert "sr4" in format_table(results)


@needs_kodak
def test_the_pipeline_gets_the_degraded_observation_as_the_photo():
    """SR hands over the low-res image, colorize a gray one, inpainting the masked image + mask."""
    from engine.evaluation.evaluate import evaluate

    seen = {}

    def fake_restore(request, clean):
        seen[next(t for t in ("sr4", "colorize", "inpaint") if _matches(t, request.tasks))] = request
        return clean, {}

    list(evaluate(_config(tasks=("sr4", "colorize", "inpaint"), limit=1, mask="boxes"), restore_fn=fake_restore))
    assert seen["sr4"].image.shape == (16, 16, 3) and seen["sr4"].tasks.sr == 4
    gray = seen["colorize"].image
    assert gray.shape == (64, 64, 3) and np.allclose(gray[..., 0], gray[..., 2])
    inp = seen["inpaint"]
    assert inp.mask.shape == (64, 64) and inp.mask.any()
    assert np.allclose(inp.image[inp.mask], 0.5)  # masked pixels carry no information


def _matches(task, tasks):
    return {"sr4": tasks.sr == 4, "colorize": tasks.colorize, "inpaint": tasks.inpaint}[task]


def test_unknown_task_and_denoise_without_noise_are_rejected():
    from engine.evaluation.evaluate import task_spec

    with pytest.raises(InputError):
        task_spec("sharpen", 0.0, "gauss:3", "avgpool")
    with pytest.raises(InputError, match="noise"):
        task_spec("denoise", 0.0, "gauss:3", "avgpool")
    assert task_spec("old-photo", 0.02, "gauss:3", "avgpool").sr == 2


def test_cli_evaluate_writes_a_report(tmp_path, capsys):
    from PIL import Image

    from engine.cli import main

    y, x = np.mgrid[0:80, 0:96]
    rgb = np.stack([x * 2, y * 3, (x + y)], -1).clip(0, 255).astype(np.uint8)
    (tmp_path / "photos").mkdir()
    Image.fromarray(rgb).save(tmp_path / "photos" / "a.png")
    code = main(["evaluate", "--data", str(tmp_path / "photos"), "--task", "colorize", "--model", "oracle",
                 "--size", "32", "--steps", "2", "--device", "cpu", "--report", str(tmp_path / "r.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "colorize" in out and "inf" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["results"][0]["psnr"] == "inf" and doc["config"]["model"] == "oracle"
    assert (doc["complete"], doc["results_done"], doc["results_planned"]) == (True, 1, 1)


def _cli_photos(folder):
    from PIL import Image

    y, x = np.mgrid[0:80, 0:96]
    folder.mkdir()
    Image.fromarray(np.stack([x * 2, y * 3, (x + y)], -1).clip(0, 255).astype(np.uint8)).save(folder / "a.png")
    return folder


ORACLE_RUN = ["--task", "colorize", "--model", "oracle", "--size", "32", "--steps", "2", "--device", "cpu"]


def test_cli_evaluate_report_goes_to_a_new_folder(tmp_path):
    from engine.cli import main

    report = tmp_path / "new" / "r.csv"
    assert main(["evaluate", "--data", str(_cli_photos(tmp_path / "photos")), *ORACLE_RUN, "--report", str(report)]) == 0
    assert report.read_text().startswith("image,task")


@pytest.mark.parametrize("where, words", [("blocker.png/r.json", "is a file, not a folder"),
                                          ("a_folder.json", "is a folder"), ("r.txt", ".json or .csv")])
def test_cli_evaluate_refuses_a_bad_report_before_evaluating(tmp_path, capsys, monkeypatch, where, words):
    import engine.evaluation.evaluate as evaluation
    from engine.cli import main

    (tmp_path / "blocker.png").write_bytes(b"x")
    (tmp_path / "a_folder.json").mkdir()
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: pytest.fail("evaluated before checking --report"))
    code = main(["evaluate", "--data", str(_cli_photos(tmp_path / "photos")), *ORACLE_RUN,
                 "--report", str(tmp_path / where)])
    assert code == 2 and words in capsys.readouterr().err


def test_cli_evaluate_skips_an_unreadable_photo_with_a_warning(tmp_path, capsys):
    from engine.cli import main

    photos = _cli_photos(tmp_path / "photos")
    (photos / "0_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    assert main(["evaluate", "--data", str(photos), *ORACLE_RUN, "--limit", "1"]) == 0
    captured = capsys.readouterr()
    assert "warning: skipped 0_broken.png" in captured.err and "a.png colorize" in captured.err
    assert "colorize" in captured.out


def test_cli_evaluate_missing_folders_and_unreadable_sets_are_named(tmp_path, capsys):
    from engine.cli import main

    assert main(["evaluate", "--data", str(tmp_path / "nope"), *ORACLE_RUN]) == 2
    assert "evaluation data folder" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"junk")
    assert main(["evaluate", "--data", str(tmp_path / "bad"), *ORACLE_RUN]) == 2
    assert "none of the images" in capsys.readouterr().err


@pytest.mark.parametrize("victim, argv", [
    ("photos/a.png", []), ("mask.png", ["--task", "inpaint", "--mask", "mask.png"]),
    ("k.npy", ["--task", "deblur", "--blur", "kernel: k.npy"]), ("m.pt", ["--model", "m.pt"]),
    ("m.json", ["--model", "m.pt"]),
])
def test_cli_evaluate_report_never_overwrites_what_it_reads(tmp_path, capsys, monkeypatch, victim, argv):
    import engine.evaluation.evaluate as evaluation
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    _cli_photos(tmp_path / "photos")
    for name in ("mask.png", "k.npy", "m.pt", "m.json"):
        (tmp_path / name).write_bytes(b"kept")
    report = tmp_path / "r.json"
    if victim != "m.json":  # a report named like the model's metadata; the others through a link
        report.symlink_to(tmp_path / victim)
    else:
        report = tmp_path / victim
    before = (tmp_path / victim).read_bytes()
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: pytest.fail("evaluated despite the report"))
    code = main(["evaluate", "--data", "photos", *ORACLE_RUN, *argv, "--report", str(report)])
    err = capsys.readouterr().err
    assert code == 2 and "never overwritten" in err and str(report) in err and victim in err.split(str(report))[1]
    assert (tmp_path / victim).read_bytes() == before


@pytest.mark.parametrize("argv, words", [(["--size", "8"], "--size: must be ≥ 16"), (["--limit", "-1"], "≥ 1"),
                                         (["--limit", "0"], "≥ 1")])
def test_cli_evaluate_refuses_bad_numbers_before_evaluating(tmp_path, capsys, monkeypatch, argv, words):
    import engine.evaluation.evaluate as evaluation
    from engine.cli import main

    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: pytest.fail("evaluated despite a bad number"))
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--data", str(_cli_photos(tmp_path / "photos")), *ORACLE_RUN, *argv])
    assert exit_info.value.code == 2 and words in capsys.readouterr().err


def test_cli_evaluate_refuses_an_unknown_model_before_reading_a_photo(tmp_path, capsys, monkeypatch):
    import engine.evaluation.evaluate as evaluation
    from engine.cli import main

    monkeypatch.setenv("RESTORER_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: pytest.fail("evaluated with an unknown model"))
    run = ["evaluate", "--data", str(_cli_photos(tmp_path / "photos")), *ORACLE_RUN, "--model", "nope"]
    assert main(run) == 2
    assert "unknown model 'nope' (known models: adm-256-uncond" in capsys.readouterr().err


def test_planned_results_count_the_photos_up_to_the_limit_times_the_tasks(tmp_path):
    from engine.evaluation.evaluate import EvalConfig, planned_results

    photos = _cli_photos(tmp_path / "photos")
    for name in ("b.png", "c.png", "c_mask.png"):
        (photos / name).write_bytes((photos / "a.png").read_bytes())
    config = EvalConfig(data=str(photos), tasks=("colorize", "sr4"))
    assert planned_results(config) == 6
    assert planned_results(dataclasses.replace(config, limit=2)) == 4


def test_cli_evaluate_ctrl_c_keeps_the_finished_results(tmp_path, capsys, monkeypatch):
    from PIL import Image

    import engine.evaluation.evaluate as evaluation
    from engine.cli import main

    photos = _cli_photos(tmp_path / "photos")
    Image.open(photos / "a.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photos / "b.png")
    restore = evaluation.oracle_restore

    def ctrl_c_on_the_second_photo(request, clean):
        if ctrl_c_on_the_second_photo.calls:
            raise KeyboardInterrupt
        ctrl_c_on_the_second_photo.calls += 1
        return restore(request, clean)

    ctrl_c_on_the_second_photo.calls = 0
    monkeypatch.setattr(evaluation, "oracle_restore", ctrl_c_on_the_second_photo)
    report = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(photos), *ORACLE_RUN, "--report", str(report)]) == 130
    captured = capsys.readouterr()
    assert "interrupted after 1 result(s)" in captured.err and "colorize" in captured.out
    doc = json.loads(report.read_text())
    assert [r["image"] for r in doc["results"]] == ["a.png"]
    assert (doc["complete"], doc["results_done"], doc["results_planned"]) == (False, 1, 2)
