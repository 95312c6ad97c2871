"""The fast upscale at any size (engine.resshift.stage over engine.tiling.blended): tiled equals untiled
where the tiles cover what the networks see, no seams, cancel inside a tile, resume after a cancel."""

import dataclasses
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import engine.resshift.upscaler as upscaler_module
from engine.errors import Cancelled
from engine.events import FinishedEvent, PlanEvent, ProgressEvent, WindowFinished
from engine.pipeline import restore
from engine.request import RestoreRequest, Tasks
from engine.resshift.diffusion import ResShiftSchedule
from engine.resshift.load import load_upscaler
from engine.resshift.upscaler import LEVELS, ResShiftUpscaler
from engine.tiling.blended import plan_tiles, run_tiles
from tests.generator_helpers import drain

CPU = torch.device("cpu")


def photo(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width] / 32.0
    return np.stack([0.5 + 0.4 * np.sin(3 * xx + yy), 0.5 + 0.4 * np.cos(2 * yy),
                     0.5 + 0.3 * np.sin(4 * xx * yy)], -1).astype(np.float32)


class LocalDenoiser(nn.Module):
    """A stand-in for the Swin-UNet that sees one latent pixel around each (3×3) and the step."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(size_multiple=8, latent_channels=3)
        self.conv = nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, x, t, photo):
        return self.conv(torch.cat([x, photo], 1)) * (1 + t.float()[:, None, None, None] / 10)


class LocalAutoencoder(nn.Module):
    """A stand-in f4 autoencoder that sees only its own 4×4 block."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(factor=4)
        self.down = nn.Conv2d(3, 3, 4, stride=4)
        self.up = nn.Conv2d(3, 48, 1)

    def encode(self, x):
        return self.down(x)

    def decode(self, z):
        return torch.tanh(F.pixel_shuffle(self.up(z), 4))


def test_tiled_equals_untiled_where_the_margins_cover_what_the_networks_see():
    torch.manual_seed(0)
    local = ResShiftUpscaler(LocalDenoiser().eval(), LocalAutoencoder().eval(), ResShiftSchedule(), device=CPU, seed=5)
    image = photo(40, 72)
    # what a latent pixel depends on: bicubic (2 px) and one 3×3 per step (4 px): margins of 8 cover it
    tiled_spec = dataclasses.replace(local.spec(), tile=32, overlap=24, margin=8)
    assert len(plan_tiles(40, 72, tiled_spec)) == 12  # 2 rows × 6 columns
    tiled, _ = drain(run_tiles(local, image, tiled_spec, device=CPU, stage="upscale"))
    whole, _ = drain(run_tiles(local, image, dataclasses.replace(tiled_spec, tile=80), device=CPU, stage="upscale"))
    assert tiled.shape == whole.shape == (160, 288, 3)
    assert np.abs(tiled - whole).max() <= 2 / LEVELS  # rounding to the 16-bit grid only


@pytest.fixture(scope="module")
def tiny():
    return load_upscaler("test-tiny-resshift", device=CPU, seed=3)


def test_no_seams_where_tiles_meet(tiny):
    """The tiny random networks normalise over a whole tile, so tiles disagree far more than a trained
    model's do; the blending still leaves no edge: the gradient across every tile border is within
    the range of the gradients elsewhere."""
    image = photo(48, 96)
    spec = dataclasses.replace(tiny.spec(), tile=32, overlap=16, margin=4)
    result, events = drain(run_tiles(tiny, image, spec, device=CPU, stage="upscale"))
    boxes = next(e for e in events if isinstance(e, PlanEvent)).boxes
    across_columns = np.abs(np.diff(result, axis=1)).mean(axis=(0, 2))
    across_rows = np.abs(np.diff(result, axis=0)).mean(axis=(1, 2))
    for profile, edges in ((across_columns, {b.left for b in boxes} | {b.right for b in boxes}),
                           (across_rows, {b.top for b in boxes} | {b.bottom for b in boxes})):
        borders = [e - 1 for e in edges if 0 < e < len(profile) + 1]
        assert borders
        assert profile[borders].max() <= 1.5 * profile.mean()


