"""What the ``python -m engine restore`` tests share: generated photos, a fake pipeline, saved
resume state, and the settings of quick end-to-end runs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

import engine.cli.console as cli_console
import engine.cli.restore as cli_restore
from engine.errors import Cancelled
from engine.events import FinishedEvent, LogEvent, ProgressEvent, StageEvent
from engine.image_io import load_image
from engine.request import RestoreRequest
from engine.tiling.resume import VERSION

SHARED_DATA = Path(os.environ.get("RESTORER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FAST = ["--model", "test-tiny", "--window", "64", "--device", "cpu", "--no-progress"]


def photo_file(path: Path, size=(24, 32), icc: bool = False, mode: str = "RGB") -> Path:
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
        image = load_image(request.image).rgb  # the CLI passes the photo's path
        yield StageEvent("restoring")
        yield LogEvent("warning", "fake model with random weights")
        for done in range(1, 4):
            if self.checkpoint and done == 2:  # the first window is finished
                saved_state(Path(request.resume_dir[: -len(cli_restore.STATE_SUFFIX)]), finished=(0,))
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
    monkeypatch.setattr(cli_console, "_load_restore", lambda: pipeline)
    return pipeline


def saved_state(target: Path, finished=(0, 1, 2)) -> Path:
    """An interrupted run's state beside ``target`` with ``finished`` windows done."""
    state = Path(str(target) + cli_restore.STATE_SUFFIX)
    state.mkdir(parents=True, exist_ok=True)
    stages = {"restore": {"finished": list(finished), "shape": [64, 64]}}
    (state / "state.json").write_text(json.dumps({"version": VERSION, "fingerprint": "f", "stages": stages}))
    return state


def check_report(path: Path, out: Path, in_size, out_size) -> dict:
    """Sizes are [width, height]."""
    data = json.loads(path.read_text())
    for key in ("input_size", "output_size", "consistency", "denoiser_calls", "seconds", "device",
                "peak_rss_mb", "windows", "batches", "levels", "output"):
        assert key in data, key
    assert data["output"] == str(out)
    assert list(data["input_size"]) == list(in_size) and list(data["output_size"]) == list(out_size)
    assert data["denoiser_calls"] > 0
    return data
