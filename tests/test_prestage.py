"""One pre-stage for both networks that run over tiles before the engine (engine.cleanup.stage): the
fast upscaler (ResShift) and a clean-up network. Nothing left for the engine means no diffusion
model at all; a fast upscale stopped in the engine's part continues from its finished upscale; a
file of the other role is refused with where it goes; the two together are refused in one line."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import engine.pipeline as pipeline
from engine.cleanup.stage import UPSCALE_STAGE, PreStage
from engine.errors import Cancelled, InputError, ModelFileError
from engine.events import FinishedEvent, LogEvent, PlanEvent, ProgressEvent, WindowFinished
from engine.pipeline import restore, run_to_completion
from engine.request import RestoreRequest, Tasks
from engine.tiling.resume import ResumeState
from tests.cleanup_helpers import compact, save, smooth_photo
from tests.resshift_helpers import write_files

TINY_UPSCALER = "test-tiny-resshift"


@pytest.fixture
def cleanup_file(tmp_path):
    return save(compact(1), tmp_path / "c.pth")


@pytest.fixture
def no_diffusion_model(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a diffusion model was loaded")

    monkeypatch.setattr(pipeline, "load_denoiser", refuse)
    monkeypatch.setattr(pipeline, "load_guidance", refuse)


@pytest.mark.parametrize("prestage", ["upscaler", "cleanup"])
def test_nothing_left_for_the_engine_loads_no_diffusion_model(prestage, cleanup_file, no_diffusion_model):
    network = TINY_UPSCALER if prestage == "upscaler" else str(cleanup_file)
    fields = dict(tasks=Tasks(sr=4)) if prestage == "upscaler" else dict(fidelity=1.0)
    request = RestoreRequest(image=smooth_photo(16, 24), model="not-installed", guidance_scale=2.0, class_label=3,
                             device="cpu", precision="fp32", **{prestage: network}, **fields)
    events = list(restore(request))
    finished = events[-1]
    assert isinstance(finished, FinishedEvent)
    assert not any(isinstance(e, PlanEvent) and e.stage == "restore" for e in events)  # no engine stage
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert progress and progress[-1].done == progress[-1].total  # the bar is the pre-stage's alone
    report = finished.report
    made_by = TINY_UPSCALER if prestage == "upscaler" else cleanup_file.name
    assert report["denoiser_calls"] == 0 and report["model"] == made_by  # the network that made the result


def test_a_fast_upscale_stopped_in_the_fill_continues_from_its_finished_upscale(tmp_path):
    mask = np.zeros((16, 24), bool)
    mask[4:9, 6:14] = True

    def request(**changes):
        return RestoreRequest(image=smooth_photo(16, 24), mask=mask, tasks=Tasks(sr=4, inpaint=True),
                              upscaler=TINY_UPSCALER, model="test-tiny", steps=2, window=64, overlap=32,
                              device="cpu", precision="fp32", **changes)

    expected = run_to_completion(request()).result
    state = tmp_path / "state"
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        for event in restore(request(resume_dir=str(state)), cancel):
            if isinstance(event, WindowFinished) and event.stage == "restore":
                cancel.set()
    assert (state / UPSCALE_STAGE).is_dir() and ResumeState.saved_windows(state) >= 2  # the upscale and a window
    events = list(restore(request(resume_dir=str(state))))
    upscale = [e for e in events if isinstance(e, WindowFinished) and e.stage == UPSCALE_STAGE]
    assert len(upscale) == 1 and upscale[0].resumed  # its whole result, not run again
    assert any(isinstance(e, LogEvent) and "the upscale was finished by an earlier run" in e.message for e in events)
    assert any(isinstance(e, WindowFinished) and e.stage == "restore" and e.resumed for e in events)
    assert np.array_equal(events[-1].result, expected)  # as if it had never stopped


def test_the_fast_upscaler_and_a_clean_up_network_together_are_refused_in_one_line(cleanup_file, capsys, tmp_path):
    message = "a fast upscaler and a clean-up network are not combined"
    with pytest.raises(InputError, match=message):
        RestoreRequest(image="x.png", tasks=Tasks(sr=4), upscaler=TINY_UPSCALER, cleanup=str(cleanup_file))
    as_model = RestoreRequest(image=smooth_photo(16, 24), tasks=Tasks(sr=4), model=TINY_UPSCALER,
                              cleanup=str(cleanup_file))
    with pytest.raises(InputError, match=message):  # the fast upscaler named as the model
        list(restore(as_model))

    from engine.cli import main
    from tests.cli_restore_helpers import photo_file

    photo = photo_file(tmp_path / "in.png")
    code = main(["restore", str(photo), "-o", str(tmp_path / "out.png"), "--sr", "4", "--upscaler", TINY_UPSCALER,
                 "--cleanup", str(cleanup_file), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_network_of_the_other_role_is_refused_saying_where_it_goes(tmp_path, cleanup_file):
    unet, _ = write_files(tmp_path / "resshift")
    photo = smooth_photo(16, 24)
    with pytest.raises(ModelFileError, match="is a fast upscaler .*not a clean-up network.* --upscaler"):
        list(restore(RestoreRequest(image=photo, cleanup=str(unet), device="cpu")))
    with pytest.raises(ModelFileError, match=r"is a clean-up network .*not a fast upscaler.*\(--cleanup\)"):
        list(restore(RestoreRequest(image=photo, tasks=Tasks(sr=2), upscaler=str(cleanup_file), device="cpu")))


@pytest.mark.parametrize("fields, hir", [
    (dict(upscaler=TINY_UPSCALER, tasks=Tasks(sr=4, colorize=True)), True),  # the engine's part as asked
    (dict(cleanup="CLEAN", fidelity=1.0, tasks=Tasks(colorize=True)), False),  # y fixes the coarse content
    (dict(cleanup="CLEAN", fidelity=0.5, tasks=Tasks(colorize=True)), False),
])
def test_after_a_fast_upscale_hierarchical_restoration_is_as_asked(fields, hir, cleanup_file):
    import torch

    fields = {k: str(cleanup_file) if v == "CLEAN" else v for k, v in fields.items()}
    request = RestoreRequest(image="x.png", hir=True, device="cpu", **fields)
    pre = PreStage.load(request, torch.device("cpu"))
    stage2 = pre.plan(request, (40, 56))
    assert stage2.hir is hir and stage2.upscaler is None and stage2.cleanup is None
    assert stage2.tasks.colorize and stage2.tasks.sr == pre.q * pre.soft.k