def _request(tmp_path, **changes):
    fields = dict(image=photo(24, 40), tasks=Tasks(sr=4), model="test-tiny-resshift", device="cpu",
                  precision="fp32", resume_dir=str(tmp_path / "state"))
    return RestoreRequest(**{**fields, **changes})


@pytest.fixture
def small_tiles(monkeypatch):
    monkeypatch.setattr(upscaler_module, "DEFAULT_TILE", 16)  # 24×40 photo: 2 × 4 tiles of 16 (overlap 8)


def test_cancel_inside_a_tile_and_continue_to_the_same_result(tmp_path, small_tiles, monkeypatch):
    whole = [e for e in restore(_request(tmp_path, resume_dir=None))][-1]
    assert isinstance(whole, FinishedEvent) and whole.result.shape == (96, 160, 3)
    assert whole.report["upscale_tiles"] == 8

    cancel = threading.Event()
    calls = []
    real_call = ResShiftUpscaler.__call__

    def counting(self, tiles, boxes):  # the third tile is cancelled after its first denoiser step
        self.unet.register_forward_hook(lambda *a: cancel.set() if len(calls) == 3 else None)
        calls.append(boxes[0])
        return real_call(self, tiles, boxes)

    monkeypatch.setattr(ResShiftUpscaler, "__call__", counting)
    seen = []
    with pytest.raises(Cancelled):
        for event in restore(_request(tmp_path), cancel):
            seen.append(event)
    assert sum(isinstance(e, WindowFinished) for e in seen) == 2  # the third never finished
    monkeypatch.setattr(ResShiftUpscaler, "__call__", real_call)

    events = list(restore(_request(tmp_path)))
    resumed = [e for e in events if isinstance(e, WindowFinished) and e.resumed]
    assert len(resumed) == 2
    assert len([e for e in events if isinstance(e, WindowFinished) and not e.resumed]) == 6
    assert np.array_equal(events[-1].result, whole.result)
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert progress[0].done == 2 * progress[0].total // 8 and progress[-1].done == progress[-1].total


def test_saved_tiles_of_another_photo_are_not_used(tmp_path, small_tiles):
    list(restore(_request(tmp_path)))
    other = _request(tmp_path, image=photo(24, 40)[::-1].copy())
    events = list(restore(other))
    assert not any(isinstance(e, WindowFinished) and e.resumed for e in events)
    assert any("belong to a different photo" in getattr(e, "message", "") for e in events)


def test_on_the_cpu_tiles_fit_in_half_the_available_memory(tiny, monkeypatch):
    import engine.host_memory

    assert tiny.spec().tile == upscaler_module.DEFAULT_TILE  # plenty of memory here
    monkeypatch.setattr(engine.host_memory, "available_bytes", lambda: 2 * 60_000 * 100 ** 2)
    spec = tiny.spec()
    assert spec.tile == 96 and spec.tile % tiny.multiple == 0  # √(100²) = 100, down to a multiple of 8
    assert spec.overlap == 48 and spec.margin == 8


def test_a_tile_that_runs_out_of_memory_is_done_in_quarters_at_their_own_places(tiny):
    seen = []

    def short_of_memory(tiles, boxes):
        seen.append(boxes[0])
        if tiles.shape[-1] > 24:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return tiny(tiles, boxes)

    spec = dataclasses.replace(tiny.spec(), tile=32, overlap=8, margin=2)
    result, _ = drain(run_tiles(short_of_memory, photo(32, 32), spec, device=CPU, stage="upscale"))
    assert result.shape == (128, 128, 3)
    quarters = seen[1:]
    assert len(quarters) == 4 and {(b.top, b.left) for b in quarters} == {(0, 0), (0, 8), (8, 0), (8, 8)}
