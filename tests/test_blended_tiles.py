"""Blended tiles (engine.tiling.blended): any size, no seams, tiled = untiled where the margins
cover the receptive field, out-of-memory splitting, cancel and resume."""

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.errors import Cancelled
from engine.events import LogEvent, PlanEvent, ProgressEvent, WindowFinished
from engine.tiling.blended import TileSpec, plan_tiles, run_tiles
from engine.tiling.msr import Progress
from tests.generator_helpers import drain

CPU = torch.device("cpu")


def conv_net(scale=1, layers=3, seed=0, channels=3):
    """Random 3×3 convolutions (receptive-field radius = layers), then a pixel shuffle for ×scale."""
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(8, 3, 3, 3, generator=g) * 0.3]
    weights += [torch.randn(8, 8, 3, 3, generator=g) * 0.2 for _ in range(layers - 2)]
    weights += [torch.randn(channels * scale * scale, 8, 3, 3, generator=g) * 0.2]

    def net(x):
        for k, w in enumerate(weights):
            x = F.conv2d(x, w, padding=1)
            if k < len(weights) - 1:
                x = torch.tanh(x)
        return F.pixel_shuffle(x, scale) if scale > 1 else x

    return net


def photo(h, w, seed=1):
    """Smooth shapes (a bilinear upsampling of random values) and a little grain."""
    rng = np.random.default_rng(seed)
    base = torch.from_numpy(rng.random((1, 3, h // 8 + 2, w // 8 + 2)).astype(np.float32))
    smooth = F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    return np.clip(smooth + 0.02 * rng.standard_normal((h, w, 3)).astype(np.float32), 0, 1)


def untiled(net, image, multiple):
    """The network on the whole photo, reflected to a multiple of ``multiple`` like the tiles."""
    h, w = image.shape[:2]
    hp, wp = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    padded = np.pad(image, ((0, hp - h), (0, wp - w), (0, 0)), mode="reflect")
    x = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))[None]
    with torch.inference_mode():
        y = net(x)[0].permute(1, 2, 0).numpy()
    s = y.shape[0] // hp
    return y[: h * s, : w * s]


@pytest.mark.parametrize("h, w, tile, overlap, multiple", [
    (100, 130, 48, 16, 1), (64, 64, 64, 8, 8), (37, 300, 64, 16, 4), (20, 20, 64, 8, 4)])
def test_the_plan_covers_the_photo_with_equal_aligned_tiles(h, w, tile, overlap, multiple):
    spec = TileSpec(tile=tile, overlap=overlap, multiple=multiple)
    boxes = plan_tiles(h, w, spec)
    covered = np.zeros((-(-h // multiple) * multiple, -(-w // multiple) * multiple), bool)
    for b in boxes:
        assert (b.height, b.width) == (boxes[0].height, boxes[0].width)
        assert all(v % multiple == 0 for v in b)
        covered[b.slices()] = True
    assert covered.all() and covered.shape[0] >= h and covered.shape[1] >= w
    assert boxes == sorted(boxes)  # raster order


@pytest.mark.parametrize("scale, multiple, size", [(1, 1, (90, 117)), (2, 4, (70, 101)), (4, 1, (45, 70))])
def test_tiled_equals_untiled_where_the_margin_covers_the_receptive_field(scale, multiple, size):
    net = conv_net(scale=scale, layers=3)  # radius 3 input pixels
    image = photo(*size)
    spec = TileSpec(scale=scale, tile=32, overlap=12, margin=4, multiple=multiple, batch=2)
    result, events = drain(run_tiles(lambda x, boxes: net(x), image, spec, device=CPU))
    assert len(plan_tiles(*size, spec)) > 4
    np.testing.assert_allclose(result, untiled(net, image, multiple), atol=2e-5)
    plan = next(e for e in events if isinstance(e, PlanEvent))
    assert plan.stage == "cleanup" and plan.boxes[0].height == plan_tiles(*size, spec)[0].height * scale


def column_seams(result):
    """Mean |horizontal gradient| of each column boundary, over the mean of all of them."""
    grad = np.abs(np.diff(result, axis=1)).mean(axis=(0, 2))
    return grad.max() / grad.mean()


@pytest.mark.parametrize("margin, seamless", [(0, True), (2, True), (7, False)])
def test_blending_leaves_no_seam_where_tiles_disagree(margin, seamless):
    """Tiles that disagree (a network whose output depends on where the tile is, as normalisation
    layers make real ones do): the ramp spreads the difference over the overlap, so no column
    boundary stands out; a near-hard cut (margin 7 of overlap 16: a 2-pixel ramp) shows the seam."""
    image = photo(96, 160, seed=2)
    spec = TileSpec(tile=48, overlap=16, margin=margin)

    def fn(x, boxes):  # each tile a little brighter or darker than its neighbours
        offset = torch.tensor([0.04 * (-1) ** (b.left // 32 + b.top // 32) for b in boxes]).view(-1, 1, 1, 1)
        return x + offset

    result, _ = drain(run_tiles(fn, image, spec, device=CPU))
    assert column_seams(image) < 1.3
    assert (column_seams(result) < 1.3) == seamless


def test_a_tile_that_runs_out_of_memory_is_cut_and_a_batch_is_split():
    net = conv_net(scale=2, layers=3)
    calls = []

    def fn(x, boxes):
        calls.append(tuple(x.shape))
        if x.shape[0] > 1 or x.shape[-1] > 32:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return net(x)

    image = photo(60, 90)
    spec = TileSpec(scale=2, tile=64, overlap=8, margin=3, batch=4)
    result, events = drain(run_tiles(fn, image, spec, device=CPU))
    np.testing.assert_allclose(result, untiled(net, image, 1), atol=2e-5)
    assert any(isinstance(e, LogEvent) and "out of memory" in e.message for e in events)
    assert max(s[-1] for s in calls if s[0] == 1 and s[-1] <= 32) <= 32


def test_cancel_stops_before_the_next_tile_and_resume_computes_only_the_rest():
    net = conv_net(scale=2)
    image = photo(64, 96)
    spec = TileSpec(scale=2, tile=32, overlap=8, margin=2)
    n = len(plan_tiles(64, 96, spec))
    cancel, kept, computed = threading.Event(), {}, []

    def fn(x, boxes):
        computed.extend(boxes)
        return net(x)

    def keep(i, out):
        kept[i] = out.copy()
        if len(kept) == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        drain(run_tiles(fn, image, spec, device=CPU, cancel=cancel, on_tile=keep))
    assert len(computed) == 3
    computed.clear()
    progress = Progress(total=n)
    resumed, events = drain(run_tiles(fn, image, spec, device=CPU, done=kept, progress=progress))
    full, _ = drain(run_tiles(lambda x, b: net(x), image, spec, device=CPU))
    np.testing.assert_allclose(resumed, full, atol=1e-6)
    assert len(computed) == n - 3 and progress.done == n - 3
    finished = [e for e in events if isinstance(e, WindowFinished)]
    assert len(finished) == n and sum(e.resumed for e in finished) == 3
    assert isinstance(events[-1], ProgressEvent) and events[-1].done == n - 3


def test_a_network_that_returns_the_wrong_shape_or_nan_is_named():
    from engine.errors import EngineError, NumericalError

    spec = TileSpec(scale=2, tile=32, overlap=8)
    with pytest.raises(EngineError, match="returned a"):
        drain(run_tiles(lambda x, b: x, photo(40, 40), spec, device=CPU))
    with pytest.raises(NumericalError, match="NaN"):
        drain(run_tiles(lambda x, b: F.interpolate(x, scale_factor=2) * float("nan"), photo(40, 40), spec,
                        device=CPU))


def test_the_tile_side_comes_from_the_free_device_memory(monkeypatch):
    import engine.tiling.blended as blended

    spec = TileSpec(tile=512, overlap=16, multiple=8, bytes_per_pixel=100.0)
    monkeypatch.setattr(blended, "free_device_bytes", lambda device: None)  # CPU: no planning
    assert blended.tile_side(spec, CPU) == 512
    monkeypatch.setattr(blended, "free_device_bytes", lambda device: 1_000_000)  # 0.7 MB of tiles: 83 px
    assert blended.tile_side(spec, CPU) == 80
    monkeypatch.setattr(blended, "free_device_bytes", lambda device: 10)  # never below what blends
    assert blended.tile_side(spec, CPU) == 40
