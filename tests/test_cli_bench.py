"""``python -m engine bench``: arguments and destinations are checked before anything is measured."""

from __future__ import annotations

import json

import pytest

import engine.benchmark
from engine.cli import main


@pytest.fixture
def measured(monkeypatch):
    """Stands in for run_benchmark: records its arguments, returns a few figures."""
    calls = []

    def fake_run_benchmark(**kwargs):
        calls.append(kwargs)
        return {"device": "cpu", "unet": {"ours, batch 2": {"window_steps_per_s": 1.5}}, "ms_per_call": {1: 2.0}}

    monkeypatch.setattr(engine.benchmark, "run_benchmark", fake_run_benchmark)
    return calls


BASE = ["bench", "--config", "tiny", "--device", "cpu", "--size", "256"]


def test_json_goes_to_a_new_folder(tmp_path, measured):
    out = tmp_path / "new" / "b.json"
    assert main([*BASE, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["unet"]["ours, batch 2"]["window_steps_per_s"] == 1.5


@pytest.mark.parametrize("where", ["blocker.txt/b.json", "a_folder"])
def test_unwritable_json_is_refused_before_measuring(tmp_path, capsys, measured, where):
    (tmp_path / "blocker.txt").write_text("x")
    (tmp_path / "a_folder").mkdir()
    assert main([*BASE, "--json", str(tmp_path / where)]) == 2
    assert "--json" in capsys.readouterr().err and not measured


def test_a_json_write_that_fails_at_the_end_says_so_in_one_line(tmp_path, capsys, measured, monkeypatch):
    import engine.report

    def read_only(path, report):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(engine.report, "write_report", read_only)
    assert main([*BASE, "--json", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "printed above" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, words", [
    (["--batch", "0"], "≥ 1"), (["--unet-iters", "0"], "≥ 1"), (["--window", "0"], "≥ 32"),
    (["--window", "48"], "multiple of 32"), (["--steps", "0"], "≥ 1"), (["--steps", "1001"], "≤ 1000"),
    (["--travel", "0,0"], "≥ 1"), (["--baseline-windows", "0"], "≥ 1"), (["--size", "258"], "multiple of 4"),
    (["--batch", "two"], "whole number"),
])
def test_bad_arguments_are_refused_before_measuring(capsys, measured, argv, words):
    with pytest.raises(SystemExit) as exit_info:
        main([*BASE, *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and words in err and "Traceback" not in err and not measured


def test_size_smaller_than_the_window_is_refused_before_measuring(capsys, measured):
    assert main([*BASE, "--size", "128", "--window", "256"]) == 2
    assert "at least the window" in capsys.readouterr().err and not measured


def test_good_arguments_reach_the_benchmark(measured):
    assert main([*BASE, "--batch", "3", "--window", "64", "--steps", "2", "--travel", "2,1", "--unet-iters", "2"]) == 0
    run = measured[0]
    assert (run["batch"], run["window"], run["steps"], run["travel"], run["unet_iters"]) == (3, 64, 2, (2, 1), 2)


@pytest.mark.parametrize("command", ["restore", "models", "detect", "train", "evaluate", "bench"])
def test_help_texts_are_plain_text(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "``" not in out and "python -m engine" in out.splitlines()[0]


def _help(capsys, *command: str) -> str:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    return " ".join(capsys.readouterr().out.split())  # one line: argparse wraps where it likes


ALL_COMMANDS = [("restore",), ("detect",), ("train",), ("evaluate",), ("bench",), *[("models", action) for action in (
    "list", "download", "verify", "repair", "import", "remove", "path")]]


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_help_shows_no_empty_defaults(capsys, command):
    out = _help(capsys, *command)
    for noise in ("default: None", "default: False", "default: []", "default: ()", "default: )"):
        assert noise not in out


def test_help_shows_the_defaults_that_apply(capsys):
    from engine.request import RestoreRequest

    request = RestoreRequest(image="x")
    restore = _help(capsys, "restore")
    for shown in (f"test-tiny (default: {request.model})", f"sampling steps (default: {request.steps})",
                  f"(1,1 = none) (default: {request.travel_length},{request.travel_repeat})",
                  f"DDIM η, 0..1 (default: {request.eta})", f"(default: {request.window})",
                  "lossless WebP (default: 95)", "how the photo was downscaled (default: avgpool)"):
        assert shown in restore
    evaluate = _help(capsys, "evaluate")
    for shown in ("checks the algebra) (default: adm-256-uncond)", "sampling steps (default: 100)",
                  "square test images (default: 256)"):
        assert shown in evaluate
    assert "crops per step (default: 8)" in _help(capsys, "train")
    assert "network errors (default: 4)" in _help(capsys, "models", "download")


def test_the_upscaler_comparison_puts_resshift_beside_the_engine_presets(tmp_path, monkeypatch, capsys):
    import engine.resshift.bench as rbench
    from gui.run.plan import QUALITY_PRESETS

    assert rbench.PRESET_STEPS == {name: QUALITY_PRESETS[name].steps for name in rbench.PRESET_STEPS}
    ran = []
    runs = iter([1.5, 2.5])  # before and after the engine: the mean counts
    monkeypatch.setattr(rbench, "_official_upscaler", lambda device, precision: "upscaler")
    monkeypatch.setattr(rbench, "_resshift_seconds",
                        lambda upscaler, image: {"seconds": next(runs), "tiles": 1, "tile": 64, "params_m": 174.7})
    monkeypatch.setattr(rbench, "_engine_seconds", lambda image, steps, device, precision: ran.append(steps) or
                        {"seconds": 0.5 * steps, "windows": 1, "denoiser_calls": steps})
    out = tmp_path / "u.json"
    assert main(["bench", "--upscalers", "--device", "cpu", "--precision", "fp32", "--upscale-input", "32",
                 "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert ran == [25], "Balanced is extrapolated from Fast unless asked to run"
    megapixels = 128 * 128 / 1e6
    assert figures["resshift"]["seconds_runs"] == [1.5, 2.5]
    assert figures["resshift"]["seconds_per_mp"] == round(2.0 / megapixels, 1)
    fast, balanced = figures["engine"]["Fast"], figures["engine"]["Balanced"]
    assert (fast["seconds"], fast["resshift_speedup"], fast["extrapolated"]) == (12.5, 6.2, False)
    assert (balanced["seconds"], balanced["denoiser_calls"], balanced["extrapolated"]) == (50.0, 100, True)
    printed = capsys.readouterr().out
    assert "ResShift ×4, 4 steps" in printed and "engine ×4, Balanced (100 steps" in printed
