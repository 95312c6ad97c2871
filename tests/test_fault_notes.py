"""What a run or the model store says where it used to stay silent (found by fault injection):
fp16 on a CPU, an animation's other frames, a window rounded down, guidance with no class, saved
progress that cannot be read, NaN weights, and Repair of a model nobody can download."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli import main
from engine.errors import Cancelled, ModelFileError
from engine.events import LogEvent, WindowFinished
from engine.models import store
from engine.pipeline import restore
from engine.request import RestoreRequest, Tasks
from tests.test_model_import import models_dir, save, tiny_state_dicts  # noqa: F401 - fixtures
from tests.test_pipeline import ZeroImage, gradient_image
from tests.test_resume import make_request, run_all


def messages(request: RestoreRequest, level: str) -> list[str]:
    return [e.message for e in restore(request, denoiser=ZeroImage())
            if isinstance(e, LogEvent) and e.level == level]


def quick(**changes) -> RestoreRequest:
    base = dict(image=gradient_image(32, 48), tasks=Tasks(colorize=True), steps=1, window=32, overlap=16,
                device="cpu")
    return RestoreRequest(**{**base, **changes})


def test_fp16_on_the_cpu_is_warned_with_what_to_choose():
    [warning] = [m for m in messages(quick(precision="fp16"), "warning") if "fp16" in m]
    assert "emulated on a CPU" in warning and "many times slower" in warning and "auto, bf16 or fp32" in warning
    assert not [m for m in messages(quick(precision="fp32"), "warning") if "fp16" in m]


def test_an_animation_says_that_only_its_first_frame_is_restored(tmp_path):
    frames = [Image.fromarray(np.full((32, 40, 3), 60 * k, np.uint8)) for k in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(tmp_path / "still.png")
    assert "the image holds 3 frames (an animation or pages): only the first is restored" in messages(
        quick(image=str(tmp_path / "anim.gif")), "warning")
    assert not [m for m in messages(quick(image=str(tmp_path / "still.png")), "warning") if "frames" in m]


def test_a_window_rounded_down_to_a_multiple_of_32_is_named():
    assert "windows are 96 px, not 100: a window is a multiple of 32 px (the network's 32)" in messages(
        quick(window=100), "info")
    assert "windows are 192 px, not 256: a window is a multiple of 96 px (the network's 32 and the scale 3)" in \
        messages(quick(image=gradient_image(8, 8), tasks=Tasks(sr=3), window=256, overlap=64, hir=False), "info")
    assert not [m for m in messages(quick(window=96, overlap=32), "info") if "windows are" in m]


def test_guidance_without_a_class_is_said_to_be_off():
    unguided = messages(quick(model="test-tiny", guidance_scale=2.0), "warning")
    assert "classifier guidance is off: it steers towards a class, and no class was given" in unguided
    guided = messages(quick(model="test-tiny", guidance_scale=2.0, class_label=3), "warning")
    assert not [m for m in guided if "guidance" in m]


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_saved_progress_that_cannot_be_read_is_warned_and_the_earlier_windows_are_kept(tmp_path, damage):
    reference, _ = run_all(make_request(hir=False))
    request = make_request(tmp_path, hir=False)  # 12 windows in 6 levels, saved level by level
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        run_all(request, cancel, cancel_after=8)
    patches = sorted((tmp_path / "state").glob("restore.*.npy"), key=lambda p: int(p.name.split(".")[1]))
    assert len(patches) >= 3
    last = patches[-1]
    if damage == "missing":
        last.unlink()
    else:
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    events, _ = run_all(request)
    warnings = [e.message for e in events if isinstance(e, LogEvent) and e.level == "warning"]
    reason = "is missing" if damage == "missing" else "is damaged"
    assert any(f"could not be read ({last.name} {reason}" in w and "restored again" in w for w in warnings), warnings
    resumed = sum(1 for e in events if isinstance(e, WindowFinished) and e.resumed)
    assert resumed > 0  # the windows of the patches before the damaged one are kept
    assert any(isinstance(e, LogEvent) and f"resuming: {resumed} of 12" in e.message for e in events)
    np.testing.assert_array_equal(events[-1].result, reference[-1].result)


def nan_weights(state_dict: dict) -> dict:
    broken = dict(state_dict)
    name = next(k for k, v in broken.items() if v.is_floating_point())
    broken[name] = broken[name].clone().fill_(float("nan"))
    return broken


def test_nan_weights_are_refused_at_import(models_dir, tmp_path, tiny_state_dicts):  # noqa: F811
    for layout in ("plain", "safetensors"):
        src = save(nan_weights(tiny_state_dicts["ddpm"]), tmp_path / f"nan_{layout}.pt", layout)
        with pytest.raises(ModelFileError, match=f"{src.name} holds NaN or infinite weights .*cannot restore"):
            store.import_model_file(src)
    assert not models_dir.exists() or not list(models_dir.glob("nan_*"))


def test_verify_finds_nan_weights(models_dir, tmp_path, tiny_state_dicts, capsys):  # noqa: F811
    """A file placed by hand under a catalog name (no hash known yet): Verify reads its weights."""
    models_dir.mkdir(parents=True, exist_ok=True)
    torch.save(nan_weights(tiny_state_dicts["ddpm"]), models_dir / "faces.ckpt")
    [result] = store.verify_models(["faces-tiny"])
    assert result.status == "unusable" and "holds NaN or infinite weights" in result.detail
    assert main(["models", "verify", "faces-tiny"]) == 2
    assert "faces-tiny: unusable" in capsys.readouterr().out


def test_repairing_an_imported_model_says_it_cannot_be_downloaded(models_dir, tmp_path, tiny_state_dicts, capsys):  # noqa: F811
    src = save(tiny_state_dicts["adm"], tmp_path / "mine.pt", "plain")
    imported = store.import_model_file(src)
    data = bytearray(imported.path.read_bytes())
    data[-100] ^= 0xFF
    imported.path.write_bytes(bytes(data))
    [result] = store.repair_models([imported.model_id])
    assert result.status == "mismatch"
    assert f"imported by you, so it cannot be downloaded again: import {src} again to put it back" in result.detail
    assert main(["models", "repair", imported.model_id]) == 2
    captured = capsys.readouterr()
    assert "cannot be downloaded again" in captured.out and "verify --repair" not in captured.err
    assert "imported again with `python -m engine models import PATH`" in captured.err
    store.import_model_file(src)  # as the message says: the original file puts it back
    assert [r.status for r in store.verify_models([imported.model_id])] == ["ok"]
